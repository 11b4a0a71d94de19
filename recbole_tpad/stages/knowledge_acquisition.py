# -*- coding: utf-8 -*-
r"""
Knowledge Acquisition Stage (TPAD stage 1)
##########################################

Reference:
    Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv:2504.10538, 2025.

The Knowledge-MLLM (LoRA adapter ``K`` on the frozen backbone, plus the visual projector when the
backbone has one) learns knowledge-aware item features:

- ``L_gen^K``, the generation task: from the image (visual tokens) and the title, generate the
  item's held-out knowledge (brand, categories, description where present); token cross-entropy on
  the answer only.
- ``L_itc``, when images exist: InfoNCE between the text view and the image view of the same item.

``L = stage1_gen_weight * L_gen^K + stage1_itc_weight * L_itc``.
"""

import numpy as np
import torch
from torch import nn

from recbole_tpad.distributed import batch_mean, gather_batch
from recbole_tpad.features.backbone import IGNORE_INDEX, masked_mean
from recbole_tpad.stages.loop import (
    TrainableStateMixin,
    load_safetensors,
    save_safetensors,
)
from recbole_tpad.stages.mi_estimators import info_nce
from recbole_tpad.stages.session_prompts import knowledge_example, sample_rows

KNOWLEDGE = "K"
PROJECTOR_FILE = "projector.safetensors"


def ensure_adapter(backbone, name, top_layers=0):
    if name not in backbone.adapter_names:
        backbone.add_adapter(name, top_layers=top_layers)


def projector_parameters(backbone):
    return [] if backbone.projector is None else list(backbone.projector.parameters())


def save_knowledge_mllm(backbone, folder):
    """The Knowledge-MLLM's trainable part: ``adapter_K/`` (peft folder); the projector is Stage 1a's."""
    backbone.save_adapter(KNOWLEDGE, folder / f"adapter_{KNOWLEDGE}")


def load_knowledge_mllm(backbone, folder):
    backbone.load_adapter(KNOWLEDGE, folder / f"adapter_{KNOWLEDGE}")


def load_projector(backbone, folder):
    if backbone.projector is not None:
        backbone.projector.load_state_dict(load_safetensors(folder / PROJECTOR_FILE))


def answer_count(labels):
    """How many answer tokens next-token ``labels`` ``[B, T]`` hold (the positions ``token_loss`` averages)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def batch_losses(backbone, gen_part, gen, answers, gen_weight, views, itc_weight, temperature):
    r"""Stage 1's ``(loss, parts)`` of this rank's share of a batch, normalised over the whole batch.

    On one process the batch's loss. In a distributed run each rank's term of it
    (:func:`recbole_tpad.distributed.batch_mean`, :func:`~recbole_tpad.distributed.gather_batch`):
    the token cross-entropy is the mean over the whole batch's answer tokens, and InfoNCE takes
    every rank's items as negatives; the parts are the batch's values.

    Args:
        backbone (Backbone): for the device and the feature size.
        gen_part (str): the generation term's name in ``parts``.
        gen (torch.Tensor): this rank's mean answer-token cross-entropy; ``None`` where it has no answer token.
        answers (int): how many answer tokens ``gen`` averages (``None``: none).
        gen_weight (float): weight of the generation term; 0 skips it on every rank.
        views (tuple): ``(text_view, image_view, with_image)`` of this rank's rows (``[n, H]``,
            ``[n, H]``, ``[n]``), or ``None`` where the rank has no rows.
        itc_weight (float): weight of ``L_itc``; 0 skips it on every rank.
        temperature (float): InfoNCE's temperature.
    """
    device = backbone.device
    loss, parts = torch.zeros((), device=device), {}
    if gen_weight > 0:
        term, value = batch_mean(gen * answers if answers else torch.zeros((), device=device), answers or 0)
        if term is not None:
            loss = loss + gen_weight * term
            parts[gen_part] = value
    if itc_weight > 0:
        if views is None:
            text = image = torch.zeros(0, backbone.hidden_size, device=device)
            with_image = torch.zeros(0, dtype=torch.bool)
        else:
            text, image, with_image = views
            text, image = text.float()[with_image], image.float()[with_image]
        sizes = with_image.long().tolist()  # the rows of the batch with a photo, in the batch's order
        text, image = gather_batch(text, sizes), gather_batch(image, sizes)
        if text.size(0) >= 2:
            itc = info_nce(text, image, temperature)
            loss = loss + itc_weight * itc
            parts["itc"] = itc.item()
    return loss, parts


class ProjectorAlignment(TrainableStateMixin, nn.Module):
    r"""Stage 1a, for backbones with a trainable visual projector and items with photos.

    The projector feeds the LLM's first layer, so the cached lower-layer states depend on it: it is
    aligned first (LLaVA's first stage: the LLM frozen, no adapter), on ``stage1_projector_items``
    items with photos, by ``L_gen^K`` (title + image -> held-out knowledge) and ``L_itc``, through
    the whole model. It stays frozen afterwards, and the item states are computed with it.
    """

    title = "Projector Alignment"
    number = 1
    batch_global = True  # its losses are of the whole global batch (train_stage calls it on every rank)

    def __init__(self, backbone, items, settings, seed=2020):
        super(ProjectorAlignment, self).__init__()
        self.backbone = backbone
        self.items = items
        self.settings = settings
        self.seed = seed
        labels = backbone.settings.field_labels
        self.examples = [None] + [knowledge_example(rec, labels, settings.answer_words) for rec in items.records[1:]]
        self.pool = np.array([r for r, rec in enumerate(items.records) if r > 0 and rec.image_path is not None])

    @property
    def has_work(self):
        return self.backbone.projector is not None and len(self.pool) >= 2 and self.settings.stage1_projector_items > 0

    def schedule(self):
        s = self.settings
        rows = self.pool[sample_rows(len(self.pool), s.stage1_projector_items, self.seed, 1_000_003)]
        return [(0, rows[i: i + s.stage1_batch_size]) for i in range(0, len(rows), s.stage1_batch_size)]

    def parameters_to_train(self):
        return projector_parameters(self.backbone)

    def _named_trainable(self):
        return [(f"projector.{n}", p) for n, p in self.backbone.projector.named_parameters()]

    def training_loss(self, rows, step):
        r"""``(loss, parts)`` of this rank's ``rows`` of one batch, normalised over the whole batch."""
        rows = [int(r) for r in rows]
        gen = answers = views = None
        if rows:  # a rank with no rows of a small batch still takes part in the batch's collectives
            self.backbone.set_adapter(None)
            inputs = self.backbone.prepare([self.examples[r][0] for r in rows],
                                           [self.items.load_image(r) for r in rows],
                                           answers=[self.examples[r][1] or "" for r in rows], summary=False)
            out = self.backbone(inputs)
            gen, answers = out.loss, answer_count(inputs["labels"])
            views = (out.text_view, out.image_view, out.image_mask)
        s = self.settings
        return batch_losses(self.backbone, "gen", gen, answers, s.stage1_gen_weight, views, s.stage1_itc_weight,
                            s.temperature)

    def save(self, folder):
        save_safetensors(self.backbone.projector.state_dict(), folder / PROJECTOR_FILE)


class KnowledgeAcquisition(TrainableStateMixin, nn.Module):
    r"""Stage 1 as a trainable object for :func:`recbole_tpad.stages.loop.train_stage`.

    Runs the top layers only (adapter ``K``) on the cached :class:`ItemStates`: the generation task
    predicts each item prompt's knowledge tokens (brand, categories, description) from the title
    and image before them, answer-only cross-entropy.

    Args:
        backbone (Backbone): the shared frozen backbone (adapter ``K`` is added if missing).
        item_states (ItemStates): every item's frozen lower-layer states.
        settings (StageConfig): the stage keys.
        heldout (numpy.ndarray): item rows kept out of training for the held-out figure.
        seed (int): the sampling seed.
    """

    title = "Knowledge Acquisition"
    number = 1
    batch_global = True  # its losses are of the whole global batch (train_stage calls it on every rank)

    def __init__(self, backbone, item_states, settings, heldout, seed=2020):
        super(KnowledgeAcquisition, self).__init__()
        self.backbone = backbone
        self.states = item_states
        self.settings = settings
        self.seed = seed
        self.top_layers = item_states.top_layers
        self.gen_weight = settings.stage1_gen
        ensure_adapter(backbone, KNOWLEDGE, settings.lora_layers)
        t, offsets = item_states.tensors, item_states.offsets
        def per_item(mask):  # any token of the mask, per item
            counts = torch.zeros(len(item_states), dtype=torch.long)
            counts.index_add_(0, torch.repeat_interleave(torch.arange(len(item_states)), item_states.lengths),
                              mask.long())
            return (counts > 0).numpy()
        has_answer, has_image = per_item(t["knowledge_mask"]), per_item(t["visual_mask"])
        self.itc_weight = settings.stage1_itc_weight if has_image[1:].sum() >= 2 else 0.0
        usable = (has_answer & (self.gen_weight > 0)) | (has_image & (self.itc_weight > 0))
        usable[0] = False
        self.heldout = np.intersect1d(np.asarray(heldout, dtype=np.int64), np.flatnonzero(has_answer))
        usable[self.heldout] = False
        self.pool = np.flatnonzero(usable)  # the items this stage learns from

    @property
    def has_work(self):
        return len(self.pool) > 0 and self.settings.stage1_epochs > 0 and (self.gen_weight > 0 or self.itc_weight > 0)

    def schedule(self):
        s = self.settings
        out = []
        for epoch in range(s.stage1_epochs):
            rows = self.pool[sample_rows(len(self.pool), s.stage1_items_per_epoch, self.seed, epoch)]
            out += [(epoch, rows[i: i + s.stage1_batch_size]) for i in range(0, len(rows), s.stage1_batch_size)]
        return out

    def parameters_to_train(self):
        return self.backbone.adapter_parameters(KNOWLEDGE)

    def _named_trainable(self):
        return [(f"adapter.{n}", p) for n, p in self.backbone.adapter_named_parameters(KNOWLEDGE)]

    def _forward(self, rows, labels):
        inputs = self.states.batch(rows, self.backbone.device, knowledge_labels=labels)
        self.backbone.set_adapter(KNOWLEDGE)
        hidden = self.backbone.upper(inputs["states"], inputs["attention_mask"], inputs["position_ids"],
                                     self.top_layers)
        return inputs, hidden

    def training_loss(self, rows, step):
        r"""``(loss, parts)`` of this rank's ``rows`` of one batch, normalised over the whole batch."""
        gen = answers = views = None
        if len(rows):  # a rank with no rows of a small batch still takes part in the batch's collectives
            inputs, hidden = self._forward(rows, labels=self.gen_weight > 0)
            if self.gen_weight > 0:
                answers = answer_count(inputs["labels"])
                gen = self.backbone.token_loss(hidden, inputs["labels"]) if answers else None
            if self.itc_weight > 0:
                hidden = hidden.float()
                views = (masked_mean(hidden, inputs["text_mask"]), masked_mean(hidden, inputs["visual_mask"]),
                         inputs["visual_mask"].any(1))
        return batch_losses(self.backbone, "gen_k", gen, answers, self.gen_weight, views, self.itc_weight,
                            self.settings.temperature)

    @torch.no_grad()
    def evaluate(self):
        r"""Held-out figure: answer-token cross-entropy of the held-out items' knowledge, adapter ``K``
        against the untrained backbone (no adapter)."""
        if len(self.heldout) == 0 or self.gen_weight <= 0:
            return {}
        figures = {}
        for name, adapter in (("untrained", None), ("trained", KNOWLEDGE)):
            total = count = 0.0
            for i in range(0, len(self.heldout), self.settings.stage1_batch_size):
                rows = self.heldout[i: i + self.settings.stage1_batch_size]
                inputs = self.states.batch(rows, self.backbone.device, knowledge_labels=True)
                self.backbone.set_adapter(adapter)
                hidden = self.backbone.upper(inputs["states"], inputs["attention_mask"], inputs["position_ids"],
                                             self.top_layers)
                n = answer_count(inputs["labels"])
                total += self.backbone.token_loss(hidden, inputs["labels"]).item() * n
                count += n
            figures[f"heldout_answer_ce_{name}"] = round(total / max(count, 1), 4)
        figures["heldout_items"] = int(len(self.heldout))
        self.backbone.set_adapter(KNOWLEDGE)
        return figures

    def save(self, folder):
        save_knowledge_mllm(self.backbone, folder)
