"""TPAD's trainer: RecBole's ``Trainer``, then the transition score's scale picked on the validation split."""

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_tpad import compat
from recbole_tpad.atomic import atomic_path
from recbole_tpad.distributed import write_once


class TPADTrainer(Trainer):
    r"""RecBole's ``Trainer``. With ``transition_fusion: validation`` (``TPAD.picks_transition_scale``),
    after the fit it loads the best epoch's weights, scores the validation split once per scale of
    ``transition_scales`` (RecBole's evaluator, ``valid_metric``), keeps the best (the first on a tie,
    so 0 first keeps the term off unless it helps) and writes it into the checkpoint, which the test
    and :mod:`recbole_tpad.recommend` then load. The test split is not touched.
    """

    def __init__(self, config, model):
        compat.apply()  # RecBole 1.2.1 shims, for code that drives RecBole's loop itself
        super().__init__(config, model)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        best_score, best_result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        model = getattr(self.model, "module", self.model)
        if not valid_data or not getattr(model, "picks_transition_scale", False):
            return best_score, best_result
        if saved:  # the best epoch's weights, as the test will load them
            checkpoint = torch.load(self.saved_model_file, map_location=self.device, weights_only=False)
            model.load_state_dict(checkpoint["state_dict"])
            model.load_other_parameter(checkpoint.get("other_parameter"))
        tried = []
        for scale in self.config["transition_scales"]:
            model.set_transition_scale(scale)
            score, result = self._valid_epoch(valid_data, show_progress=show_progress)
            tried.append((float(scale), score, result))
        scale, best_score, best_result = max(tried, key=lambda t: t[1])  # max keeps the first of equal scores
        model.set_transition_scale(scale)
        self.logger.info(set_color("transition score", "green") + f": scale {scale} picked on the validation split ("
                         + ", ".join(f"{s}: {v:.4f}" for s, v, _ in tried) + f" {self.valid_metric})")
        self.transition_scales_tried = {s: v for s, v, _ in tried}
        if saved:
            write_once(self._save_scale, checkpoint, model)
        return best_score, best_result

    def _save_scale(self, checkpoint, model):
        checkpoint["state_dict"] = model.state_dict()
        with atomic_path(self.saved_model_file) as tmp:
            torch.save(checkpoint, tmp, pickle_protocol=4)
