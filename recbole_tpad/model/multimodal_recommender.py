# -*- coding: utf-8 -*-
r"""
MultimodalSequentialRecommender
################################################

The part TPAD and KDSR share: frozen item views read in ``__init__`` from the dataset (attached
by :func:`recbole_tpad.model.item_views.prepare_item_views`), item-side representations cached
while evaluating, and one ``calculate_loss`` / ``predict`` / ``full_sort_predict`` for any model
that scores a session against every item with one or more views (late fusion of per-view dot
products).

A subclass implements:

- ``check_config(config)`` (extending this one) and ``required_views(config)``: class methods, so
  that the runner checks the keys and knows which views to make before the model exists;
- optionally ``make_item_views(config, train_dataset, features)``, a class method: where the views come from
  (default: the base backbone's feature cache; TPAD: its MLLM stages);
- ``__init__``: every parameter, views included (``self.read_item_views(config, dataset)``);
- ``item_representations()``: ``[V, n_items, H]``, every item under every view, as the session encoder
  reads it;
- optionally ``target_representations(items)``: ``[V, n_items, H]``, every item as it is scored (default:
  ``items``, the same vectors);
- ``encode_sessions(item_seq, item_seq_len, items)``: ``[V, B, H]`` from the item representations;
- optionally ``view_weights()`` (``[V]``, the late-fusion weights),
  ``extra_logits(item_seq, item_seq_len, candidates=None)`` (scores added to the fused ones:
  ``[B, n_items]``, or ``[B]`` for one candidate per session) and
  ``auxiliary_losses(interaction, items)`` (extra loss terms, logged apart by RecBole's trainer).

The frozen views become non-persistent buffers: checkpoints hold the trained weights, not the
frozen features, which come back from their cache (``recbole_tpad.recommend``: through the
checkpoint's sidecar).
"""

import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_tpad.errors import ConfigError, DataError
from recbole_tpad.model.item_views import read_item_views
from recbole_tpad.model.session_encoders import session_encoder_name


class MultimodalSequentialRecommender(SequentialRecommender):
    r"""Base class of sequential recommenders fed with frozen per-item views."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.loss_fct = nn.CrossEntropyLoss()
        self._item_cache = None

    # ------------------------------------------------------------------ item views
    @classmethod
    def check_config(cls, config):
        """Raise ``ConfigError`` naming the first bad key of ``config``."""
        if config["loss_type"] != "CE":
            raise ConfigError(f"loss_type={config['loss_type']!r}: {cls.__name__} trains with 'CE' only.")
        session_encoder_name(config)

    @classmethod
    def required_views(cls, config):
        """Names of the frozen item views a model built from ``config`` reads (empty: it runs on IDs alone)."""
        return ()

    @classmethod
    def make_item_views(cls, config, train_dataset, features):
        r"""The item views for ``config``: ``(ItemViews, seconds)``, ``seconds`` the wall time of each step.

        ``features`` is the run's :class:`recbole_tpad.features.FeaturesConfig`. Default: the base
        backbone's views from the feature cache of ``recbole_tpad.features`` (extracted on first use).
        """
        from recbole_tpad.features import get_item_views

        return get_item_views(config, train_dataset, features, progress=bool(config["show_progress"])), {}

    def read_item_views(self, config, dataset):
        """``(views, image_mask)`` attached to ``dataset``, checked: ``name -> [n_items, dim]`` float32, ``[n_items]`` bool."""
        return read_item_views(dataset, self.required_views(config), self.n_items, type(self).__name__)

    def _rows_with_view(self, name, image_mask):
        """``[n_items]`` bool, the items that have view ``name``: every real item, or those with a photo for ``image``."""
        rows = image_mask if name == "image" else torch.arange(self.n_items) > 0
        if rows.sum() < 2:
            raise DataError(
                f"item view '{name}' has fewer than two items with features (no images in this dataset?); "
                f"do not name '{name}' in {type(self).__name__}'s views."
            )
        return rows

    # ------------------------------------------------------------------ item-side cache
    def train(self, mode=True):
        self._item_cache = None  # weights may change (train) or be reloaded (eval after load)
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, **kwargs):
        self._item_cache = None
        return super().load_state_dict(state_dict, strict=strict, **kwargs)

    def _items(self):
        """``(items, targets)``: the item representations the sessions read and those they score, computed
        once per evaluation (eval mode, no grad) and reused."""
        if self.training or torch.is_grad_enabled():
            return self._item_sides()
        if self._item_cache is None:
            self._item_cache = self._item_sides()
        return self._item_cache

    def _item_sides(self):
        items = self.item_representations()
        return items, self.target_representations(items)

    # ------------------------------------------------------------------ scoring
    def item_representations(self):
        raise NotImplementedError

    def target_representations(self, items):
        """Every item as a session scores it, ``[V, n_items, H]``; by default the vectors the sessions read."""
        return items

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

    def _session_logits(self, item_seq, item_seq_len, seq_output, targets):
        logits = self._fused_logits(seq_output, targets)
        extra = self.extra_logits(item_seq, item_seq_len)
        return logits if extra is None else logits + extra

    def forward(self, item_seq, item_seq_len):
        """Session representations ``[V, B, H]``, one per view."""
        return self.encode_sessions(item_seq, item_seq_len, self._items()[0])

    def _view_logits(self, seq_output, targets):
        return torch.einsum("vbh,vnh->vbn", seq_output, targets)  # [V, B, n_items]

    def _fuse(self, view_scores):
        return torch.einsum("v...,v->...", view_scores, self.view_weights())

    def _fused_logits(self, seq_output, targets):
        """``sum_v w_v <s_v, e_v(i)>`` for every item, ``[B, n_items]``.

        One matmul over the views laid side by side, so the ``[V, B, n_items]`` per-view scores, the
        largest tensors of a training step, are never built (epoch times: docs/results.md).
        """
        query = (seq_output * self.view_weights()[:, None, None]).permute(1, 0, 2).flatten(1)  # [B, V*H]
        return query @ targets.permute(1, 0, 2).flatten(1).T

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        items, targets = self._item_sides()  # fresh each batch: adapters are training
        seq_output = self.encode_sessions(item_seq, item_seq_len, items)
        loss = self.loss_fct(self._session_logits(item_seq, item_seq_len, seq_output, targets), pos_items)
        return (loss, *self.view_losses(seq_output, targets, pos_items), *self.auxiliary_losses(interaction, items))

    def view_losses(self, seq_output, targets, pos_items):
        """Per-view loss terms (already weighted); none by default."""
        return ()

    def predict(self, interaction):
        items, targets = self._items()
        item_seq, item_seq_len, test_item = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.ITEM_ID]
        seq_output = self.encode_sessions(item_seq, item_seq_len, items)
        scores = self._fuse((seq_output * targets[:, test_item]).sum(-1))  # [B]
        extra = self.extra_logits(item_seq, item_seq_len, candidates=test_item)
        return scores if extra is None else scores + extra

    def full_sort_predict(self, interaction):
        # Reads the session only: the batch also carries the target item's id and features.
        items, targets = self._items()
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        seq_output = self.encode_sessions(item_seq, item_seq_len, items)
        return self._session_logits(item_seq, item_seq_len, seq_output, targets)  # [B, n_items]
