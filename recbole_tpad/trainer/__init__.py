"""Trainers of the plugin, found by the name <Model>Trainer."""

from recbole_tpad.trainer.kdsr_trainer import KDSRTrainer
from recbole_tpad.trainer.tpad_trainer import TPADTrainer
