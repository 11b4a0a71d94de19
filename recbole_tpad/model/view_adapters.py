# -*- coding: utf-8 -*-
r"""
View adapters
################################################

Trainable maps from a frozen item view (an MLLM's text, image or fused item feature) to the
recommender's item space, and the standardisation applied to a frozen view before it. (Not the
MLLM's LoRA adapters K and T, which live in ``recbole_tpad.features`` and ``recbole_tpad.stages``.)
"""

import torch
from torch import nn

from recbole_tpad.errors import ConfigError

VIEW_ADAPTERS = ("linear", "mlp")


def _all_but_padding(view):
    valid = torch.ones(view.size(0), dtype=torch.bool)
    valid[0] = False
    return valid


def view_statistics(view, valid=None, eps=1e-6):
    r"""``(mean, scale)`` per dimension of ``view``'s ``valid`` rows (default: all but row 0), for :func:`standardize_view`."""
    valid = _all_but_padding(view) if valid is None else valid
    if valid.sum() < 2:
        raise ValueError("standardize_view needs at least two valid rows.")
    rows = view[valid]
    return rows.mean(0), rows.std(0) + eps


def standardize_view(view, valid=None, eps=1e-6, statistics=None):
    r"""Zero mean, unit variance per dimension over the ``valid`` rows; other rows become zero.

    LLM hidden states have a few dimensions of very large magnitude; standardising keeps one of
    them from dominating the adapter at initialisation.

    Args:
        view (torch.Tensor): ``[n_items, dim]``.
        valid (torch.BoolTensor, optional): ``[n_items]`` rows to fit on (default: all but row 0).
        statistics (tuple, optional): ``(mean, scale)`` fitted before (:func:`view_statistics`), for
            rows added later; ``valid`` then only says which rows to keep.
    """
    valid = _all_but_padding(view) if valid is None else valid
    mean, scale = statistics if statistics is not None else view_statistics(view, valid, eps)
    out = (view - mean) / scale
    return out * valid.unsqueeze(-1).to(out.dtype)


def check_view_adapter(kind):
    if kind not in VIEW_ADAPTERS:
        raise ConfigError(f"view_adapter={kind!r} is not supported; choose one of {list(VIEW_ADAPTERS)}.")


class ViewAdapter(nn.Module):
    r"""``linear``: one linear layer; ``mlp``: linear, GELU, dropout, linear. Dropout on the output.

    Args:
        in_dim (int): size of the frozen view.
        out_dim (int): the recommender's item size.
        kind (str): ``'linear'`` or ``'mlp'`` (the model's ``view_adapter`` key).
        dropout (float): dropout probability.
    """

    def __init__(self, in_dim, out_dim, kind="linear", dropout=0.0):
        super().__init__()
        check_view_adapter(kind)
        if kind == "linear":
            self.net = nn.Linear(in_dim, out_dim)
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(out_dim, out_dim)
            )
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self, out_std):
        """Initialise so that a standardised input gives outputs of std ``out_std`` (like an ID table's)."""
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        for k, linear in enumerate(linears):
            gain = out_std if k == len(linears) - 1 else 1.0
            linear.weight.data.normal_(mean=0.0, std=gain / linear.in_features**0.5)
            linear.bias.data.zero_()

    def forward(self, x):
        return self.dropout(self.net(x))
