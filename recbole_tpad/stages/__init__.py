"""TPAD's training stages: MI estimators, Knowledge Acquisition, Transition Distillation, representations.

Data flow: items + training sessions -> stage 1 (adapter K) -> stage 2 (adapter T, distilled into K)
-> stage 3 (K encodes every item once) -> cached item views for the downstream model.
Heavy modules (transformers, peft) load on first use.
"""

from recbole_tpad.stages.config import StageConfig
from recbole_tpad.stages.mi_estimators import AMIE, CLUB, HMIE, SharedSpecificSplit, info_nce
from recbole_tpad.stages.pipeline import StagePipeline

__all__ = ["AMIE", "CLUB", "HMIE", "SharedSpecificSplit", "StageConfig", "StagePipeline", "info_nce"]
