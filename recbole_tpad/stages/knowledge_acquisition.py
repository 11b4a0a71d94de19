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

import re

import numpy as np
from torch import nn

from recbole_tpad.stages.loop import (
    TrainableStateMixin,
    load_safetensors,
    save_safetensors,
)
from recbole_tpad.stages.mi_estimators import info_nce
from recbole_tpad.stages.session_prompts import knowledge_example, sample_rows

KNOWLEDGE = "K"
PROJECTOR_FILE = "projector.safetensors"


def lora_target_names(backbone, top_layers):
    r"""Full names of the modules the backbone's LoRA targets hit in its ``top_layers`` last LLM layers.

    With LoRA only near the top, backward stops there: nothing below needs a gradient (unless a
    trainable projector feeds the input). ``top_layers=0`` keeps the backbone's own targets (every layer).
    """
    targets = backbone._lora_targets()
    if not top_layers:
        return targets
    if isinstance(targets, str):
        hits = [n for n, _ in backbone.model.named_modules() if re.fullmatch(targets, n)]
    else:
        hits = [n for n, _ in backbone.model.named_modules() if any(n == t or n.endswith("." + t) for t in targets)]
    layer_of = {n: int(m.group(1)) for n in hits if (m := re.search(r"layers\.(\d+)\.", n))}
    if not layer_of:
        return targets
    keep = sorted(set(layer_of.values()))[-top_layers:]
    return [n for n in hits if layer_of.get(n) in keep]


def ensure_adapter(backbone, name, top_layers=0):
    if name not in backbone.adapter_names:
        backbone.add_adapter(name, target_modules=lora_target_names(backbone, top_layers))


def projector_parameters(backbone):
    return [] if backbone.projector is None else list(backbone.projector.parameters())


def save_knowledge_mllm(backbone, folder):
    """The Knowledge-MLLM's trainable parts: ``adapter_K/`` (peft folder) and the projector."""
    backbone.save_adapter(KNOWLEDGE, folder / f"adapter_{KNOWLEDGE}")
    if backbone.projector is not None:
        save_safetensors(backbone.projector.state_dict(), folder / PROJECTOR_FILE)


def load_knowledge_mllm(backbone, folder):
    backbone.load_adapter(KNOWLEDGE, folder / f"adapter_{KNOWLEDGE}")
    if backbone.projector is not None:
        backbone.projector.load_state_dict(load_safetensors(folder / PROJECTOR_FILE))


class KnowledgeAcquisition(TrainableStateMixin, nn.Module):
    r"""Stage 1 as a trainable object for :func:`recbole_tpad.stages.loop.train_stage`.

    Args:
        backbone (Backbone): the shared frozen backbone (adapter ``K`` is added if missing).
        items (ItemTable): every item, row = internal item id.
        settings (StageConfig): the stage keys.
        seed (int): the sampling seed.
    """

    title = "Knowledge Acquisition"
    number = 1

    def __init__(self, backbone, items, settings, seed=2020):
        super(KnowledgeAcquisition, self).__init__()
        self.backbone = backbone
        self.items = items
        self.settings = settings
        self.seed = seed
        self.gen_weight = settings.stage1_gen
        self.itc_weight = settings.stage1_itc_weight if backbone.projector is not None or _is_native(backbone) else 0.0
        ensure_adapter(backbone, KNOWLEDGE, settings.lora_layers)
        labels = backbone.settings.field_labels
        self.examples = [None] + [knowledge_example(rec, labels, settings.answer_words) for rec in items.records[1:]]
        has_image = np.array([rec.image_path is not None for rec in items.records])
        has_answer = np.array([ex is not None and ex[1] is not None for ex in self.examples])
        self.itc_weight = self.itc_weight if has_image[1:].sum() >= 2 else 0.0
        usable = (has_answer & (self.gen_weight > 0)) | (has_image & (self.itc_weight > 0))
        usable[0] = False
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
        return self.backbone.adapter_parameters(KNOWLEDGE) + projector_parameters(self.backbone)

    def _named_trainable(self):
        named = [(f"adapter.{n}", p) for n, p in self.backbone.model.named_parameters()
                 if f".lora_A.{KNOWLEDGE}." in n or f".lora_B.{KNOWLEDGE}." in n]
        if self.backbone.projector is not None:
            named += [(f"projector.{n}", p) for n, p in self.backbone.projector.named_parameters()]
        return named

    def training_loss(self, rows, step):
        r"""``(loss, parts)`` of one batch of item rows."""
        rows = [int(r) for r in rows]
        prompts = [self.examples[r][0] for r in rows]
        answers = [self.examples[r][1] or "" for r in rows]
        images = [self.items.load_image(r) for r in rows]
        self.backbone.set_adapter(KNOWLEDGE)
        inputs = self.backbone.prepare(prompts, images, answers=answers if self.gen_weight > 0 else None,
                                       summary=False)
        out = self.backbone(inputs)
        loss = out.text_view.new_zeros(())
        parts = {}
        if self.gen_weight > 0:
            if out.loss is not None:
                loss = loss + self.gen_weight * out.loss
                parts["gen_k"] = out.loss.item()
        with_image = out.image_mask
        if self.itc_weight > 0 and int(with_image.sum()) >= 2:
            itc = info_nce(out.text_view[with_image], out.image_view[with_image], self.settings.temperature)
            loss = loss + self.itc_weight * itc
            parts["itc"] = itc.item()
        return loss, parts

    def save(self, folder):
        save_knowledge_mllm(self.backbone, folder)


def _is_native(backbone):
    return bool(getattr(backbone.settings, "is_native", False)) and backbone.settings.use_images
