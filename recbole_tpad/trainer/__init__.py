"""Trainers of the plugin, found by the name <Model>Trainer; TPAD trains with RecBole's own ``Trainer``."""

from recbole_tpad.trainer.kdsr_trainer import KDSRTrainer
