"""Trainers of models fed with frozen item views (TPAD, KDSR).

``MultimodalTrainer`` hands the model its item views before the first fit or evaluate, then
hands back to RecBole's ``Trainer``. If the model exposes ``parameter_groups(learning_rate)``
(KDSR's asynchronous learning), the optimizer is built from those groups.
"""

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_tpad import compat


class MultimodalTrainer(Trainer):
    r"""RecBole's ``Trainer`` plus: item views loaded (``prepare_item_views``) and given to the model
    before ``fit`` and, if the model has none yet, before ``evaluate``."""

    def __init__(self, config, model):
        compat.apply()  # RecBole's checkpoint shims, also when a caller drives RecBole without our runner
        super().__init__(config, model)

    def prepare_item_views(self, dataset):
        """Return ``(views, image_mask)`` for ``dataset``: ``views`` maps names to ``(n_items, dim)`` arrays.

        Default: the feature cache of ``recbole_tpad.features`` (extracted on first use). Subclasses
        (``TPADTrainer``) override it to run their own stages first.
        """
        from recbole_tpad.features import get_item_views

        item_views = get_item_views(self.config, dataset)
        return item_views.views, item_views.image_mask

    def _ensure_item_views(self, dataset):
        if self.model.has_item_views:
            return
        self.logger.info(set_color("Preparing item views", "green") + f" for {self.config['model']}")
        before = {id(p) for p in self.model.parameters()}
        views, image_mask = self.prepare_item_views(dataset)
        self.model.set_item_views(views, image_mask)
        if {id(p) for p in self.model.parameters()} != before:  # adapters sized by the views
            self.optimizer = self._build_optimizer()

    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs and hasattr(self.model, "parameter_groups"):
            kwargs["params"] = self.model.parameter_groups(kwargs.get("learning_rate", self.learning_rate))
        return super()._build_optimizer(**kwargs)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._ensure_item_views(train_data._dataset)
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data:
            self._ensure_item_views(eval_data._dataset)
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)


class KDSRTrainer(MultimodalTrainer):
    r"""KDSR's trainer: ``MultimodalTrainer``, whose optimizer takes KDSR's ``parameter_groups``
    (the modality tables at the slower rate, asynchronous learning)."""
