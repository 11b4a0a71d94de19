"""Cached item views on disk: one store entry per (data, backbone, adapter, prompt).

An entry of the keyed store (``recbole_tpad.store``), ``<cache>/item_views/<dataset>/views-<key>/``:
``<view>.npy`` of shape ``(num_items, dim)`` per view, ``image_mask.npy`` and ``manifest.json``
(written last). An entry is committed atomically and checked on load (the store's file sizes and
hashes, then the arrays' shapes, dtype and finiteness); one that fails (half-written, edited,
truncated) is never used: it is rebuilt.
"""

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recbole_tpad.distributed import main_process_first, write_once
from recbole_tpad.features.encode import VIEWS
from recbole_tpad.features.prompt import template_description
from recbole_tpad.store import CacheEntry, bytes_sha256, file_sha256, read_manifest

KIND = "views"


@dataclass
class ItemViews:
    views: dict          # view name -> np.ndarray [num_items, dim] float32; row = internal item id
    image_mask: np.ndarray  # [num_items] bool
    manifest: dict
    folder: Path
    knowledge_mllm: dict | None = None  # TPAD: the Knowledge-MLLM's folders ({"adapter", "projector", "distillation"})
    successor_file: Path | None = None  # TPAD: the file of the successor views in ``views`` (stage 3, after stage 2)


def data_fingerprint(folder, name):
    """Hashes of the atomic files and of the images folder's contents."""
    folder = Path(folder)
    hashes = {}
    for suffix in ("inter", "item"):
        path = folder / f"{name}.{suffix}"
        hashes[path.name] = file_sha256(path) if path.is_file() else None
    if (folder / "images").is_dir():
        hashes["images/"] = images_fingerprint(folder / "images")
    return hashes


def images_fingerprint(images):
    """Hash of every file's name and bytes in ``images`` (not mtimes: a fresh copy of the same
    photos keeps its caches; ~0.2 s for hm-fashion's 70 MB)."""
    entries = sorted((e for e in os.scandir(images) if e.is_file()), key=lambda e: e.name)
    return bytes_sha256(*(f"{e.name}\t{file_sha256(e.path)}\n".encode() for e in entries))


def weights_fingerprint(backbone, adapter):
    """Hash of the trainable parts (adapter, projector) whose values change the features."""
    if backbone is None:
        return "untrained"
    import torch

    tensors = dict(backbone.adapter_state_dict(adapter)) if adapter else {}
    if backbone.projector is not None:
        tensors.update({f"projector.{k}": v for k, v in backbone.projector.state_dict().items()})
    return bytes_sha256(*(chunk for key in sorted(tensors) for chunk in (
        key.encode(), tensors[key].detach().to(torch.float32).cpu().numpy().tobytes())))


def backbone_description(settings, backbone):
    if backbone is not None:
        return backbone.describe()
    causal = settings.backbone in ("smollm2-efficientnet", "causal", "tiny-llama")
    return {
        "kind": settings.backbone,
        "source": settings.llm_path if causal else settings.mllm_path,
        "image_encoder": settings.image_encoder if causal and settings.use_images else None,
        "num_visual_tokens": settings.num_visual_tokens if causal else None,
    }


def cache_identity(config, dataset, settings, backbone, adapter, cache_tag):
    """Everything the features depend on (the store entry's identity), and the item ids."""
    from recbole_tpad.testing import TINY_VERSION

    iid = dataset.iid_field
    item_ids = [str(t) for t in dataset.field2id_token[iid]]
    text_fields = list(settings.text_fields)
    describe = backbone_description(settings, backbone)
    describe = {k: v for k, v in describe.items() if k != "hidden_size"}
    identity = {
        "dataset": config["dataset"],
        "data_hashes": data_fingerprint(config["data_path"], config["dataset"]),
        "item_ids_sha256": bytes_sha256("\n".join(item_ids).encode()),
        "backbone": describe,
        "tiny_version": TINY_VERSION if settings.backbone.startswith("tiny-") else None,
        "adapter": adapter,
        "weights": weights_fingerprint(backbone, adapter),
        "cache_tag": cache_tag,
        "prompt": {
            "template": template_description(text_fields, settings.field_labels),
            "summary_suffix": settings.summary_suffix,
            "text_fields": text_fields,
            "image_field": config["IMAGE_FIELD"],
        },
        "settings": {k: v for k, v in dataclasses.asdict(settings).items()
                     if k not in ("device", "cache_dir", "batch_size", "threads", "lora_r", "lora_alpha",
                                  "lora_dropout", "lora_target_modules")},
    }
    return identity, item_ids


def read_cache(folder, key=None):
    """The :class:`ItemViews` in ``folder`` (a store entry, of ``key`` if given), or None if it is
    missing, stale or damaged (logged)."""
    folder = Path(folder)
    manifest, problem = read_manifest(folder, key)
    if manifest is None:
        if (folder / "manifest.json").is_file():
            logging.getLogger().warning(f"Ignoring damaged feature cache {folder}: {problem}")
        return None
    try:
        shape = (manifest["num_items"], manifest["dim"])
        views = {}
        for name in manifest["views"]:
            array = np.load(folder / f"{name}.npy", allow_pickle=False)
            if array.shape != shape or array.dtype != np.float32 or not np.isfinite(array).all():
                raise ValueError(f"{name}.npy has shape {array.shape} / dtype {array.dtype}, expected {shape}")
            views[name] = array
        image_mask = np.load(folder / "image_mask.npy", allow_pickle=False)
        if image_mask.shape != shape[:1] or image_mask.dtype != np.bool_:
            raise ValueError("image_mask.npy does not match")
        if len(manifest["item_ids"]) != shape[0]:
            raise ValueError("item_ids does not match num_items")
    except (OSError, ValueError, KeyError, TypeError) as error:
        logging.getLogger().warning(f"Ignoring damaged feature cache {folder}: {error}")
        return None
    return ItemViews(views, image_mask, manifest, folder)


def write_cache(entry, arrays, info):
    """Commit views + manifest as store entry ``entry`` and check that it reads back."""

    def write(folder):
        for name in info["views"]:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(arrays[name], dtype=np.float32))
        np.save(folder / "image_mask.npy", np.asarray(arrays["image_mask"], dtype=np.bool_))

    entry.commit(write, info)
    views = read_cache(entry.folder, entry.key)
    if views is None:
        raise RuntimeError(f"Feature cache written to {entry.folder} does not read back.")
    return views


def cache_entry(settings, dataset_name, identity):
    """The store entry of item views made from ``identity``."""
    return CacheEntry(settings.cache_root / "item_views" / dataset_name, KIND, identity)


def get_item_views(config, dataset, settings, backbone=None, adapter=None, cache_tag=None, progress=True,
                   encoder=None, items=None):
    """Load the cached views of every item, or extract them with the configured backbone and cache them.

    Collective in a distributed run: every rank encodes its share of the items, rank 0 alone writes.

    ``settings`` is the run's :class:`FeaturesConfig` (resolved once, ``recbole_tpad.settings``).
    ``encoder(items) -> arrays`` replaces ``backbone.encode_items`` (TPAD's stages encode from cached
    states); ``items``, an :class:`ItemTable` already loaded, carries the problems met so far.
    """
    from recbole_tpad.features.items import load_items

    if adapter is not None and (backbone is None or adapter not in backbone.adapter_names):
        raise ValueError(f"get_item_views(adapter='{adapter}') needs a backbone carrying that adapter.")
    identity, item_ids = cache_identity(config, dataset, settings, backbone, adapter, cache_tag)
    entry = cache_entry(settings, config["dataset"], identity)
    logger = logging.getLogger()
    cached = read_cache(entry.folder, entry.key)
    if cached is not None:
        logger.info(f"Item views loaded from cache {entry.folder}")
        return cached
    if backbone is None:
        from recbole_tpad.features.build import build_backbone

        with main_process_first():  # a backbone converted on first use is written once
            backbone = build_backbone(settings)
    items = items if items is not None else load_items(config, dataset, settings)
    start = time.perf_counter()
    arrays = (encoder(items) if encoder is not None
              else backbone.encode_items(items, adapter=adapter, progress=progress, checkpoint=entry))
    seconds = time.perf_counter() - start
    items.log_summary(logger)  # after encoding: damaged images are only found when opened
    info = dict(
        identity,
        num_items=len(item_ids),
        views=list(VIEWS),
        dim=int(backbone.hidden_size),
        item_ids=item_ids,
        backbone=backbone.describe(),
        problems=items.stats,
        seconds=round(seconds, 2),
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    write_once(write_cache, entry, arrays, info)  # every rank encoded its share and holds all rows
    logger.info(f"Item views written to {entry.folder} ({seconds:.1f} s)")
    return read_cache(entry.folder, entry.key)
