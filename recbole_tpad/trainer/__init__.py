"""Trainers of the plugin, found by the name <Model>Trainer."""

from recbole_tpad.trainer.multimodal_trainer import KDSRTrainer, MultimodalTrainer
from recbole_tpad.trainer.tpad_trainer import TPADTrainer
