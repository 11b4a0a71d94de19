# -*- coding: utf-8 -*-
r"""
Representation generation (TPAD stage 3)
########################################

The distilled Knowledge-MLLM (adapter ``K``) encodes every item once into its text, image and
fused views, cached by ``recbole_tpad.features`` (same folder layout and manifest, with
``adapter: K`` and ``cache_tag`` = the hash of the stages that made the adapter). A small pointer
file in the stages' cache remembers the views' folder and key, so a later run with the same
stages loads them without building the backbone.
"""

import json
import os
from logging import getLogger
from pathlib import Path

from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE


def _pointer(root, stage_hash):
    return Path(root) / f"representation-{stage_hash}.json"


def cached_representations(root, stage_hash):
    r"""The cached :class:`ItemViews` made from stages ``stage_hash``, or ``None``."""
    from recbole_tpad.features import read_cache

    pointer = _pointer(root, stage_hash)
    try:
        record = json.loads(pointer.read_text(encoding="utf-8"))
        folder, key = record["folder"], record["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    views = read_cache(folder, key)
    if views is None or views.manifest.get("cache_tag") != stage_hash or views.manifest.get("adapter") != KNOWLEDGE:
        return None
    return views


def generate_representations(config, dataset, backbone, items, item_states, root, stage_hash, show_progress=True):
    r"""Encode every item with adapter ``K`` (or load the cached views) and remember where they are.

    The top layers run on the cached lower-layer states (:mod:`recbole_tpad.stages.item_states`).
    """
    from recbole_tpad.features import get_item_views
    from recbole_tpad.stages.item_states import encode_item_views

    def encode(items):
        return encode_item_views(backbone, item_states, KNOWLEDGE, backbone.settings.batch_size, show_progress)

    views = get_item_views(config, dataset, backbone=backbone, adapter=KNOWLEDGE, cache_tag=stage_hash,
                           progress=show_progress, encoder=encode, items=items)
    pointer = _pointer(root, stage_hash)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"folder": str(views.folder), "key": views.manifest["key"]}), encoding="utf-8")
    os.replace(tmp, pointer)
    getLogger().info(f"TPAD item views (adapter {KNOWLEDGE}) in {views.folder}")
    return views
