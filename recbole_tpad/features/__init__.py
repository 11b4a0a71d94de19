"""Item features for TPAD: item loader, MLLM backbones with LoRA adapters, item views cache.

Public API (see ``README-api.md``): :func:`load_items`, :func:`build_backbone`, :class:`Backbone`,
:func:`format_item_prompt`, :func:`get_item_views`, :class:`ItemViews`, :class:`FeaturesConfig`.
Heavy modules (transformers, peft) load on first use.
"""

import importlib

_EXPORTS = {
    "FeaturesConfig": "recbole_tpad.features.config",
    "ItemRecord": "recbole_tpad.features.items",
    "ItemTable": "recbole_tpad.features.items",
    "load_items": "recbole_tpad.features.items",
    "format_item_prompt": "recbole_tpad.features.prompt",
    "Backbone": "recbole_tpad.features.backbone",
    "BackboneOutput": "recbole_tpad.features.backbone",
    "build_backbone": "recbole_tpad.features.build",
    "ItemViews": "recbole_tpad.features.cache",
    "get_item_views": "recbole_tpad.features.cache",
    "read_cache": "recbole_tpad.features.cache",
    "VIEWS": "recbole_tpad.features.encode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recbole_tpad.features' has no attribute '{name}'")
