"""KDSR's trainer: RecBole's ``Trainer`` whose optimizer takes KDSR's ``parameter_groups``."""

from recbole.trainer import Trainer

from recbole_tpad import compat


class KDSRTrainer(Trainer):
    r"""RecBole's ``Trainer`` with the modality tables at a slower learning rate (KDSR's asynchronous
    learning, ``KDSR.parameter_groups``)."""

    def __init__(self, config, model):
        compat.apply()  # RecBole 1.2.1 shims, for code that drives RecBole's loop itself
        super().__init__(config, model)

    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs:
            kwargs["params"] = self.model.parameter_groups(kwargs.get("learning_rate", self.learning_rate))
        return super()._build_optimizer(**kwargs)
