# -*- coding: utf-8 -*-
r"""
Mutual-information estimators of TPAD's transitional pattern alignment module
################################################################################

Reference:
    Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv:2504.10538, 2025.
    Oord et al. "Representation Learning with Contrastive Predictive Coding." arXiv:1807.03748, 2018.
    Cheng et al. "CLUB: A Contrastive Log-ratio Upper Bound of Mutual Information." ICML 2020.

The paper names two estimators but publishes no equations. This module realizes them as:

- :func:`info_nce`: the (symmetric) InfoNCE loss; ``log(B) - info_nce`` lower-bounds the mutual
  information of the paired rows.
- :class:`AMIE` (Aligning MI Estimator): an InfoNCE lower bound on ``I(k; t)`` between the
  Knowledge-MLLM feature ``k`` and the Transfer-MLLM feature ``t`` of the same item, with a learned
  projection-head critic. ``t`` is the teacher: it is detached, so maximizing the bound moves only
  the Knowledge-MLLM (and the critic).
- :class:`CLUB`: the variational upper bound of Cheng et al.; a Gaussian ``q(y|x)`` is fitted by
  log-likelihood while the main model minimizes the bound.
- :class:`SharedSpecificSplit`: the shared / specific split heads of one feature space.
- :class:`HMIE` (Hierarchical MI Estimator): CLUB between the shared and specific parts at the
  token/view level (modality views) and at the item level (fused feature).

NOTE:
    Minimizing CLUB alone lets the split heads collapse the specific part to a constant (zero MI,
    zero information). :class:`SharedSpecificSplit` therefore also reconstructs the input from
    ``[shared; specific]`` and :class:`HMIE` adds that reconstruction error to its loss, so the
    split stays a decomposition of the feature rather than a projection that drops half of it.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call


def info_nce(anchor, positive, temperature=0.07, symmetric=True, negatives=None):
    r"""InfoNCE with the other rows of the batch (and optional extra ``negatives``) as negatives.

    Args:
        anchor (torch.Tensor): ``[B, D]``.
        positive (torch.Tensor): ``[B, D]``, row ``i`` is the positive of ``anchor[i]``.
        temperature (float): softmax temperature, > 0.
        symmetric (bool): average with the positive -> anchor direction.
        negatives (torch.Tensor, optional): ``[N, D]`` extra candidates for the anchor -> positive
            direction only.

    Returns:
        torch.Tensor: scalar loss; ``log(B + N) - loss`` is a lower bound on the mutual information.
    """
    if anchor.shape != positive.shape or anchor.dim() != 2:
        raise ValueError(f"info_nce expects two [B, D] tensors of the same shape, got "
                         f"{tuple(anchor.shape)} and {tuple(positive.shape)}")
    if temperature <= 0:
        raise ValueError(f"info_nce temperature must be > 0, got {temperature}")
    anchor = F.normalize(anchor.float(), dim=-1)
    positive = F.normalize(positive.float(), dim=-1)
    candidates = positive
    if negatives is not None:
        candidates = torch.cat([positive, F.normalize(negatives.float(), dim=-1)], dim=0)
    logits = anchor @ candidates.t() / temperature  # [B, B + N]
    target = torch.arange(anchor.size(0), device=anchor.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits[:, : anchor.size(0)].t(), target))
    return loss


class ProjectionHead(nn.Module):
    r"""Two-layer MLP projection ``Linear -> GELU -> Linear``, the critic's embedding of one side."""

    def __init__(self, in_dim, out_dim, hidden_dim=None):
        super(ProjectionHead, self).__init__()
        hidden_dim = hidden_dim or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x):
        return self.net(x)


class AMIE(nn.Module):
    r"""Aligning MI Estimator: InfoNCE lower bound on ``I(k; t)`` with a learned critic.

    The critic is ``f(k, t) = cos(g_k(k), g_t(t)) / temperature`` with projection heads ``g_k`` and
    ``g_t``. ``t`` (the Transfer-MLLM teacher) is detached: the bound distils into ``k`` only.
    """

    def __init__(self, k_dim, t_dim, proj_dim=128, temperature=0.1):
        super(AMIE, self).__init__()
        if temperature <= 0:
            raise ValueError(f"AMIE temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.k_head = ProjectionHead(k_dim, proj_dim)
        self.t_head = ProjectionHead(t_dim, proj_dim)

    def forward(self, k, t):
        r"""Return the AMIE loss (InfoNCE, to minimize) for paired rows ``k`` ``[B, Dk]``, ``t`` ``[B, Dt]``."""
        k = F.layer_norm(k.float(), k.shape[-1:])  # LLM states have a few huge outlier dims
        t = F.layer_norm(t.detach().float(), t.shape[-1:])
        return info_nce(self.k_head(k), self.t_head(t), self.temperature)

    @torch.no_grad()
    def mi_lower_bound(self, k, t):
        r"""The InfoNCE lower bound ``log(B) - loss`` in nats."""
        return math.log(k.size(0)) - self.forward(k, t).item()


class CLUB(nn.Module):
    r"""CLUB: contrastive log-ratio upper bound of ``I(x; y)`` (Cheng et al., 2020).

    ``q(y|x) = N(mu(x), diag(exp(logvar(x))))``. :meth:`learning_loss` is the negative
    log-likelihood that fits ``q`` (inputs detached, gradients reach ``q`` only);
    :meth:`forward` is the upper-bound estimate, computed with ``q``'s parameters frozen so that
    minimizing it moves only ``x`` and ``y``. Adding both to one objective trains both sides with a
    single optimizer.
    """

    def __init__(self, x_dim, y_dim, hidden_dim=128):
        super(CLUB, self).__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim), nn.Tanh())

    def _gaussian(self, x, frozen):
        if not frozen:
            return self.mu(x), self.logvar(x)
        mu = functional_call(self.mu, {n: p.detach() for n, p in self.mu.named_parameters()}, (x,))
        logvar = functional_call(self.logvar, {n: p.detach() for n, p in self.logvar.named_parameters()}, (x,))
        return mu, logvar

    def forward(self, x, y):
        r"""Upper-bound estimate of ``I(x; y)`` for paired rows ``x`` ``[N, Dx]``, ``y`` ``[N, Dy]``."""
        x, y = x.float(), y.float()
        mu, logvar = self._gaussian(x, frozen=True)  # [N, Dy]
        inv_var = torch.exp(-logvar)
        positive = -((mu - y) ** 2 * inv_var).sum(-1) / 2.0  # [N]
        # E_j[(y_j - mu_i)^2] = (mu_i - E[y])^2 + Var[y], per dimension: O(N * Dy) instead of O(N^2 * Dy)
        y_mean = y.mean(0, keepdim=True)
        y_var = y.var(0, unbiased=False, keepdim=True)
        negative = -(((mu - y_mean) ** 2 + y_var) * inv_var).sum(-1) / 2.0  # [N]
        # MI is non-negative: below 0 the estimate only says q is off, and minimizing it further let the
        # features inflate y's variance without bound (stage 2's HMIE term ran to -640 in 150 steps)
        return (positive - negative).mean().clamp_min(0.0)

    def log_likelihood(self, x, y):
        r"""Mean log ``q(y|x)`` up to the constant ``-D/2 log(2 pi)``."""
        mu, logvar = self._gaussian(x.float(), frozen=False)
        return (-((mu - y.float()) ** 2) / logvar.exp() / 2.0 - logvar / 2.0).sum(-1).mean()

    def learning_loss(self, x, y):
        r"""Negative log-likelihood that fits ``q(y|x)``; the inputs are detached."""
        return -self.log_likelihood(x.detach(), y.detach())


class SharedSpecificSplit(nn.Module):
    r"""Split heads: ``feature -> (shared, specific)`` plus a decoder back to the feature."""

    def __init__(self, in_dim, shared_dim, specific_dim):
        super(SharedSpecificSplit, self).__init__()
        self.shared = nn.Linear(in_dim, shared_dim)
        self.specific = nn.Linear(in_dim, specific_dim)
        self.decoder = nn.Linear(shared_dim + specific_dim, in_dim)

    def forward(self, x):
        x = x.float()
        return self.shared(x), self.specific(x)

    def reconstruction_loss(self, x, shared, specific):
        r"""Mean squared error of the reconstruction, relative to the feature's mean square."""
        x = x.float()
        recon = self.decoder(torch.cat([shared, specific], dim=-1))
        return F.mse_loss(recon, x) / x.pow(2).mean().clamp_min(1e-6)


class HMIE(nn.Module):
    r"""Hierarchical MI Estimator: dual-level shared/specific disentanglement with CLUB.

    One :class:`SharedSpecificSplit` per level (``view`` for the token/modality-view level,
    ``item`` for the fused item level) and one :class:`CLUB` per level between the two parts.

    Args:
        in_dim (int): feature size ``H``.
        shared_dim (int): size of the shared part (the one AMIE aligns).
        specific_dim (int): size of the specific part.
        hidden_dim (int): hidden size of the CLUB networks.
        recon_weight (float): weight of the split's reconstruction loss (see the module NOTE).
    """

    levels = ("view", "item")

    def __init__(self, in_dim, shared_dim=64, specific_dim=64, hidden_dim=128, recon_weight=1.0):
        super(HMIE, self).__init__()
        if recon_weight < 0:
            raise ValueError(f"HMIE recon_weight must be >= 0, got {recon_weight}")
        self.recon_weight = recon_weight
        self.split = nn.ModuleDict({lv: SharedSpecificSplit(in_dim, shared_dim, specific_dim) for lv in self.levels})
        self.club = nn.ModuleDict({lv: CLUB(shared_dim, specific_dim, hidden_dim) for lv in self.levels})

    def level_loss(self, level, x):
        r"""Losses of one level for rows ``x`` ``[N, H]``.

        Returns:
            dict: ``mi`` (CLUB estimate, minimized by the features), ``club`` (q's NLL, fits q only),
            ``recon`` (split reconstruction), ``shared`` (the shared part ``[N, shared_dim]``).
        """
        split = self.split[level]
        x = F.layer_norm(x.float(), x.shape[-1:])  # LLM states have a few huge outlier dims
        shared, specific = split(x)
        return {
            "mi": self.club[level](shared, specific),
            "club": self.club[level].learning_loss(shared, specific),
            "recon": split.reconstruction_loss(x, shared, specific),
            "shared": shared,
        }

    def forward(self, view_feats, item_feat):
        r"""HMIE loss at both levels.

        Args:
            view_feats (list[torch.Tensor]): token/view-level rows, e.g. ``[text_view, image_view]``,
                each ``[N_v, H]`` (pooled modality views or sampled token states); may be empty.
            item_feat (torch.Tensor): fused item features ``[B, H]``.

        Returns:
            tuple: ``(loss, parts)``; ``loss`` is the scalar to add to the objective, ``parts`` a dict
            of detached floats for logging and ``item_shared`` / ``view_shared`` tensors for AMIE.
        """
        item = self.level_loss("item", item_feat)
        mi, club, recon = item["mi"], item["club"], item["recon"]
        view_shared = []
        if len(view_feats) > 0:
            rows = torch.cat([v.float() for v in view_feats], dim=0)
            view = self.level_loss("view", rows)
            mi, club, recon = mi + view["mi"], club + view["club"], recon + view["recon"]
            view_shared = list(torch.split(view["shared"], [v.size(0) for v in view_feats], dim=0))
        loss = mi + club + self.recon_weight * recon
        parts = {"hmie_mi": mi.item(), "hmie_club": club.item(), "hmie_recon": recon.item(),
                 "item_shared": item["shared"], "view_shared": view_shared}
        return loss, parts
