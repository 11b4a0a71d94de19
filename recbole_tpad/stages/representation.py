# -*- coding: utf-8 -*-
r"""
Representation generation (TPAD stage 3)
########################################

The distilled Knowledge-MLLM (adapter ``K``) encodes every item once into its text, image and
fused views, cached by ``recbole_tpad.features`` (same store entry layout and manifest, with
``adapter: K`` and ``cache_tag`` = the key of the stages that made the adapter). A store entry in
the stages' cache, ``representation-<key>/``, points at the views' entry (its manifest holds the
folder and key), so a later run with the same stages loads them without building the backbone.
"""

from logging import getLogger

from recbole_tpad.distributed import write_once
from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE
from recbole_tpad.store import CacheEntry


def _pointer(root, stage_hash):
    return CacheEntry(root, "representation", {"stages": stage_hash})


def cached_representations(root, stage_hash):
    r"""The cached :class:`ItemViews` made from stages ``stage_hash``, or ``None``."""
    from recbole_tpad.features import read_cache

    record = _pointer(root, stage_hash).manifest()
    if record is None:
        return None
    views = read_cache(record["views_folder"], record["views_key"])
    if views is None or views.manifest.get("cache_tag") != stage_hash or views.manifest.get("adapter") != KNOWLEDGE:
        return None
    return views


def generate_representations(config, dataset, settings, backbone, items, item_states, root, stage_hash,
                             show_progress=True):
    r"""Encode every item with adapter ``K`` (or load the cached views) and remember where they are.

    The top layers run on the cached lower-layer states (:mod:`recbole_tpad.stages.item_states`).
    """
    from recbole_tpad.features import get_item_views
    from recbole_tpad.stages.item_states import encode_item_views

    def encode(items):
        return encode_item_views(backbone, item_states, KNOWLEDGE, backbone.settings.batch_size, show_progress)

    views = get_item_views(config, dataset, settings, backbone=backbone, adapter=KNOWLEDGE, cache_tag=stage_hash,
                           progress=show_progress, encoder=encode, items=items)
    write_once(_pointer(root, stage_hash).commit, lambda folder: None,
               {"views_folder": str(views.folder), "views_key": views.manifest["key"]})
    getLogger().info(f"TPAD item views (adapter {KNOWLEDGE}) in {views.folder}")
    return views
