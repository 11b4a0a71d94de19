# -*- coding: utf-8 -*-
r"""
The Transfer-MLLM's transition head (TPAD stage 2)
##################################################

Reference:
    Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv:2504.10538, 2025.
    Kumar et al. "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution."
    ICLR 2022 (LP-FT: fit the head on frozen features first, then fine-tune).

``L_next`` ranks every item for a session. Its target space is fixed: the frozen base model's item
features (the untrained ``T``'s), centred on their mean and normalized. A session state is mapped
into it by a linear ``session`` map and the items by a linear ``item`` map, both starting as the
identity, so that an untrained head ranks by the last item's content similarity. :meth:`fit` trains
the two maps on the frozen features of every training pair's last item before ``T``'s steps (the
linear probe of LP-FT): a handful of LLM steps cannot move a head that starts at the identity
(tried: ``docs/stages.md``), while the probe over all pairs costs seconds. ``T``'s steps then train
the adapter and the head together.

The head's ``session`` map applied to an item's ``T`` feature gives what follows that item: the
transitional pattern AMIE distils into the Knowledge-MLLM.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TransitionHead(nn.Module):
    r"""Linear maps of session states and item features into the frozen item space.

    Args:
        hidden_size (int): size of the LLM states.
    """

    def __init__(self, hidden_size):
        super(TransitionHead, self).__init__()
        self.session = nn.Linear(hidden_size, hidden_size)
        self.item = nn.Linear(hidden_size, hidden_size)
        for layer in (self.session, self.item):
            nn.init.eye_(layer.weight)
            nn.init.zeros_(layer.bias)
        # LLM states share one large direction (a mean cosine near 0.9 between items): centred on the
        # items' mean, cosines get the range to rank 12,000 items
        self.register_buffer("centre", torch.zeros(hidden_size))

    def set_centre(self, features):
        r"""Centre on the mean of item ``features`` ``[N, H]`` (row 0, the padding item, left out)."""
        self.centre.copy_(features[1:].float().mean(0))

    def _unit(self, x):
        return F.normalize(x.float() - self.centre, dim=-1)

    def successor(self, states):
        r"""Session states (or item features) ``[B, H]`` mapped to where their next item lies (unit rows)."""
        return F.normalize(self.session(self._unit(states)), dim=-1)

    def targets(self, features):
        r"""Item features ``[N, H]`` in the target space (unit rows)."""
        return F.normalize(self.item(self._unit(features)), dim=-1)

    def scores(self, states, features, mapped=True, targets=None):
        r"""Cosines ``[B, N]`` of session ``states`` with item ``features``; ``mapped=False``: without
        the maps (the untrained head), the centred cosines alone. ``targets``: ``targets(features)``
        when the caller already has them (one projection of every item for many batches without
        gradient). Item 0 (padding) scores ``-inf``."""
        if mapped:
            targets = self.targets(features) if targets is None else targets
            scores = self.successor(states) @ targets.t()
        else:
            scores = self._unit(states) @ self._unit(features).t()
        scores[:, 0] = float("-inf")
        return scores

    def fit(self, features, last_items, next_items, epochs, batch_size, learning_rate, temperature, seed):
        r"""Fit both maps on frozen item ``features`` ``[N, H]``: each training pair's last item ranks its
        next item among every item (InfoNCE at ``temperature``). Returns the last epoch's mean loss."""
        last_items = torch.as_tensor(last_items, device=features.device)
        next_items = torch.as_tensor(next_items, device=features.device)
        optimizer = torch.optim.AdamW(self.parameters(), lr=learning_rate, weight_decay=0.0)
        rng = np.random.default_rng([int(seed), 17])
        loss_sum, steps = 0.0, 0
        for _ in range(epochs):
            order = torch.as_tensor(rng.permutation(len(last_items)), device=features.device)
            loss_sum, steps = 0.0, 0
            for i in range(0, len(order), batch_size):
                take = order[i: i + batch_size]
                logits = self.scores(features[last_items[take]], features) / temperature
                loss = F.cross_entropy(logits, next_items[take])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum, steps = loss_sum + loss.item(), steps + 1
        self.zero_grad(set_to_none=True)  # the stage's first step must not add the fit's last gradient
        return loss_sum / max(1, steps)


def load_transition_head(heads_file, hidden_size):
    r"""The trained head of a stage-2 result: the ``head.*`` tensors of its heads file
    (``transition_distillation.HEADS_FILE``), in eval mode."""
    from recbole_tpad.stages.loop import load_safetensors

    state = {k[len("head."):]: v for k, v in load_safetensors(heads_file).items() if k.startswith("head.")}
    head = TransitionHead(hidden_size)
    head.load_state_dict(state)
    return head.eval()
