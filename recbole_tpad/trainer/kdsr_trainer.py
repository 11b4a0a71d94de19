"""KDSR's trainer: RecBole's ``Trainer`` whose optimizer takes KDSR's ``parameter_groups``."""

from recbole.trainer import Trainer


class KDSRTrainer(Trainer):
    r"""RecBole's ``Trainer`` with the modality tables at a slower learning rate (KDSR's asynchronous
    learning, ``KDSR.parameter_groups``)."""

    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs:
            kwargs["params"] = self.model.parameter_groups(kwargs.get("learning_rate", self.learning_rate))
        return super()._build_optimizer(**kwargs)
