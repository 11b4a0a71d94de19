# -*- coding: utf-8 -*-
r"""
Prompts of the two TPAD stages, built from the item table and the TRAINING split only
######################################################################################

- :func:`training_sessions` reads ``(session prefix, next item)`` pairs from RecBole's training
  dataset (``train_data.dataset``: the augmented sequences whose targets are training interactions
  only; validation and test targets never appear there).
- The session prompts themselves are built from cached item states
  (:meth:`recbole_tpad.stages.transition_distillation.TransitionDistillation.session_inputs`).
- :func:`knowledge_example` splits an item's text into the Knowledge-MLLM's prompt (the title) and
  the held-out knowledge it must generate (brand, categories, description, where present).
"""

from dataclasses import dataclass

import numpy as np
import torch

from recbole_tpad.errors import DataError
from recbole_tpad.features.prompt import field_label


@dataclass
class TrainingSessions:
    r"""``(prefix, next item)`` pairs of the training split, internal item ids.

    Attributes:
        item_seq (torch.LongTensor): ``[N, L_max]`` right-padded prefixes.
        item_len (torch.LongTensor): ``[N]`` prefix lengths (>= 1).
        target (torch.LongTensor): ``[N]`` the next item of each prefix.
        session (torch.LongTensor): ``[N]`` internal session (user) id of each pair.
    """

    item_seq: torch.Tensor
    item_len: torch.Tensor
    target: torch.Tensor
    session: torch.Tensor

    def __len__(self):
        return int(self.target.numel())

    def prefix(self, row, max_items):
        r"""The last ``max_items`` items of prefix ``row``, oldest first, as a list of ids."""
        length = int(self.item_len[row])
        return self.item_seq[row, max(0, length - max_items):length].tolist()


def training_sessions(train_dataset):
    r"""Read the training pairs from RecBole's augmented training dataset.

    Args:
        train_dataset (recbole.data.dataset.SequentialDataset): ``train_data.dataset``. Pass the
            training split only: its targets are the only next items the stages may learn from.

    Returns:
        TrainingSessions
    """
    config = train_dataset.config
    iid_field = train_dataset.iid_field
    list_field = iid_field + config["LIST_SUFFIX"]
    len_field = config["ITEM_LIST_LENGTH_FIELD"]
    feat = train_dataset.inter_feat
    for field in (list_field, len_field, iid_field):
        if field not in feat.interaction:
            raise DataError(
                f"training_sessions needs the augmented training split of a sequential dataset "
                f"(train_data.dataset, with field '{field}'); got fields {sorted(feat.interaction)}."
            )
    item_len = feat[len_field].long()
    keep = item_len > 0
    uid_field = train_dataset.uid_field
    session = feat[uid_field].long() if uid_field in feat.interaction else torch.zeros_like(item_len)
    return TrainingSessions(feat[list_field][keep].long(), item_len[keep], feat[iid_field][keep].long(), session[keep])


def _words(text, max_words):
    return " ".join(text.split()[:max_words])


def knowledge_example(record, field_labels=None, answer_words=32, prompt_field=None):
    r"""The Knowledge Acquisition generation task of one item.

    Prompt: the title (the first text field, or ``prompt_field``); answer: the other non-empty
    fields (brand, categories, description, ...) as ``"Brand: X. Category: Y."``, cut to
    ``answer_words`` words. Returns ``(prompt_text, answer)``; ``answer`` is ``None`` when the item
    has no held-out knowledge.
    """
    labels = field_labels or {}
    names = list(record.fields)
    if not names:
        return "Item:", None
    prompt_field = prompt_field if prompt_field in record.fields else names[0]
    title = record.fields[prompt_field].strip()
    prompt = f"Item: {title}." if title else "Item:"
    held_out = []
    for name in names:
        value = record.fields[name].strip()
        if name != prompt_field and value:
            held_out.append(f"{field_label(name, labels)}: {value.rstrip('.')}.")
    if not held_out:
        return prompt, None
    return prompt, " " + _words(" ".join(held_out), answer_words)


def sample_rows(num_rows, num_samples, seed, epoch):
    r"""A seeded sample (without replacement when possible) of ``num_samples`` row indices."""
    if num_rows < 1:
        raise DataError("no training examples to sample from")
    rng = np.random.default_rng([int(seed), int(epoch)])
    if num_samples <= 0 or num_samples >= num_rows:
        return rng.permutation(num_rows)
    return rng.choice(num_rows, size=num_samples, replace=False)
