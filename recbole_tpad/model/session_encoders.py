# -*- coding: utf-8 -*-
r"""
Session encoders
################################################

The session encoders of RecBole's GRU4Rec, SASRec, SRGNN and STAMP, detached from their item
embedding tables so that one encoder can run on any item representation (an ID table, an
adapted text or image view, a gated fusion).

Every encoder works in two steps:

- ``prepare(item_seq)`` returns the ids whose embeddings the encoder needs (``item_seq`` itself
  for GRU4Rec, SASRec and STAMP, the session graph's unique nodes for SRGNN) and a context (the
  attention mask, the session graph, the mask of real items). Both depend on the session only, so a model computes
  them once per batch and shares them across views.
- ``forward(context, item_seq_len, emb)`` encodes ``emb`` of shape ``[V, B, L, H]``: ``V``
  item representations (views) of the same ``B`` sessions, stacked along the batch. It returns
  ``[V, B, H]``. A shared encoder runs all views in one call; one encoder per view runs ``V=1``.

The layers are RecBole's own (``recbole.model.layers.TransformerEncoder``, SRGNN's ``GNN`` and
its graph construction ``SRGNN._get_slice``, ``torch.nn.GRU``; STAMP's attention written as RecBole's
``STAMP.forward`` computes it), initialised as the stock models initialise them (``reset_parameters``).
"""

import math
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn.init import xavier_uniform_

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder
from recbole.model.sequential_recommender.srgnn import GNN, SRGNN

from recbole_tpad.errors import ConfigError
from recbole_tpad.model.renamed_keys import renamed_key


def _gather_last(output, item_seq_len):
    # SequentialRecommender.gather_indexes does not use its instance.
    return SequentialRecommender.gather_indexes(None, output, item_seq_len - 1)


def keep_recent_items(item_seq, item_seq_len, length):
    r"""The ``length`` most recent items of each session, laid out as RecBole lays out sessions.

    RecBole left-aligns a session (oldest item first, padding after the last one) and keeps its
    ``MAX_ITEM_LIST_LENGTH`` most recent items; this keeps fewer in the same way, so a model can
    read shorter sessions than the dataset holds. ``length`` 0 (or not shorter) keeps them all.
    """
    if not length or length >= item_seq.size(1):
        return item_seq, item_seq_len
    start = (item_seq_len - length).clamp(min=0)
    positions = torch.arange(length, device=item_seq.device)
    recent = item_seq.gather(1, (start.unsqueeze(1) + positions).clamp(max=item_seq.size(1) - 1))
    recent_len = item_seq_len.clamp(max=length)
    return recent * (positions < recent_len.unsqueeze(1)), recent_len


def _fold(emb):
    """[V, B, L, H] -> [V * B, L, H]."""
    return emb.reshape(-1, *emb.shape[2:])


class GRU4RecEncoder(nn.Module):
    r"""GRU4Rec's encoder: dropout, a bias-free GRU, a dense layer back to the item size, last state."""

    def __init__(self, config, hidden_size):
        super().__init__()
        self.gru_hidden_size = config["gru_hidden_size"]
        self.emb_dropout = nn.Dropout(config["dropout_prob"])
        self.gru_layers = nn.GRU(
            input_size=hidden_size,
            hidden_size=self.gru_hidden_size,
            num_layers=config["num_layers"],
            bias=False,
            batch_first=True,
        )
        self.dense = nn.Linear(self.gru_hidden_size, hidden_size)

    def reset_parameters(self):
        xavier_uniform_(self.gru_layers.weight_hh_l0)
        xavier_uniform_(self.gru_layers.weight_ih_l0)

    def prepare(self, item_seq):
        return item_seq, None

    def forward(self, context, item_seq_len, emb):
        n_views = emb.size(0)
        gru_output, _ = self.gru_layers(self.emb_dropout(_fold(emb)))
        gru_output = self.dense(gru_output)  # [V*B, L, H]
        seq_output = _gather_last(gru_output, item_seq_len.repeat(n_views))
        return seq_output.view(n_views, -1, seq_output.size(-1))


class SASRecEncoder(nn.Module):
    r"""SASRec's encoder: position embeddings, LayerNorm, dropout, RecBole's TransformerEncoder with a
    causal mask, the state at the last position."""

    def __init__(self, config, hidden_size, max_seq_length):
        super().__init__()
        if hidden_size % config["n_heads"]:
            raise ConfigError(
                f"n_heads={config['n_heads']} must divide the item size {hidden_size} for the SASRec session encoder."
            )
        self.initializer_range = config["initializer_range"]
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=hidden_size,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])

    def reset_parameters(self):
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.data.normal_(mean=0.0, std=self.initializer_range)
            elif isinstance(module, nn.LayerNorm):
                module.bias.data.zero_()
                module.weight.data.fill_(1.0)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()

    def prepare(self, item_seq):
        # SequentialRecommender.get_attention_mask does not use its instance.
        return item_seq, SequentialRecommender.get_attention_mask(None, item_seq)  # [B, 1, L, L]

    def forward(self, context, item_seq_len, emb):
        n_views, _, seq_len, _ = emb.shape
        position_ids = torch.arange(seq_len, dtype=torch.long, device=emb.device)
        input_emb = self.dropout(self.LayerNorm(emb + self.position_embedding(position_ids)))
        attention_mask = context.repeat(n_views, 1, 1, 1)
        trm_output = self.trm_encoder(_fold(input_emb), attention_mask, output_all_encoded_layers=True)
        seq_output = _gather_last(trm_output[-1], item_seq_len.repeat(n_views))
        return seq_output.view(n_views, -1, seq_output.size(-1))


class SRGNNEncoder(nn.Module):
    r"""SRGNN's encoder: gated GNN over the session graph, soft attention readout over the
    session's items combined with the last item's state."""

    def __init__(self, config, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.gnn = GNN(hidden_size, config["step"])
        self.linear_one = nn.Linear(hidden_size, hidden_size, bias=True)
        self.linear_two = nn.Linear(hidden_size, hidden_size, bias=True)
        self.linear_three = nn.Linear(hidden_size, 1, bias=False)
        self.linear_transform = nn.Linear(hidden_size * 2, hidden_size, bias=True)

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            weight.data.uniform_(-stdv, stdv)

    def prepare(self, item_seq):
        # SRGNN's graph construction only reads `self.device` from its instance.
        alias_inputs, A, items, mask = SRGNN._get_slice(SimpleNamespace(device=item_seq.device), item_seq)
        return items, (alias_inputs, A, mask)

    def forward(self, context, item_seq_len, emb):
        alias_inputs, A, mask = context
        n_views = emb.size(0)
        hidden = self.gnn(A.repeat(n_views, 1, 1), _fold(emb))  # [V*B, L, H] over graph nodes
        alias = alias_inputs.repeat(n_views, 1).unsqueeze(-1).expand(-1, -1, self.hidden_size)
        seq_hidden = torch.gather(hidden, dim=1, index=alias)  # [V*B, L, H] over positions
        ht = _gather_last(seq_hidden, item_seq_len.repeat(n_views))
        q1 = self.linear_one(ht).unsqueeze(1)
        q2 = self.linear_two(seq_hidden)
        alpha = self.linear_three(torch.sigmoid(q1 + q2))
        mask = mask.repeat(n_views, 1).unsqueeze(-1).float()
        a = torch.sum(alpha * seq_hidden * mask, 1)
        seq_output = self.linear_transform(torch.cat([a, ht], dim=1))
        return seq_output.view(n_views, -1, self.hidden_size)


class STAMPEncoder(nn.Module):
    r"""STAMP's encoder (Liu et al., KDD 2018, as RecBole's ``STAMP.forward``): attention over the session's
    items from the last item and the session mean (long-term memory), times the last item (short-term
    memory), each through its MLP. Padding positions are masked out: a view's padding row need not be
    zero, as STAMP's ID table's is."""

    def __init__(self, config, hidden_size):
        super().__init__()
        self.w1 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w2 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w3 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w0 = nn.Linear(hidden_size, 1, bias=False)
        self.b_a = nn.Parameter(torch.zeros(hidden_size))
        self.mlp_a = nn.Linear(hidden_size, hidden_size)
        self.mlp_b = nn.Linear(hidden_size, hidden_size)

    def reset_parameters(self):
        for module in self.modules():  # STAMP._init_weights
            if isinstance(module, nn.Linear):
                module.weight.data.normal_(0, 0.05)
                if module.bias is not None:
                    module.bias.data.fill_(0.0)
        self.b_a.data.zero_()

    def prepare(self, item_seq):
        return item_seq, (item_seq > 0).unsqueeze(-1)  # [B, L, 1]

    def forward(self, context, item_seq_len, emb):
        n_views = emb.size(0)
        memory = _fold(emb) * context.repeat(n_views, 1, 1).to(emb.dtype)  # [V*B, L, H], padding zeroed
        lengths = item_seq_len.repeat(n_views)
        last = _gather_last(memory, lengths)  # [V*B, H]
        mean = memory.sum(1) / lengths.unsqueeze(1).to(emb.dtype)
        alpha = self.w0(torch.sigmoid(self.w1(memory) + self.w2(last).unsqueeze(1) + self.w3(mean).unsqueeze(1) + self.b_a))
        attended = (alpha * memory).sum(1) + mean  # [V*B, H]
        seq_output = torch.tanh(self.mlp_a(attended)) * torch.tanh(self.mlp_b(last))
        return seq_output.view(n_views, -1, seq_output.size(-1))


SESSION_ENCODERS = ("GRU4Rec", "SASRec", "SRGNN", "STAMP")


def session_encoder_name(config):
    """The model's ``session_encoder`` key (old name ``backbone``), checked."""
    name = renamed_key(config, "session_encoder", "backbone")
    if name not in SESSION_ENCODERS:
        raise ConfigError(f"session_encoder={name!r} is not supported; choose one of {list(SESSION_ENCODERS)}.")
    return name


def build_session_encoder(config, hidden_size, max_seq_length):
    """Return the config's session encoder for items of size ``hidden_size``."""
    name = session_encoder_name(config)
    if name == "GRU4Rec":
        return GRU4RecEncoder(config, hidden_size)
    if name == "SASRec":
        return SASRecEncoder(config, hidden_size, max_seq_length)
    if name == "STAMP":
        return STAMPEncoder(config, hidden_size)
    return SRGNNEncoder(config, hidden_size)
