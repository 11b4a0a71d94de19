"""TPAD's stages 1-3 in order, each cached on disk and skipped when its result is valid.

Cache keys: stage 1 = data file hashes + backbone settings + split settings + seed + stage-1
keys; stage 2 = stage 1's hash + stage-2 keys; stage 3 = the item-view cache of
``recbole_tpad.features`` tagged with the last stage's hash. Everything the stages draw at random
is seeded from ``seed`` inside a forked RNG, so the downstream run sees the same random stream
whether the stages ran or were loaded.
"""

import dataclasses
import time
from logging import getLogger
from pathlib import Path

import torch
from recbole.utils import set_color

from recbole_tpad.errors import ConfigError
from recbole_tpad.features.cache import data_fingerprint
from recbole_tpad.stages.config import StageConfig
from recbole_tpad.stages.stage_cache import StageStore

# dataset / split settings that decide the training split (and so what the stages learn from)
SPLIT_KEYS = (
    "USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD", "load_col", "unload_col", "unused_col", "rm_dup_inter",
    "val_interval", "filter_inter_by_user_or_item", "user_inter_num_interval", "item_inter_num_interval",
    "eval_args", "MAX_ITEM_LIST_LENGTH", "ITEM_TEXT_FIELDS", "IMAGE_FIELD",
)
# backbone settings that do not change what the stages learn
VOLATILE_FEATURE_KEYS = ("device", "cache_dir", "batch_size", "adapter")


def _get(config, key):
    try:
        return config[key]
    except KeyError:
        return None


class StagePipeline:
    r"""Run (or load) Knowledge Acquisition, Transition Distillation and representation generation.

    Args:
        config (recbole.config.Config): the run's config.
        dataset (recbole.data.dataset.Dataset): any split of the dataset (for its item ids).
        train_dataset (SequentialDataset, optional): the training split (``train_data.dataset``);
            needed only when stage 2 has to run.
        show_progress (bool): progress bars.
    """

    def __init__(self, config, dataset, train_dataset=None, show_progress=True):
        from recbole_tpad.features import FeaturesConfig

        self.config = config
        self.dataset = dataset
        self.train_dataset = train_dataset
        self.show_progress = show_progress
        self.settings = StageConfig.from_config(config)
        self.features = FeaturesConfig.from_config(config)
        self.seed = int(_get(config, "seed") or 2020)
        self.root = Path(self.settings.cache_dir).expanduser() if self.settings.cache_dir else (
            self.features.cache_root / "stages" / str(config["dataset"]))
        base = {
            "dataset": config["dataset"],
            "data": data_fingerprint(config["data_path"], config["dataset"]),
            "backbone": {k: v for k, v in dataclasses.asdict(self.features).items() if k not in VOLATILE_FEATURE_KEYS},
            "split": {k: _get(config, k) for k in SPLIT_KEYS},
            "seed": self.seed,
        }
        self.store1 = StageStore(self.root, "knowledge", dict(base, stage=self.settings.stage1_key()))
        self.store2 = None
        if self.settings.run_stage2:
            self.store2 = StageStore(self.root, "distillation",
                                     {"stage1": self.store1.key_hash, "stage": self.settings.stage2_key()})
        self.final_hash = (self.store2 or self.store1).key_hash
        self.timings = {}
        self.logger = getLogger()

    def run(self):
        r"""The distilled item views (:class:`recbole_tpad.features.ItemViews`)."""
        from recbole_tpad.stages.representation import cached_representations, generate_representations

        views = cached_representations(self.root, self.final_hash)
        if views is not None:
            self.logger.info(set_color("TPAD stages", "green") + f": all cached, item views from {views.folder}")
            return views
        # fork the CUDA generators too: stages on a GPU draw from them (dropout, sampling)
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            torch.manual_seed(self.seed)
            backbone, items = self._backbone_and_items()
            if self.store2 is None or not self.store2.is_complete():  # a complete stage 2 holds K already
                self._stage1(backbone, items)
            if self.store2 is not None:
                self._stage2(backbone, items)
            start = time.perf_counter()
            views = generate_representations(self.config, self.dataset, backbone, self.root, self.final_hash,
                                             self.show_progress)
            self.timings["representation"] = time.perf_counter() - start
        self.logger.info(set_color("TPAD stages", "green") + " wall time: " +
                         ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        return views

    def _backbone_and_items(self):
        from recbole_tpad.features import build_backbone, load_items

        start = time.perf_counter()
        backbone = build_backbone(self.features)
        items = load_items(self.config, self.dataset, self.features)
        self.timings["load"] = time.perf_counter() - start
        return backbone, items

    def _stage1(self, backbone, items):
        from recbole_tpad.stages.knowledge_acquisition import KnowledgeAcquisition, load_knowledge_mllm
        from recbole_tpad.stages.loop import train_stage

        start = time.perf_counter()
        if self.store1.is_complete():
            self.logger.info(set_color("Knowledge Acquisition", "green") + f": cached in {self.store1.folder}")
            load_knowledge_mllm(backbone, self.store1.folder)
        else:
            stage = KnowledgeAcquisition(backbone, items, self.settings, self.seed)
            if stage.has_work:
                train_stage(stage, self.store1, self.settings.stage1_learning_rate, self.settings.grad_clip,
                            self.settings.checkpoint_steps, self.show_progress)
            else:
                self.logger.info(set_color("Knowledge Acquisition", "yellow") +
                                 ": nothing to learn (no generation task, no images); adapter K stays untrained")
                self.store1.commit(stage.save, info={"epoch_losses": {}, "seconds": 0.0, "steps": 0})
        self.timings["stage1"] = time.perf_counter() - start

    def _stage2(self, backbone, items):
        from recbole_tpad.stages.knowledge_acquisition import load_knowledge_mllm
        from recbole_tpad.stages.loop import train_stage
        from recbole_tpad.stages.session_prompts import training_sessions
        from recbole_tpad.stages.transition_distillation import TransitionDistillation

        start = time.perf_counter()
        if self.store2.is_complete():
            self.logger.info(set_color("Transition Distillation", "green") + f": cached in {self.store2.folder}")
            load_knowledge_mllm(backbone, self.store2.folder)
        else:
            if self.train_dataset is None:
                raise ConfigError(
                    "TPAD's Transition Distillation Stage learns from the training split, which this call did not "
                    "get: run trainer.fit(train_data, ...) first (or set stage_distillation: False)."
                )
            stage = TransitionDistillation(backbone, items, training_sessions(self.train_dataset), self.settings,
                                           self.seed)
            train_stage(stage, self.store2, self.settings.stage2_learning_rate, self.settings.grad_clip,
                        self.settings.checkpoint_steps, self.show_progress)
        self.timings["stage2"] = time.perf_counter() - start
