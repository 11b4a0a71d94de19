# -*- coding: utf-8 -*-
r"""
Frozen lower-layer states of every item prompt, computed once for all TPAD stages
#################################################################################

Adapters ``K`` and ``T`` put LoRA in the top ``stage_lora_layers`` LLM layers only, so everything
below them is frozen: the states that enter the top layers for an item prompt never change while
the stages train. They are computed once per item (one frozen forward through the lower layers,
``Backbone.lower_states``) and every stage step, the held-out figures and the representation
generation run only the top layers on them (``Backbone.upper``). A step then costs the top layers'
share of the model (8 of SmolLM2's 30 layers by default), and the session prompts of stage 2
present each item as one position: its state at the summary position, which has read the whole
item prompt (title, knowledge, image) in the lower layers.

Per item the cache holds its prompt tokens (visual tokens, text, the summary suffix), their states
(bf16, as the frozen base computes them), position ids and masks: text tokens, visual tokens, the
title (the item's name, the answer of ``L_gen^T``) and the held-out knowledge (brand, categories,
description: the answer of ``L_gen^K``).

In a distributed run each rank computes (and encodes) its share of the item batches and the ranks
gather every row: all of them hold the whole cache, which rank 0 alone writes.
"""

import time
from logging import getLogger

import numpy as np
import torch
from recbole.utils import set_color
from tqdm import tqdm

from recbole_tpad.distributed import all_gather_object, gather_item_rows, is_distributed, shard
from recbole_tpad.features.backbone import IGNORE_INDEX, masked_mean
from recbole_tpad.features.encode import VIEWS, as_numpy, bucketed_batches
from recbole_tpad.features.prompt import item_prompt_spans

STATES_FILE = "item_states.safetensors"
MASKS = ("text_mask", "visual_mask", "title_mask", "knowledge_mask")


class ItemStates:
    r"""Flat per-token tensors of every item; item ``r``'s tokens are ``offsets[r]:offsets[r+1]``.

    Args:
        tensors (dict): ``states`` ``[N_tok, H]``, ``input_ids`` ``[N_tok]``, ``positions``
            ``[P, N_tok]``, the bool masks of :data:`MASKS` ``[N_tok]`` and ``offsets`` ``[N+1]``.
        top_layers (int): the LLM layers the states still have to go through.
    """

    def __init__(self, tensors, top_layers):
        self.tensors = tensors
        self.top_layers = int(top_layers)
        self.offsets = tensors["offsets"]
        self.lengths = (self.offsets[1:] - self.offsets[:-1])
        self.summary = self.tensors["states"][(self.offsets[1:] - 1).clamp(min=0)]  # [N, H] (row 0: unused)

    def __len__(self):
        return int(self.lengths.numel())

    @property
    def hidden_size(self):
        return int(self.tensors["states"].size(1))

    def item_tokens(self, row):
        r"""States ``[T, H]`` and position ids ``[P, T]`` of every token of item ``row``'s prompt."""
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.tensors["states"][start:stop], self.tensors["positions"][:, start:stop]

    def title_states(self, row):
        r"""States and token ids of item ``row``'s title tokens."""
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        keep = self.tensors["title_mask"][start:stop].nonzero().squeeze(1) + start
        return self.tensors["states"][keep], self.tensors["input_ids"][keep]

    def batch(self, rows, device, knowledge_labels=False):
        r"""Right-padded inputs of the top layers for item ``rows``.

        Returns a dict with ``states`` ``[B, T, H]``, ``attention_mask``, ``position_ids``, the masks,
        ``summary_index`` and, with ``knowledge_labels``, ``labels`` (the knowledge tokens, answer-only
        targets of ``L_gen^K``).
        """
        rows = [int(r) for r in rows]
        width = max(int(self.lengths[r]) for r in rows)
        t = self.tensors
        index = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for b, r in enumerate(rows):
            start, stop = int(self.offsets[r]), int(self.offsets[r + 1])
            index[b, : stop - start] = torch.arange(start, stop)
            mask[b, : stop - start] = True
        out = {
            "states": t["states"][index],
            "attention_mask": mask.long(),
            "position_ids": t["positions"][:, index].squeeze(0) if t["positions"].size(0) == 1 else t["positions"][:, index],
            "summary_index": mask.sum(1) - 1,
        }
        for name in MASKS:
            out[name] = t[name][index] & mask
        if knowledge_labels:
            out["labels"] = torch.where(out["knowledge_mask"], t["input_ids"][index], torch.full_like(index, IGNORE_INDEX))
        return {k: v.to(device) for k, v in out.items()}


def first_words(text, span, max_words):
    r"""``span`` cut after its first ``max_words`` words (``None`` stays ``None``)."""
    if span is None:
        return None
    start, stop = span
    end = start
    for word in text[start:stop].split()[:max_words]:
        end = text.index(word, end) + len(word)
    return start, end


def item_inputs(backbone, items, rows, settings):
    r"""``Backbone.prepare`` inputs of the item prompts of ``rows``, with title and knowledge masks
    (cut to ``stage_title_words`` and ``stage_answer_words`` words)."""
    labels = backbone.settings.field_labels
    parts = [item_prompt_spans(items.records[r], labels) for r in rows]
    return backbone.prepare(
        [p[0] for p in parts], [items.load_image(r) for r in rows],
        spans={"title_mask": [first_words(p[0], p[1], settings.title_words) for p in parts],
               "knowledge_mask": [first_words(p[0], p[2], settings.answer_words) for p in parts]})


def compute_item_states(backbone, items, top_layers, settings, batch_size, show_progress=True, checkpoint=None):
    r"""The :class:`ItemStates` of every item row (row 0, RecBole's padding item, holds no token).

    ``checkpoint``: the store entry the states are for; a one-process run resumes from its checkpoint
    and writes one, of the rows done, when due (``CacheEntry.save_checkpoint_when_due``).
    """
    labels = backbone.settings.field_labels
    prompts = [item_prompt_spans(rec, labels)[0] for rec in items.records]
    lengths = [len(ids) for ids in backbone.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    has_image = [rec.image_path is not None for rec in items.records]
    batches = shard(bucketed_batches(lengths, has_image, batch_size))  # this rank's share of a distributed run
    checkpoint = None if is_distributed() else checkpoint  # a rank's share is not the whole schedule
    per_row = [None] * len(items.records)
    done = _resume(checkpoint, batches, per_row)
    start = time.perf_counter()
    iterator = tqdm(batches, ncols=100, desc=set_color("Item states", "pink")) if show_progress else batches
    for index, rows in enumerate(iterator):
        if index < done:  # computed before the checkpoint this run resumed from
            continue
        inputs = item_inputs(backbone, items, rows, settings)
        states, positions = backbone.lower_states(inputs, top_layers)
        positions = positions if positions.dim() == 3 else positions.unsqueeze(0)  # [P, B, T]
        for b, r in enumerate(rows):
            keep = inputs["attention_mask"][b].bool()
            per_row[r] = {
                "states": states[b][keep].cpu(),  # bf16 under feature_dtype bf16: as the base computes them
                "input_ids": inputs["input_ids"][b][keep].cpu(),
                "positions": positions[:, b][:, keep].cpu(),
                **{name: inputs[name][b][keep].cpu() for name in MASKS},
            }
        if checkpoint is not None:  # the state is built only when a checkpoint is due
            checkpoint.save_checkpoint_when_due(index + 1, len(batches), lambda: _rows_done(per_row, batches[: index + 1]))
    for part in all_gather_object({r: per_row[r] for rows in batches for r in rows}):  # every rank's rows
        for r, tensors in part.items():
            per_row[r] = tensors
    first = per_row[1]  # the padding row 0 holds no token, in the tensors' dtypes and position axes
    per_row[0] = {name: value[..., :0] if name == "positions" else value[:0] for name, value in first.items()}
    tensors = _flat(per_row)
    tensors["offsets"] = torch.cat([torch.zeros(1, dtype=torch.long), tensors.pop("counts").cumsum(0)])
    getLogger().info(set_color("Item states", "green") + f": {len(per_row) - 1} items, "
                     f"{int(tensors['offsets'][-1])} tokens below the top {top_layers} layers in "
                     f"{time.perf_counter() - start:.1f} s")
    return ItemStates(tensors, top_layers)


def _flat(per_row):
    """One flat tensor per name of the rows' per-token tensors (``positions`` along its last axis),
    and ``counts``, each row's tokens."""
    tensors = {name: torch.cat([row[name] for row in per_row], dim=-1 if name == "positions" else 0)
               for name in per_row[0]}
    tensors["counts"] = torch.tensor([int(row["input_ids"].numel()) for row in per_row])
    return tensors


def _rows_done(per_row, batches):
    """The checkpoint state of the rows of ``batches``: their flat tensors (``_flat``) and ``rows``."""
    rows = [r for batch in batches for r in batch]
    return {**_flat([per_row[r] for r in rows]), "rows": torch.tensor(rows)}


def _resume(checkpoint, batches, per_row):
    """Fill ``per_row`` with the rows of a valid checkpoint of ``checkpoint``; return the batches it holds."""
    resumed = checkpoint.load_checkpoint(len(batches)) if checkpoint is not None else None
    if resumed is None:
        return 0
    done, state = resumed
    rows = [r for rows in batches[:done] for r in rows]
    if state["rows"].tolist() != rows:
        getLogger().warning(f"checkpoint of {checkpoint.folder} holds other rows; the item states restart")
        return 0
    ends = state["counts"].cumsum(0).tolist()
    for r, stop, count in zip(rows, ends, state["counts"].tolist()):
        per_row[r] = {name: value[..., stop - count: stop] if name == "positions" else value[stop - count: stop]
                      for name, value in state.items() if name not in ("rows", "counts")}
    getLogger().info(set_color(f"Item states: resuming at batch {done}/{len(batches)}", "yellow"))
    return done


@torch.no_grad()
def encode_item_views(backbone, item_states, adapter, batch_size, show_progress=True):
    r"""Text, image and fused views of every item through the top layers under ``adapter``, in the
    layout of :func:`recbole_tpad.features.encode.encode_items`."""
    num_items, hidden, start = len(item_states), backbone.hidden_size, time.perf_counter()
    views = {name: np.zeros((num_items, hidden), dtype=np.float32) for name in VIEWS}
    views["image_mask"] = np.zeros(num_items, dtype=bool)
    rows = np.argsort(item_states.lengths.numpy()[1:], kind="stable") + 1  # little padding per batch
    batches = shard([rows[i: i + batch_size] for i in range(0, len(rows), batch_size)])
    iterator = tqdm(batches, ncols=100, desc=set_color("Encoding items", "pink")) if show_progress else batches
    previous, was_training = backbone.active_adapter, backbone.training
    backbone.set_adapter(adapter)
    backbone.eval()  # LoRA dropout off (a freshly loaded adapter's modules start in training mode)
    try:
        for batch in iterator:
            inputs = item_states.batch(batch, backbone.device)
            hidden_states = backbone.upper(inputs["states"], inputs["attention_mask"], inputs["position_ids"],
                                           item_states.top_layers).float()
            summary = hidden_states[torch.arange(len(batch)), inputs["summary_index"]]
            views["text"][batch] = as_numpy(masked_mean(hidden_states, inputs["text_mask"]))
            views["image"][batch] = as_numpy(masked_mean(hidden_states, inputs["visual_mask"]))
            views["fused"][batch] = as_numpy(summary)
            views["image_mask"][batch] = inputs["visual_mask"].any(1).cpu().numpy()
    finally:
        backbone.set_adapter(previous)
        backbone.train(was_training)
    gather_item_rows(views, np.concatenate(batches) if batches else [])
    if not np.isfinite(np.stack([views[n] for n in VIEWS])).all():
        raise FloatingPointError("Item encoding produced non-finite values; try feature_dtype: fp32.")
    getLogger().info(f"Encoded {num_items - 1} items from their cached states (adapter={adapter}), "
                     f"{int(views['image_mask'].sum())} with an image, in {time.perf_counter() - start:.1f} s.")
    return views


def save_item_states(item_states, folder):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in item_states.tensors.items()}, str(folder / STATES_FILE),
              metadata={"top_layers": str(item_states.top_layers)})


def load_item_states(folder):
    from safetensors import safe_open

    with safe_open(str(folder / STATES_FILE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        top_layers = int(f.metadata()["top_layers"])
    return ItemStates(tensors, top_layers)
