"""TPAD's stages 1-3 in order, each cached on disk and skipped when its result is valid.

Cache keys: stage 1 = data file hashes + backbone settings + split settings + seed + stage-1
keys; stage 2 = stage 1's hash + stage-2 keys, and its transition head's fit before ``T``'s steps
= the item states' hash + split + seed + the head's keys (one fit for every stage 2 that differs in
the rest); stage 3 = the item-view cache of ``recbole_tpad.features`` tagged with the last stage's
hash. Everything the stages draw at random is seeded from ``seed`` inside a forked RNG, so the
downstream run sees the same random stream whether the stages ran or were loaded; each trained stage
starts from its own seed (``seed`` and its number), so its result is the same whether the stages
before it ran in this process or were loaded.

In a distributed run every rank runs the pipeline: the item encodings are sharded across the ranks
and gathered, stages 1 and 2 train data-parallel (``loop.train_stage``), and rank 0 alone writes
each stage's result while the others wait, then read it.
"""

import dataclasses
import time
from logging import getLogger
from pathlib import Path

import torch
from recbole.utils import set_color

from recbole_tpad.distributed import main_process_first, write_once
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
        settings (StageConfig, optional): the run's stage settings; read from ``config`` if not given.
        features (FeaturesConfig, optional): the run's feature settings; read from ``config`` if not given.
    """

    def __init__(self, config, dataset, train_dataset=None, show_progress=True, settings=None, features=None):
        from recbole_tpad.features import FeaturesConfig

        self.config = config
        self.dataset = dataset
        self.train_dataset = train_dataset
        self.show_progress = show_progress
        self.settings = settings or StageConfig.from_config(config)
        self.features = features or FeaturesConfig.from_config(config)
        self.seed = int(_get(config, "seed") or 2020)
        self.root = Path(self.settings.cache_dir).expanduser() if self.settings.cache_dir else (
            self.features.cache_root / "stages" / str(config["dataset"]))
        data = {
            "dataset": config["dataset"],
            "data": data_fingerprint(config["data_path"], config["dataset"]),
            "backbone": {k: v for k, v in dataclasses.asdict(self.features).items() if k not in VOLATILE_FEATURE_KEYS},
        }
        # the item states depend on the data, the backbone and (with photos) the aligned projector only,
        # so every seed and split of a text-only dataset shares them
        self.store_projector = StageStore(self.root, "projector", dict(
            data, seed=self.seed if self.features.use_images else None, stage=self.settings.projector_key()))
        self.store_states = StageStore(self.root, "states", {"data": data, "stage": self.settings.states_key(),
                                                             "projector": self.store_projector.key})
        self.store1 = StageStore(self.root, "knowledge", {"states": self.store_states.key, "seed": self.seed,
                                                          "stage": self.settings.stage1_key()})
        self.store2 = self.store_head = None
        if self.settings.run_stage2:
            split = {k: _get(config, k) for k in SPLIT_KEYS}
            if (_get(config, "tie_order") or "file") != "file":
                # a shuffle of same-day items moves training pairs and test targets, so stage 2 (trained on
                # the training split) runs again; file-order keys stay those of the caches made before tie_order
                split["tie_order"] = {"order": _get(config, "tie_order"), "seed": _get(config, "tie_seed")}
            self.store2 = StageStore(self.root, "distillation",
                                     {"stage1": self.store1.key, "stage": self.settings.stage2_key(), "split": split})
            # the bank and the head's fit on it come before T's first step and do not depend on stage 1: one
            # entry serves every setting of T's steps (a learning curve's points, the ablations) of a seed
            self.store_head = StageStore(self.root, "transition_head", {
                "states": self.store_states.key, "seed": self.seed, "split": split, "stage": self.settings.head_key()})
        self.final_hash = (self.store2 or self.store1).key
        self.timings = {}
        self.logger = getLogger()

    def run(self):
        r"""The distilled item views (:class:`recbole_tpad.features.ItemViews`)."""
        from recbole_tpad.stages.representation import cached_representations, generate_representations

        views = cached_representations(self.root, self.final_hash)
        if views is not None:
            self.logger.info(set_color("TPAD stages", "green") + f": all cached, item views from {views.folder}")
            views.knowledge_mllm = self.knowledge_mllm_folders()
            return views
        # fork the CUDA generators too: stages on a GPU draw from them (dropout, sampling)
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            torch.manual_seed(self.seed)
            backbone, items = self._backbone_and_items()
            self._timed("projector", self._projector, backbone, items)
            item_states = self._timed("item_states", self._item_states, backbone, items)
            if self.store2 is None or not self.store2.is_complete():  # a complete stage 2 holds K already
                self._timed("stage1", self._stage1, backbone, item_states)
            if self.store2 is not None:
                self._timed("stage2", self._stage2, backbone, item_states)
            views = self._timed("representation", generate_representations, self.config, self.dataset, self.features,
                                backbone, items, item_states, self.root, self.final_hash,
                                self.store2.folder if self.store2 is not None else None, self.show_progress,
                                self._cached_bank())
        self.logger.info(set_color("TPAD stages", "green") + " wall time: " +
                         ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        views.knowledge_mllm = self.knowledge_mllm_folders()
        return views

    def _cached_bank(self):
        # stage 2's bank is the frozen base's item features: the successor views' targets need no pass of their own
        from recbole_tpad.stages.transition_distillation import cached_head_fit

        cached = cached_head_fit(self.store_head)
        return cached[0]["bank"] if cached is not None else None

    def knowledge_mllm_folders(self):
        r"""Where the Knowledge-MLLM behind the views is kept: ``{"adapter": dir, "projector": file or None,
        "distillation": stage 2's folder or None}`` (``recbole_tpad.recommend`` encodes items added later
        with them; stage 2's folder holds the Transfer-MLLM and its head, for the successor views)."""
        from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE, PROJECTOR_FILE

        projector = self.store_projector.folder / PROJECTOR_FILE
        return {"adapter": str((self.store2 or self.store1).folder / f"adapter_{KNOWLEDGE}"),
                "projector": str(projector) if projector.is_file() else None,
                "distillation": str(self.store2.folder) if self.store2 is not None else None}

    def stage_figures(self):
        r"""The held-out figures of the stages behind the views (``stage1_...``, ``stage2_...``) and the
        seconds each stage's training took when it ran (``stage1_train_s``, ``stage2_train_s``; over every
        process of a resumed stage), from their manifests: the same whether the stages ran in this run or
        were cached, where the run's own wall times (``stage1_s``, ...) are those of this process only."""
        figures = {}
        for number, store in ((1, self.store1), (2, self.store2)):
            manifest = (store.manifest() if store is not None else None) or {}
            for name, value in (manifest.get("heldout") or {}).items():
                figures[f"stage{number}_{name}"] = value
            if manifest.get("seconds") is not None:
                figures[f"stage{number}_train_s"] = manifest["seconds"]
        return figures

    def _timed(self, name, step, *args):
        start = time.perf_counter()
        result = step(*args)
        self.timings[name] = time.perf_counter() - start
        return result

    def _backbone_and_items(self):
        from recbole_tpad.features import build_backbone, load_items

        start = time.perf_counter()
        with main_process_first():  # a backbone converted on first use is written once
            backbone = build_backbone(self.features)
        items = load_items(self.config, self.dataset, self.features)
        self.timings["load"] = time.perf_counter() - start
        return backbone, items

    @property
    def top_layers(self):
        return self.settings.lora_layers

    def _train_or_load(self, store, stage, learning_rate, load):
        r"""Load ``store``'s result with ``load(folder)``, or train ``stage`` into it (committing an
        empty result when it has nothing to learn)."""
        from recbole_tpad.stages.loop import train_stage

        if store.is_complete():
            self.logger.info(set_color(stage.title, "green") + f": cached in {store.folder}")
            load(store.folder)
        elif stage.has_work:
            train_stage(stage, store, learning_rate, self.settings.grad_clip, self.settings.checkpoint_steps,
                        self.show_progress)
        else:
            self.logger.info(set_color(stage.title, "yellow") + ": nothing to learn; its weights stay untrained")
            write_once(store.commit, stage.save, info={"epoch_losses": {}, "seconds": 0.0, "steps": 0})

    def _seed_stage(self, number):
        r"""Torch's RNG from ``seed`` and the stage's ``number`` alone: a stage's adapters and heads are
        initialised, and its dropout drawn, alike whether the stages before it trained in this process
        (drawing from the RNG) or were loaded from the cache."""
        import numpy as np

        torch.manual_seed(int(np.random.SeedSequence([self.seed, 100 + number]).generate_state(1)[0]))

    def _projector(self, backbone, items):
        from recbole_tpad.stages.knowledge_acquisition import ProjectorAlignment, load_projector

        if backbone.projector is None:
            return
        self._seed_stage(0)
        stage = ProjectorAlignment(backbone, items, self.settings, self.seed)
        self._train_or_load(self.store_projector, stage, self.settings.stage1_learning_rate,
                            lambda folder: load_projector(backbone, folder))

    def _item_states(self, backbone, items):
        from recbole_tpad.stages.item_states import compute_item_states, load_item_states, save_item_states

        top = self.top_layers or backbone.num_layers
        if self.store_states.is_complete():
            return load_item_states(self.store_states.folder)
        start = time.perf_counter()
        states = compute_item_states(backbone, items, top, self.settings, self.features.batch_size, self.show_progress,
                                     checkpoint=self.store_states)
        write_once(self.store_states.commit, lambda folder: save_item_states(states, folder),
                   info={"items": len(states), "tokens": int(states.offsets[-1]),
                         "seconds": round(time.perf_counter() - start, 2)})
        return states

    def _stage1(self, backbone, item_states):
        import numpy as np

        from recbole_tpad.stages.knowledge_acquisition import KnowledgeAcquisition, load_knowledge_mllm

        rng = np.random.default_rng([self.seed, 3])
        heldout = rng.permutation(np.arange(1, len(item_states)))[: self.settings.stage1_heldout_items]
        self._seed_stage(1)
        stage = KnowledgeAcquisition(backbone, item_states, self.settings, heldout, self.seed)
        self._train_or_load(self.store1, stage, self.settings.stage1_learning_rate,
                            lambda folder: load_knowledge_mllm(backbone, folder))

    def _stage2(self, backbone, item_states):
        from recbole_tpad.stages.knowledge_acquisition import load_knowledge_mllm
        from recbole_tpad.stages.session_prompts import training_sessions
        from recbole_tpad.stages.transition_distillation import TransitionDistillation, heldout_pairs

        if self.store2.is_complete():
            self.logger.info(set_color("Transition Distillation", "green") + f": cached in {self.store2.folder}")
            load_knowledge_mllm(backbone, self.store2.folder)
            return
        if self.train_dataset is None:
            raise ConfigError(
                "TPAD's Transition Distillation Stage learns from the training split, which this call did not "
                "get: pass train_dataset (the training split, train_data._dataset) or set stage_distillation: False."
            )
        sessions = training_sessions(self.train_dataset)
        heldout = heldout_pairs(sessions, self.settings.stage2_heldout_pairs, self.seed)
        self._seed_stage(2)
        stage = TransitionDistillation(backbone, item_states, sessions, self.settings, heldout, self.seed,
                                       head_store=self.store_head)
        self._train_or_load(self.store2, stage, self.settings.stage2_learning_rate,
                            lambda folder: load_knowledge_mllm(backbone, folder))
