# -*- coding: utf-8 -*-
r"""
MultimodalSequentialRecommender
################################################

The part TPAD and KDSR share: frozen item views registered after construction, item-side
representations cached while evaluating, and one ``calculate_loss`` / ``predict`` /
``full_sort_predict`` for any model that scores a session against every item with one or more
views (late fusion of per-view dot products).

A subclass implements:

- ``_build_from_item_views(views, image_mask)``: turn the validated views into buffers, adapters,
  teachers (called by ``set_item_views``; may create parameters: a trainer that builds its
  optimizer before the views arrive must build it again, as ``MultimodalTrainer`` does);
- ``item_representations()``: ``[V, n_items, H]``, every item under every view;
- ``encode_sessions(item_seq, item_seq_len, items)``: ``[V, B, H]`` from the item representations;
- optionally ``view_weights()`` (``[V]``, the late-fusion weights),
  ``extra_logits(item_seq, item_seq_len, candidates=None)`` (scores added to the fused ones:
  ``[B, n_items]``, or ``[B]`` for one candidate per session) and
  ``auxiliary_losses(interaction, items)`` (extra loss terms, logged apart by RecBole's trainer).

Item views: ``dict[str, array (n_items, dim)]`` aligned to RecBole's internal item ids (row 0 is
the padding item) and an optional image mask ``(n_items,)``, True where the item has a photo. They
are non-persistent buffers: checkpoints hold the trained weights, not the frozen features, which
come back from the feature cache (``MultimodalTrainer.prepare_item_views``).
"""

import numpy as np
import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_tpad.errors import ConfigError, DataError


class MultimodalSequentialRecommender(SequentialRecommender):
    r"""Base class of sequential recommenders fed with frozen per-item views."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] != "CE":
            raise ConfigError(f"loss_type={config['loss_type']!r}: {type(self).__name__} trains with 'CE' only.")
        self.loss_fct = nn.CrossEntropyLoss()
        self._has_item_views = False
        self._item_cache = None

    # ------------------------------------------------------------------ item views
    @property
    def required_views(self):
        """Names of the item views this model reads (empty: it runs on IDs alone)."""
        return ()

    @property
    def has_item_views(self):
        return self._has_item_views or not self.required_views

    def set_item_views(self, views, image_mask=None):
        r"""Register the frozen item views.

        Args:
            views (dict[str, numpy.ndarray or torch.Tensor]): ``name -> (n_items, dim)`` rows aligned
                to internal item ids; must hold every name in ``required_views``.
            image_mask (array-like of bool, optional): ``(n_items,)``, True where the item has an image.
        """
        missing = [name for name in self.required_views if name not in views]
        if missing:
            raise DataError(
                f"{type(self).__name__} needs item views {missing}, got {sorted(views)}; "
                "check the model's `views` key or the feature cache."
            )
        checked = {name: self._check_view(name, views[name]) for name in self.required_views}
        if image_mask is None:
            mask = torch.ones(self.n_items, dtype=torch.bool)
        else:
            mask = torch.as_tensor(np.asarray(image_mask), dtype=torch.bool).reshape(-1)
            if mask.numel() != self.n_items:
                raise DataError(f"image_mask has {mask.numel()} entries, expected n_items={self.n_items}.")
            mask = mask.clone()
        mask[0] = False  # the padding item
        device = next(self.parameters()).device
        self._build_from_item_views(checked, mask)
        self.to(device)
        self._has_item_views = True
        self._item_cache = None

    def _check_view(self, name, view):
        view = torch.as_tensor(np.asarray(view) if not torch.is_tensor(view) else view)
        if view.dim() != 2 or view.size(0) != self.n_items:
            raise DataError(
                f"item view '{name}' has shape {tuple(view.shape)}, expected (n_items={self.n_items}, dim): "
                "rows must follow RecBole's internal item ids with row 0 the padding item."
            )
        view = view.detach().to(torch.float32).cpu()
        bad = (~torch.isfinite(view)).any(dim=1).nonzero().flatten()
        if bad.numel():
            raise DataError(f"item view '{name}' has non-finite values in rows {bad[:5].tolist()}.")
        return view

    def _build_from_item_views(self, views, image_mask):
        raise NotImplementedError

    def _require_item_views(self):
        if not self.has_item_views:
            raise RuntimeError(
                f"{type(self).__name__} has no item views yet: call model.set_item_views(views, image_mask) "
                "first (MultimodalTrainer does it before fit/evaluate)."
            )

    # ------------------------------------------------------------------ item-side cache
    def train(self, mode=True):
        self._item_cache = None  # weights may change (train) or be reloaded (eval after load)
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, **kwargs):
        self._item_cache = None
        return super().load_state_dict(state_dict, strict=strict, **kwargs)

    def _items(self):
        """``item_representations()``, computed once per evaluation (eval mode, no grad) and reused."""
        self._require_item_views()
        if self.training or torch.is_grad_enabled():
            return self.item_representations()
        if self._item_cache is None:
            self._item_cache = self.item_representations()
        return self._item_cache

    # ------------------------------------------------------------------ scoring
    def item_representations(self):
        raise NotImplementedError

    def encode_sessions(self, item_seq, item_seq_len, items):
        raise NotImplementedError

    def view_weights(self):
        """Late-fusion weights ``[V]``; one view by default."""
        return torch.ones(1, device=next(self.parameters()).device)

    def auxiliary_losses(self, interaction, items):
        """Extra loss terms (already weighted); none by default."""
        return ()

    def extra_logits(self, item_seq, item_seq_len, candidates=None):
        """Scores added to the fused view scores, ``[B, n_items]`` (or ``[B]`` for ``candidates`` ``[B]``); none by default."""
        return None

    def _session_logits(self, item_seq, item_seq_len, seq_output, items):
        logits = self._fused_logits(seq_output, items)
        extra = self.extra_logits(item_seq, item_seq_len)
        return logits if extra is None else logits + extra

    def forward(self, item_seq, item_seq_len):
        """Session representations ``[V, B, H]``, one per view."""
        return self.encode_sessions(item_seq, item_seq_len, self._items())

    def _view_logits(self, seq_output, items):
        return torch.einsum("vbh,vnh->vbn", seq_output, items)  # [V, B, n_items]

    def _fuse(self, view_scores):
        return torch.einsum("v...,v->...", view_scores, self.view_weights())

    def _fused_logits(self, seq_output, items):
        """``sum_v w_v <s_v, e_v(i)>`` for every item, ``[B, n_items]``.

        One matmul over the views laid side by side, so the ``[V, B, n_items]`` per-view scores, the
        largest tensors of a training step, are never built (epoch times: docs/results.md).
        """
        query = (seq_output * self.view_weights()[:, None, None]).permute(1, 0, 2).flatten(1)  # [B, V*H]
        return query @ items.permute(1, 0, 2).flatten(1).T

    def calculate_loss(self, interaction):
        self._require_item_views()
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        items = self.item_representations()  # fresh each batch: adapters are training
        seq_output = self.encode_sessions(item_seq, item_seq_len, items)
        loss = self.loss_fct(self._session_logits(item_seq, item_seq_len, seq_output, items), pos_items)
        return (loss, *self.view_losses(seq_output, items, pos_items), *self.auxiliary_losses(interaction, items))

    def view_losses(self, seq_output, items, pos_items):
        """Per-view loss terms (already weighted); none by default."""
        return ()

    def predict(self, interaction):
        items = self._items()
        item_seq, item_seq_len, test_item = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.ITEM_ID]
        seq_output = self.encode_sessions(item_seq, item_seq_len, items)
        scores = self._fuse((seq_output * items[:, test_item]).sum(-1))  # [B]
        extra = self.extra_logits(item_seq, item_seq_len, candidates=test_item)
        return scores if extra is None else scores + extra

    def full_sort_predict(self, interaction):
        # Reads the session only: the batch also carries the target item's id and features.
        items = self._items()
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        seq_output = self.encode_sessions(item_seq, item_seq_len, items)
        return self._session_logits(item_seq, item_seq_len, seq_output, items)  # [B, n_items]
