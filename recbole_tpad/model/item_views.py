# -*- coding: utf-8 -*-
r"""
Item views at the data boundary
################################################

TPAD and KDSR read frozen item views (the MLLM's ``text``, ``image`` and ``fused`` item features)
in ``__init__``, from the dataset they are built with, as RecBole's FDSA reads item features. The
runner prepares them once, after RecBole's ``data_preparation``, from the training split::

    train_data, valid_data, test_data = data_preparation(config, dataset)
    prepare_item_views(config, train_data)  # TPAD: its MLLM stages; KDSR: the feature cache; stock models: nothing
    init_seed(config["seed"] + get_rank(), config["reproducibility"])  # get_rank: recbole_tpad.distributed
    model = get_model(config["model"])(config, train_data._dataset)

The views hang on that dataset object as ``dataset.item_views``, a
:class:`recbole_tpad.features.ItemViews`: ``views`` maps names to ``(n_items, dim)`` arrays whose
rows follow RecBole's internal item ids (row 0 the padding item), ``image_mask`` is True where the
item has a photo. Checkpoints hold trained weights only: the frozen views come back from their
cache when the runner prepares them again, or when :mod:`recbole_tpad.recommend` loads a
checkpoint (its sidecar names the cache folder). In a distributed run every rank prepares them
together: each encodes its share of the items, and rank 0 alone writes the caches.
"""

from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color

from recbole_tpad.errors import DataError

# 'id' is a trainable ID table; the others are frozen MLLM item features (recbole_tpad.features)
VIEWS = ("id", "text", "image", "fused")
# TPAD's Transfer-MLLM through its transition head, made by stage 3 after stage 2 (recbole_tpad.stages.representation)
SUCCESSOR_VIEWS = ("successor", "successor_target")


def prepare_item_views(config, train_data):
    r"""Make the item views ``config['model']`` reads and attach them to ``train_data``'s dataset.

    Call it once per run, after ``data_preparation`` and before the model is built from
    ``train_data._dataset``. The model class decides what its views are (``make_item_views``);
    a stock RecBole model, or one whose config names no frozen view, gets none. The feature
    settings are read from ``config`` here, once, and passed down.

    Returns:
        tuple: ``(ItemViews or None, info)``, ``info`` the wall time of each preparation step
        (TPAD: ``{"stage1_s": ..., "stage2_s": ..., "representation_s": ...}``, this process's) and, for
        TPAD, its stages' held-out figures (``stage1_heldout_...``, ``stage2_heldout_...``) and training
        seconds (``stage1_train_s``, ``stage2_train_s``) from their cache manifests.
    """
    from recbole_tpad.utils import get_model

    model_class = get_model(config["model"])
    if not hasattr(model_class, "make_item_views"):  # a stock model: no frozen views
        return None, {}
    model_class.check_config(config)  # a bad key fails before the (long) view preparation
    if not model_class.required_views(config):
        return None, {}
    from recbole_tpad.features.config import FeaturesConfig

    features = FeaturesConfig.from_config(config)
    getLogger().info(set_color("Preparing item views", "green") + f" for {config['model']}")
    # Building a backbone draws from torch's RNG: forked, a run that makes its views and one that
    # loads them from the cache initialise and train the model on the same random stream.
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        item_views, info = model_class.make_item_views(config, train_data._dataset, features)
    attach_item_views(train_data._dataset, item_views)
    return item_views, info


def attach_item_views(dataset, item_views):
    """Hang ``item_views`` (:class:`recbole_tpad.features.ItemViews`) on ``dataset`` for a model's ``__init__``."""
    dataset.item_views = item_views


def read_item_views(dataset, names, n_items, model_name):
    r"""The views ``names`` attached to ``dataset``, checked: ``(views, image_mask)``.

    Returns:
        tuple: ``views`` maps each name to a float32 CPU tensor ``[n_items, dim]``; ``image_mask``
        is a bool tensor ``[n_items]``, False for the padding item.
    """
    item_views = getattr(dataset, "item_views", None)
    if item_views is None and names:
        raise RuntimeError(
            f"{model_name} reads its item views {list(names)} from the dataset it is built with, and this one has "
            "none: call recbole_tpad.model.item_views.prepare_item_views(config, train_data) after data_preparation, "
            "then build the model with train_data._dataset."
        )
    available = item_views.views if item_views is not None else {}
    missing = [name for name in names if name not in available]
    if missing:
        raise DataError(
            f"{model_name} needs item views {missing}, got {sorted(available)}; "
            "check the model's `views` key or the feature cache."
        )
    views = {name: _check_view(name, available[name], n_items) for name in names}
    image_mask = item_views.image_mask if item_views is not None else None
    if image_mask is None:
        mask = torch.ones(n_items, dtype=torch.bool)
    else:
        mask = torch.as_tensor(np.asarray(image_mask), dtype=torch.bool).reshape(-1).clone()
        if mask.numel() != n_items:
            raise DataError(f"image_mask has {mask.numel()} entries, expected n_items={n_items}.")
    mask[0] = False  # the padding item
    return views, mask


def _check_view(name, view, n_items):
    view = torch.as_tensor(np.asarray(view) if not torch.is_tensor(view) else view)
    if view.dim() != 2 or view.size(0) != n_items:
        raise DataError(
            f"item view '{name}' has shape {tuple(view.shape)}, expected (n_items={n_items}, dim): "
            "rows must follow RecBole's internal item ids with row 0 the padding item."
        )
    view = view.detach().to(torch.float32).cpu()
    bad = (~torch.isfinite(view)).any(dim=1).nonzero().flatten()
    if bad.numel():
        raise DataError(f"item view '{name}' has non-finite values in rows {bad[:5].tolist()}.")
    return view
