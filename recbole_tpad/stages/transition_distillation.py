# -*- coding: utf-8 -*-
r"""
Transition Distillation Stage (TPAD stage 2)
############################################

Reference:
    Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv:2504.10538, 2025.

The Transfer-MLLM (LoRA adapter ``T``) learns transitional patterns from training sessions, and
they are distilled into the Knowledge-MLLM (adapter ``K``) through the transitional pattern
alignment module. One step, on a batch of training ``(session prefix, next item)`` pairs:

1. ``T`` on the session prompts ``"A shopper viewed: 1. ... n. .... Next item:"``:
   ``L_gen^T`` (generate the next item's title, answer-only CE) and the session state ``t_s``.
2. ``T`` on the item prompts of the batch's next items: item features ``t_i``; ``L_next`` =
   InfoNCE of ``t_s`` against the true next item's ``t_i``, the other next items of the batch and
   ``stage2_num_negatives`` sampled items (encoded by ``T`` without gradient) as negatives.
3. ``K`` on the same item prompts: ``k_i``. HMIE splits each feature (``K`` and ``T`` sides) into
   shared and specific parts and minimizes CLUB between them at the token level (text and visual
   token states) and the item level (fused state); AMIE maximizes the InfoNCE bound on
   ``I(shared(k_i); shared(t_i))`` with ``T`` as the stop-gradient teacher.
4. ``K`` keeps its stage-1 knowledge: ``L_gen^K`` on the next items' knowledge prompts. This term
   shares no graph with the others: it is computed and back-propagated first, which frees its
   activations before the coupled forward passes (peak memory of a step ~ one term less).

``L = gen_t * L_gen^T + next * L_next + a * L_AMIE + b * L_HMIE + c * L_gen^K``.

NOTE:
    Without HMIE (ablation ``stage_hmie: False``) AMIE aligns the whole features ``k_i``, ``t_i``.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.features.prompt import format_item_prompt
from recbole_tpad.stages.knowledge_acquisition import (
    KNOWLEDGE,
    ensure_adapter,
    projector_parameters,
    save_knowledge_mllm,
)
from recbole_tpad.stages.loop import (
    TrainableStateMixin,
    SEPARATE,
    check_finite,
    save_safetensors,
)
from recbole_tpad.stages.mi_estimators import AMIE, HMIE
from recbole_tpad.stages.session_prompts import SessionPromptBuilder, knowledge_example, sample_rows

TRANSFER = "T"
HEADS_FILE = "alignment_heads.safetensors"


def sample_tokens(hidden, mask, limit, generator):
    r"""At most ``limit`` rows of ``hidden[mask]`` (``[B, T, H]``, ``[B, T]``), sampled without replacement."""
    states = hidden[mask]  # [N, H]
    if states.size(0) > limit:
        keep = torch.randperm(states.size(0), generator=generator)[:limit].to(states.device)
        states = states[keep]
    return states


class TransitionDistillation(TrainableStateMixin, nn.Module):
    r"""Stage 2 as a trainable object for :func:`recbole_tpad.stages.loop.train_stage`.

    Args:
        backbone (Backbone): the shared frozen backbone carrying the stage-1 adapter ``K``
            (adapter ``T`` is added if missing).
        items (ItemTable): every item, row = internal item id.
        sessions (TrainingSessions): the training split's ``(prefix, next item)`` pairs.
        settings (StageConfig): the stage keys.
        seed (int): the sampling seed.
    """

    title = "Transition Distillation"
    number = 2

    def __init__(self, backbone, items, sessions, settings, seed=2020):
        super(TransitionDistillation, self).__init__()
        self.backbone = backbone
        self.items = items
        self.sessions = sessions
        self.settings = settings
        self.seed = seed
        ensure_adapter(backbone, KNOWLEDGE, settings.lora_layers)
        ensure_adapter(backbone, TRANSFER, settings.lora_layers)
        labels = backbone.settings.field_labels
        self.item_prompts = [format_item_prompt(rec, labels) for rec in items.records]
        self.knowledge = [None] + [knowledge_example(rec, labels, settings.answer_words) for rec in items.records[1:]]
        self.builder = SessionPromptBuilder(items.records, settings.session_items, settings.title_words)
        self.num_items = len(items.records)
        hidden = backbone.hidden_size
        s = settings
        amie_dim = s.hmie_shared_dim if s.hmie_weight > 0 else hidden  # AMIE aligns the shared parts
        self.amie = AMIE(amie_dim, amie_dim, s.amie_proj_dim, s.amie_temperature)
        self.hmie = nn.ModuleDict({
            name: HMIE(hidden, s.hmie_shared_dim, s.hmie_specific_dim, s.hmie_hidden_size, s.hmie_recon_weight)
            for name in (KNOWLEDGE, TRANSFER)
        })
        self.to(backbone.device)

    @property
    def has_work(self):
        return len(self.sessions) > 0 and self.settings.run_stage2

    def schedule(self):
        s = self.settings
        out = []
        for epoch in range(s.stage2_epochs):
            rows = sample_rows(len(self.sessions), s.stage2_sessions_per_epoch, self.seed + 1, epoch)
            out += [(epoch, rows[i: i + s.stage2_batch_size]) for i in range(0, len(rows), s.stage2_batch_size)]
        return out

    def _heads(self):
        s = self.settings
        heads = []
        if s.amie_weight > 0:
            heads.append(("amie", self.amie))
        if s.hmie_weight > 0:
            heads.append(("hmie", self.hmie))
        return heads

    def parameters_to_train(self):
        params = self.backbone.adapter_parameters(TRANSFER) + self.backbone.adapter_parameters(KNOWLEDGE)
        params += projector_parameters(self.backbone)
        for _, module in self._heads():
            params += list(module.parameters())
        return params

    def _named_trainable(self):
        marks = [f".lora_{ab}.{name}." for ab in "AB" for name in (KNOWLEDGE, TRANSFER)]
        named = [(f"adapter.{n}", p) for n, p in self.backbone.model.named_parameters() if any(m in n for m in marks)]
        if self.backbone.projector is not None:
            named += [(f"projector.{n}", p) for n, p in self.backbone.projector.named_parameters()]
        for prefix, module in (("amie", self.amie), ("hmie", self.hmie)):
            named += [(f"{prefix}.{n}", p) for n, p in module.named_parameters()]
        return named

    def candidates(self, targets, step):
        r"""The batch's unique next items, sampled negative items (not among them), each target's position."""
        items = list(dict.fromkeys(int(t) for t in targets))
        position = {item: k for k, item in enumerate(items)}
        generator = np.random.default_rng([self.seed, 7, step])
        sampled = generator.integers(1, self.num_items, size=self.settings.stage2_num_negatives)
        negatives = [i for i in dict.fromkeys(int(i) for i in sampled) if i not in position]
        return items, negatives, torch.tensor([position[int(t)] for t in targets], device=self.backbone.device)

    def _item_inputs(self, rows):
        return self.backbone.prepare([self.item_prompts[i] for i in rows], [self.items.load_image(i) for i in rows])

    def _features(self, adapter, inputs):
        self.backbone.set_adapter(adapter)
        return self.backbone(inputs)

    def _hmie(self, name, out, inputs, generator):
        limit = self.settings.hmie_tokens
        views = [sample_tokens(out.hidden, inputs["text_mask"], limit, generator)]
        if bool(inputs["visual_mask"].any()):
            views.append(sample_tokens(out.hidden, inputs["visual_mask"], limit, generator))
        return self.hmie[name](views, out.summary)

    def training_loss(self, rows, step):
        r"""``(loss, parts)`` of one batch of training pair rows."""
        s = self.settings
        generator = torch.Generator().manual_seed(self.seed * 1000003 + step)
        prompts, answers, targets = self.builder.batch(self.sessions, [int(r) for r in rows])
        parts = {}
        next_items, negatives, positive = self.candidates(targets, step)
        # 4 (first, to free its graph early). Knowledge-MLLM keeps its knowledge: L_gen^K on the next items
        if s.gen_k > 0:
            known = [i for i in next_items if self.knowledge[i][1] is not None]
            if known:
                gen_in = self.backbone.prepare([self.knowledge[i][0] for i in known],
                                               [self.items.load_image(i) for i in known],
                                               answers=[self.knowledge[i][1] for i in known], summary=False)
                gen_k = self._features(KNOWLEDGE, gen_in).loss
                check_finite(gen_k, self, step)
                (s.gen_k * gen_k).backward()  # independent of the other terms: backward now, less memory
                parts["gen_k"] = gen_k.item()
                parts[SEPARATE] = s.gen_k * gen_k.item()
        # 1. Transfer-MLLM on the sessions
        session_in = self.backbone.prepare(prompts, answers=answers if s.gen_t > 0 else None, summary=False)
        session_out = self._features(TRANSFER, session_in)
        loss = session_out.summary.new_zeros(())
        if s.gen_t > 0:
            loss = loss + s.gen_t * session_out.loss
            parts["gen_t"] = session_out.loss.item()
        # 2. Transfer-MLLM on the next items (and, without gradient, the sampled negatives): L_next
        item_in = self._item_inputs(next_items)
        t_out = self._features(TRANSFER, item_in)
        if s.stage2_next_weight > 0:
            candidates = t_out.summary
            if negatives:
                with torch.no_grad():
                    candidates = torch.cat([candidates, self._features(TRANSFER, self._item_inputs(negatives)).summary])
            logits = F.normalize(session_out.summary, dim=-1) @ F.normalize(candidates, dim=-1).t()
            l_next = F.cross_entropy(logits / s.temperature, positive)
            loss = loss + s.stage2_next_weight * l_next
            parts["next"] = l_next.item()
        # 3. Knowledge-MLLM on the same items: HMIE and AMIE
        if s.amie_weight > 0 or s.hmie_weight > 0:
            k_out = self._features(KNOWLEDGE, item_in)
            k_feat, t_feat = k_out.summary, t_out.summary
            if s.hmie_weight > 0:
                l_hmie_k, k_parts = self._hmie(KNOWLEDGE, k_out, item_in, generator)
                l_hmie_t, t_parts = self._hmie(TRANSFER, t_out, item_in, generator)
                loss = loss + s.hmie_weight * (l_hmie_k + l_hmie_t)
                parts["hmie"] = (l_hmie_k + l_hmie_t).item()
                parts["hmie_mi"] = k_parts["hmie_mi"] + t_parts["hmie_mi"]
                k_feat, t_feat = k_parts["item_shared"], t_parts["item_shared"]
            if s.amie_weight > 0 and len(next_items) >= 2:
                l_amie = self.amie(k_feat, t_feat)
                loss = loss + s.amie_weight * l_amie
                parts["amie"] = l_amie.item()
        return loss, parts

    def save(self, folder):
        save_knowledge_mllm(self.backbone, folder)
        self.backbone.save_adapter(TRANSFER, folder / f"adapter_{TRANSFER}")
        heads = {f"amie.{k}": v for k, v in self.amie.state_dict().items()}
        heads.update({f"hmie.{k}": v for k, v in self.hmie.state_dict().items()})
        save_safetensors(heads, folder / HEADS_FILE)
