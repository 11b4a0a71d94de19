# -*- coding: utf-8 -*-
r"""
Representation generation (TPAD stage 3)
########################################

The distilled Knowledge-MLLM (adapter ``K``) encodes every item once into its text, image and
fused views, cached by ``recbole_tpad.features`` (same store entry layout and manifest, with
``adapter: K`` and ``cache_tag`` = the key of the stages that made the adapter). A store entry in
the stages' cache, ``representation-<key>/``, points at the views' entry (its manifest holds the
folder and key), so a later run with the same stages loads them without building the backbone.

Where stage 2 ran, the same entry holds the Transfer-MLLM's two **successor views**
(:func:`successor_views`): every item's ``T`` feature through the transition head's session map
(``successor``: where the item's next item lies) and every item's frozen base feature through the
head's item map (``successor_target``), unit rows. TPAD's downstream model fuses their cosine
``successor[last item] . successor_target[i]`` late (``transition_score``), so the recommender
ranks with the transitions ``T`` learned without running an LLM per request.
"""

from logging import getLogger
from pathlib import Path

import numpy as np
import torch

from recbole_tpad.distributed import write_once
from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE
from recbole_tpad.store import CacheEntry

SUCCESSOR_FILE = "successor_views.safetensors"


def _pointer(root, stage_hash):
    # "successor_views": entries written before the successor views existed are not read
    return CacheEntry(root, "representation", {"stages": stage_hash, "successor_views": True})


def cached_representations(root, stage_hash):
    r"""The cached :class:`ItemViews` made from stages ``stage_hash`` (with the successor views where
    stage 2 made them), or ``None``."""
    from recbole_tpad.features import read_cache

    entry = _pointer(root, stage_hash)
    record = entry.manifest()
    if record is None:
        return None
    views = read_cache(record["views_folder"], record["views_key"])
    if views is None or views.manifest.get("cache_tag") != stage_hash or views.manifest.get("adapter") != KNOWLEDGE:
        return None
    if record.get("successor_views"):
        add_successor_views(views, entry.folder / SUCCESSOR_FILE)
    return views


def add_successor_views(views, path):
    r"""Add the successor views of ``path`` to ``views`` (:class:`ItemViews`); ``None`` when the file is gone."""
    from recbole_tpad.stages.loop import load_safetensors

    path = Path(path)
    if not path.is_file():
        return None
    views.views.update({k: v.numpy() for k, v in load_safetensors(path).items()})
    views.successor_file = path
    return views


def generate_representations(config, dataset, settings, backbone, items, item_states, root, stage_hash,
                             distillation_folder=None, show_progress=True, base_features=None):
    r"""Encode every item with adapter ``K`` (or load the cached views) and remember where they are;
    with ``distillation_folder`` (stage 2's result) also the successor views (``base_features``: see
    :func:`successor_views`).

    The top layers run on the cached lower-layer states (:mod:`recbole_tpad.stages.item_states`).
    """
    from recbole_tpad.features import get_item_views
    from recbole_tpad.stages.item_states import encode_item_views
    from recbole_tpad.stages.loop import save_safetensors

    def encode(items):
        return encode_item_views(backbone, item_states, KNOWLEDGE, backbone.settings.batch_size, show_progress)

    views = get_item_views(config, dataset, settings, backbone=backbone, adapter=KNOWLEDGE, cache_tag=stage_hash,
                           progress=show_progress, encoder=encode, items=items)
    successor = {}
    if distillation_folder is not None:
        successor = successor_views(backbone, item_states, distillation_folder, backbone.settings.batch_size,
                                    show_progress, base_features)

    def write(folder):
        if successor:
            save_safetensors({k: torch.from_numpy(v) for k, v in successor.items()}, folder / SUCCESSOR_FILE)

    entry = _pointer(root, stage_hash)
    write_once(entry.commit, write, {"views_folder": str(views.folder), "views_key": views.manifest["key"],
                                     "successor_views": sorted(successor)})
    if successor:
        views.views.update(successor)
        views.successor_file = entry.folder / SUCCESSOR_FILE
    getLogger().info(f"TPAD item views (adapter {KNOWLEDGE}{', successor views of T' if successor else ''}) "
                     f"in {views.folder}")
    return views


@torch.no_grad()
def successor_views(backbone, item_states, distillation_folder, batch_size, show_progress=True, base_features=None):
    r"""The Transfer-MLLM's successor views of every item (rows follow ``item_states``; row 0 zeros).

    ``successor``: the item's fused ``T`` feature through the transition head's session map (AMIE's
    teacher ``t_i``); ``successor_target``: the item's fused feature under the frozen base through
    the head's item map (``L_next``'s target space). Both unit rows, ``float32 [N, H]``: their dot
    product is the head's score of "item j follows item i". ``base_features`` (``[N, H]``, optional):
    those frozen-base features where stage 2 kept them (its bank), which saves one pass of the top
    layers over every item; without them they are encoded here.
    """
    from recbole_tpad.stages.item_states import encode_item_views
    from recbole_tpad.stages.transition_distillation import HEADS_FILE, TRANSFER
    from recbole_tpad.stages.transition_head import load_transition_head

    folder = Path(distillation_folder)
    if TRANSFER not in backbone.adapter_names:
        backbone.load_adapter(TRANSFER, folder / f"adapter_{TRANSFER}")
    head = load_transition_head(folder / HEADS_FILE, backbone.hidden_size)
    transfer = torch.from_numpy(encode_item_views(backbone, item_states, TRANSFER, batch_size, show_progress)["fused"])
    if base_features is not None and len(base_features) == len(item_states):
        base = base_features.float()
    else:
        base = torch.from_numpy(encode_item_views(backbone, item_states, None, batch_size, show_progress)["fused"])
    out = {"successor": head.successor(transfer), "successor_target": head.targets(base)}
    out = {k: v.mul_((torch.arange(len(v)) > 0).unsqueeze(1)).numpy().astype(np.float32) for k, v in out.items()}
    return out
