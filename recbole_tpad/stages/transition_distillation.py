# -*- coding: utf-8 -*-
r"""
Transition Distillation Stage (TPAD stage 2)
############################################

Reference:
    Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv:2504.10538, 2025.

The Transfer-MLLM (LoRA adapter ``T``) learns transitional patterns from training sessions, and
they are distilled into the Knowledge-MLLM (adapter ``K``) through the transitional pattern
alignment module. Every pass runs the top layers only, on the frozen lower-layer states of
:mod:`recbole_tpad.stages.item_states`. One step, on a batch of training ``(prefix, next item)``
pairs:

1. ``T`` on the session prompts ``"A shopper viewed: [i_1] ... [i_n-1] <prompt of i_n> Next item:"``,
   each earlier item one position (its cached summary state), the last item all its prompt tokens:
   ``L_gen^T`` (generate the next item's title, answer-only CE) and the session state ``t_s``, read
   at the last item's summary position, so an untrained ``T`` starts from the last item's own
   feature (content similarity) and learns what follows it.
2. ``L_next`` = InfoNCE of ``t_s`` against every item, the session's own items left out, in a fixed
   target space: the frozen base model's item features (the untrained ``T``'s, computed once: the
   bank), through the :class:`~recbole_tpad.stages.transition_head.TransitionHead`, which maps
   ``t_s`` to where the next item lies. The head is fitted on the bank over every training pair
   before ``T``'s first step (LP-FT's linear probe); the steps then train ``T`` and the head together.
3. ``T`` on the item prompts of the batch's next items, without gradient, through the head's session
   map: the teacher features ``t_i``, what follows each item. ``K`` on the same prompts: ``k_i`` and
   ``L_gen^K`` (their knowledge tokens, keeping the stage-1 knowledge). HMIE splits each feature
   (``K`` and ``T`` sides) into shared and specific parts and minimizes CLUB between them at the
   token level (text and visual token states) and the item level (fused state); AMIE maximizes the
   InfoNCE bound on ``I(shared(k_i); shared(t_i))`` with ``T`` as the stop-gradient teacher.

``L = gen_t * L_gen^T + next * L_next + a * L_AMIE + b * L_HMIE + c * L_gen^K``.

NOTE:
    The target space is fixed because a target that moves with ``T`` fails both ways we tried
    (``docs/stages.md``): a bank refreshed for the batch's own next items lets ``T`` rank by freshness,
    and one refreshed in rotation lags what it is compared with. On the ``T`` side HMIE trains the split
    heads only (the teacher's states carry no gradient).
    Without HMIE (ablation ``stage_hmie: False``) AMIE aligns the whole features ``k_i``, ``t_i``.
    The session prompt's header and footer states are those of ``"A shopper viewed: Next item:"``
    through the lower layers; the item positions between them carry the items' own states.
"""

from logging import getLogger

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.distributed import batch_mean, broadcast_parameters, gather_batch, is_main_process, shard
from recbole_tpad.features.backbone import IGNORE_INDEX
from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE, answer_count, ensure_adapter, save_knowledge_mllm
from recbole_tpad.stages.loop import TrainableStateMixin, load_safetensors, save_safetensors
from recbole_tpad.stages.mi_estimators import AMIE, HMIE
from recbole_tpad.stages.session_prompts import sample_rows
from recbole_tpad.stages.transition_head import TransitionHead

TRANSFER = "T"
HEADS_FILE = "alignment_heads.safetensors"
FIT_FILE = "transition_head_fit.safetensors"  # the head_store entry: the bank and the head fitted on it
HEADER, FOOTER = "A shopper viewed:", " Next item:"


def sample_tokens(states, limit, generator):
    r"""At most ``limit`` rows of token ``states`` ``[N, H]``, sampled without replacement by ``generator``."""
    if states.size(0) > limit:
        keep = torch.randperm(states.size(0), generator=generator)[:limit].to(states.device)
        states = states[keep]
    return states


def ranks_of(scores, targets):
    r"""1-based rank of each ``targets[b]`` among ``scores[b]`` ``[B, N]`` (ties counted against it)."""
    return (scores > scores.gather(1, targets.view(-1, 1))).sum(1) + 1


def cached_head_fit(head_store):
    r"""What ``head_store`` keeps, ``(tensors, manifest)``, or ``None`` where no run made it yet: the bank
    (every item's fused feature under the frozen base, ``[N, H]``; also what the successor views'
    targets are made from) and the transition head fitted on it."""
    manifest = head_store.manifest() if head_store is not None else None
    if manifest is None:
        return None
    return load_safetensors(head_store.folder / FIT_FILE), manifest


class TransitionDistillation(TrainableStateMixin, nn.Module):
    r"""Stage 2 as a trainable object for :func:`recbole_tpad.stages.loop.train_stage`.

    Args:
        backbone (Backbone): the shared frozen backbone carrying the stage-1 adapter ``K``
            (adapter ``T`` is added if missing).
        item_states (ItemStates): every item's frozen lower-layer states.
        sessions (TrainingSessions): the training split's ``(prefix, next item)`` pairs.
        settings (StageConfig): the stage keys.
        heldout (numpy.ndarray): rows of ``sessions`` kept out of training for the held-out figures.
        seed (int): the sampling seed.
        head_store (StageStore, optional): where the bank and the head's fit on it are kept: they are the
            same for every setting of ``T``'s steps (pairs, weights, learning rate) of one split and seed,
            so a stage-2 run with other such settings loads them instead of fitting again.
    """

    title = "Transition Distillation"
    number = 2
    batch_global = True  # its losses are of the whole global batch (train_stage calls it on every rank)

    def __init__(self, backbone, item_states, sessions, settings, heldout, seed=2020, head_store=None):
        super(TransitionDistillation, self).__init__()
        self.backbone = backbone
        self.states = item_states
        self.sessions = sessions
        self.settings = settings
        self.seed = seed
        self.head_store = head_store
        self.top_layers = item_states.top_layers
        self.num_items = len(item_states)
        ensure_adapter(backbone, KNOWLEDGE, settings.lora_layers)
        ensure_adapter(backbone, TRANSFER, settings.lora_layers)
        self.heldout = np.asarray(heldout, dtype=np.int64)
        train = np.ones(len(sessions), dtype=bool)
        train[self.heldout] = False
        self.train_rows = np.flatnonzero(train)
        self.header, self.footer = self._prompt_frame()
        hidden = backbone.hidden_size
        s = settings
        amie_dim = s.hmie_shared_dim if s.hmie_weight > 0 else hidden  # AMIE aligns the shared parts
        self.amie = AMIE(amie_dim, amie_dim, s.amie_proj_dim, s.amie_temperature)
        self.hmie = nn.ModuleDict({
            name: HMIE(hidden, s.hmie_shared_dim, s.hmie_specific_dim, s.hmie_hidden_size, s.hmie_recon_weight)
            for name in (KNOWLEDGE, TRANSFER)
        })
        self.head = TransitionHead(hidden)
        self.register_buffer("bank", torch.zeros(self.num_items, hidden))  # the untrained T's item features
        self.bank_ready = False
        self.head_figures = {}  # held-out figures of the fitted head on the untrained T
        self.to(backbone.device)

    @torch.no_grad()
    def _prompt_frame(self):
        r"""Lower-layer states of the session prompt's header and footer tokens."""
        text = HEADER + FOOTER
        inputs = self.backbone.prepare([text], summary=False, spans={"header": [(0, len(HEADER))]})
        states, _ = self.backbone.lower_states(inputs, self.top_layers)
        header = inputs["header"][0]
        dtype = self.states.tensors["states"].dtype
        return states[0][header].to(dtype).cpu(), states[0][~header].to(dtype).cpu()

    @property
    def has_work(self):
        return len(self.train_rows) > 0 and self.settings.run_stage2

    def schedule(self):
        s = self.settings
        out = []
        for epoch in range(s.stage2_epochs):
            rows = self.train_rows[sample_rows(len(self.train_rows), s.stage2_sessions_per_epoch, self.seed + 1, epoch)]
            out += [(epoch, rows[i: i + s.stage2_batch_size]) for i in range(0, len(rows), s.stage2_batch_size)]
        return out

    def _heads(self):
        s = self.settings
        heads = []
        if s.amie_weight > 0:
            heads.append(("amie", self.amie))
        if s.hmie_weight > 0:
            heads.append(("hmie", self.hmie))
        if s.stage2_next_weight > 0:
            heads.append(("head", self.head))
        return heads

    def parameters_to_train(self):
        params = self.backbone.adapter_parameters(TRANSFER) + self.backbone.adapter_parameters(KNOWLEDGE)
        for _, module in self._heads():
            params += list(module.parameters())
        return params

    def _named_trainable(self):
        named = [(f"adapter.{n}", p) for name in (KNOWLEDGE, TRANSFER)
                 for n, p in self.backbone.adapter_named_parameters(name)]
        for prefix, module in (("amie", self.amie), ("hmie", self.hmie), ("head", self.head)):
            named += [(f"{prefix}.{n}", p) for n, p in module.named_parameters()]
        return named

    def trainable_state(self):
        state = super().trainable_state()
        state["bank"] = self.bank.detach().cpu().clone()
        return state

    def load_trainable_state(self, state):
        state = dict(state)
        self.bank.copy_(state.pop("bank"))
        self.head.set_centre(self.bank)
        self.bank_ready = True
        super().load_trainable_state(state)
        manifest = self.head_store.manifest() if self.head_store is not None else None
        self.head_figures = (manifest or {}).get("head_figures", {})  # the checkpoint keeps weights only

    # ---- passes -----------------------------------------------------------------------------------
    def _upper(self, adapter, inputs):
        self.backbone.set_adapter(adapter)
        return self.backbone.upper(inputs["states"], inputs["attention_mask"], inputs["position_ids"],
                                   self.top_layers)

    def item_pass(self, adapter, rows, knowledge_labels=False):
        r"""Inputs and last-layer states of the top layers on item ``rows``."""
        inputs = self.states.batch(rows, self.backbone.device, knowledge_labels=knowledge_labels)
        return inputs, self._upper(adapter, inputs)

    @torch.no_grad()
    def item_features(self, adapter, rows=None, batch_size=64):
        r"""Fused features ``[len(rows), H]`` (all items by default, row 0 zeros) without gradient."""
        rows = np.arange(1, self.num_items) if rows is None else np.asarray(rows)
        out = torch.zeros(len(rows), self.backbone.hidden_size, device=self.backbone.device)
        order = np.argsort(self.states.lengths.numpy()[rows], kind="stable")  # little padding per batch
        for i in range(0, len(rows), batch_size):
            take = order[i: i + batch_size]
            inputs, hidden = self.item_pass(adapter, rows[take])
            out[torch.as_tensor(take, device=out.device)] = hidden.float()[torch.arange(len(take)), inputs["summary_index"]]
        return out

    def session_inputs(self, rows, with_answers):
        r"""Top-layer inputs of the session prompts of training pair ``rows``: header, one position per
        earlier item (its summary state), every token of the last item's prompt (the session state
        ``t_s`` is read at its summary position, so an untrained ``T`` gives the last item's own
        feature) and, with ``answers``, the footer and the next item's title tokens with labels.
        Also the ``exclude`` pairs ``(batch row, item)``: the session's own items, which L_next does
        not count as candidates."""
        s = self.settings
        sequences, positions, labels, state_index, exclude = [], [], [], [], []
        for b, r in enumerate(rows):
            prefix = self.sessions.prefix(int(r), s.session_items)
            target = int(self.sessions.target[int(r)])
            last_states, last_positions = self.states.item_tokens(prefix[-1])
            context = torch.cat([self.header, self.states.summary[prefix[:-1]]])
            parts = [context, last_states]
            place = [text_positions(0, context.size(0), last_positions.size(0)),
                     last_positions + context.size(0)]  # the item's own layout, after the context
            state_index.append(context.size(0) + last_states.size(0) - 1)
            label = [IGNORE_INDEX] * (context.size(0) + last_states.size(0))
            if with_answers:
                title, ids = self.states.title_states(target)
                tail = torch.cat([self.footer, title])
                parts.append(tail)
                place.append(text_positions(int(place[-1].max()) + 1, tail.size(0), last_positions.size(0)))
                label += [IGNORE_INDEX] * self.footer.size(0) + ids.tolist()
            sequences.append(torch.cat(parts))
            positions.append(torch.cat(place, dim=1))
            labels.append(label)
            exclude += [(b, item) for item in set(prefix) if item != target]
        width = max(x.size(0) for x in sequences)
        hidden = self.backbone.hidden_size
        states = torch.zeros(len(rows), width, hidden, dtype=self.header.dtype)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        label_tensor = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros(positions[0].size(0), len(rows), width, dtype=torch.long)
        for b, (x, place, label) in enumerate(zip(sequences, positions, labels)):
            states[b, : x.size(0)], mask[b, : x.size(0)] = x, 1
            position_ids[:, b, : x.size(0)] = place
            label_tensor[b, : len(label)] = torch.tensor(label)
        if position_ids.size(0) == 1:
            position_ids = position_ids[0]
        device = self.backbone.device
        return {"states": states.to(device), "attention_mask": mask.to(device), "position_ids": position_ids.to(device),
                "labels": label_tensor.to(device), "state_index": torch.tensor(state_index, device=device),
                "exclude": torch.tensor(exclude, dtype=torch.long).view(-1, 2).to(device)}

    def session_states(self, rows, with_answers=False):
        r"""Session states ``t_s`` ``[B, H]`` of training pair ``rows`` (and the top layers' output)."""
        inputs = self.session_inputs(rows, with_answers)
        hidden = self._upper(TRANSFER, inputs)
        return hidden.float()[torch.arange(len(rows)), inputs["state_index"]], hidden, inputs

    # ---- training ---------------------------------------------------------------------------------
    def _prepare(self, collective=True):
        r"""Before the first step: the bank (every item's feature under the untrained ``T``) and the
        head's fit on it, loaded from ``head_store`` where an earlier run made them; a resumed run has
        both from its checkpoint. ``collective=False``: one rank alone prepares (held-out figures)."""
        if self.bank_ready:
            return
        cached = cached_head_fit(self.head_store)
        if cached is not None:
            fit, manifest = cached
            self.bank.copy_(fit.pop("bank"))
            self.head.load_state_dict(fit)
            self.head_figures = manifest.get("head_figures", {})
            getLogger().info(f"{self.title}: bank and transition head cached in {self.head_store.folder}")
        else:
            self._fit_head()
        self.bank_ready = True
        if collective:  # every rank starts from rank 0's head (one rank may have loaded what another fitted)
            broadcast_parameters(list(self.head.parameters()))

    def _fit_head(self):
        r"""The bank, the head's fit on it over every training pair and its held-out figures; rank 0 keeps
        them in ``head_store``."""
        s = self.settings
        self.bank.copy_(self.item_features(None, np.arange(self.num_items)))  # the frozen base = untrained T
        self.head.set_centre(self.bank)
        loss = None
        if s.stage2_head_epochs:
            rows = torch.as_tensor(self.train_rows)
            last = self.sessions.item_seq[rows, self.sessions.item_len[rows] - 1]
            with torch.enable_grad():
                loss = self.head.fit(self.bank, last, self.sessions.target[rows], s.stage2_head_epochs,
                                     s.stage2_head_batch_size, s.stage2_head_learning_rate, s.temperature, self.seed)
            if len(self.heldout) and is_main_process():  # rank 0 alone reports held-out figures
                self.head_figures = self.next_item_figures(None, self.heldout)
            getLogger().info(f"{self.title}: transition head fitted on {len(rows)} pairs x {s.stage2_head_epochs} "
                             f"epochs (last epoch's L_next {loss:.4f}); held-out with the untrained T "
                             f"{self.head_figures}")
        if self.head_store is not None and is_main_process():  # no barrier: ranks prepare at different points
            fit = dict(self.head.state_dict(), bank=self.bank)
            self.head_store.commit(lambda folder: save_safetensors(fit, folder / FIT_FILE),
                                   info={"head_figures": self.head_figures, "fit_loss": loss})

    def _hmie(self, name, hidden, inputs, generator, summary):
        r"""HMIE of one side on the whole batch: its token level on token states sampled by the step's
        ``generator`` from every rank's items (gathered in the batch's order, so the sample is one
        process's), its item level on the gathered ``summary`` ``[N, H]``. ``hidden`` and ``inputs`` are
        this rank's items' (``None`` where it has none)."""
        limit = self.settings.hmie_tokens
        views = []
        for key in ("text_mask", "visual_mask"):
            if hidden is None:
                local, sizes = summary.new_zeros(0, summary.size(-1)), []
            else:
                local, sizes = hidden.float()[inputs[key]], inputs[key].sum(1).tolist()
            tokens = gather_batch(local, sizes)
            if key == "text_mask" or tokens.size(0):  # the visual view where the batch has visual tokens
                views.append(sample_tokens(tokens, limit, generator))
        return self.hmie[name](views, summary)

    def _item_summaries(self, adapter, items, knowledge_labels=False):
        r"""Item pass of ``adapter`` on this rank's ``items``: ``(inputs, hidden, summary)``; ``summary`` is
        ``[len(items), H]``, ``inputs`` and ``hidden`` are ``None`` where the rank has no item."""
        if not items:
            return None, None, torch.zeros(0, self.backbone.hidden_size, device=self.backbone.device)
        inputs, hidden = self.item_pass(adapter, items, knowledge_labels=knowledge_labels)
        return inputs, hidden, hidden.float()[torch.arange(len(items)), inputs["summary_index"]]

    def training_loss(self, rows, step):
        r"""``(loss, parts)`` of this rank's ``rows`` of one batch, normalised over the whole batch.

        On one process the batch's loss. In a distributed run (``batch_global``: every rank calls it at
        every step, also with no rows) each rank's term of it, by the helpers of
        :mod:`recbole_tpad.distributed`: ``L_gen^T`` and ``L_gen^K`` are means over the whole batch's
        answer tokens and ``L_next`` over its rows (:func:`~recbole_tpad.distributed.batch_mean`); the
        next items are the whole batch's (its targets gathered), shared out by
        :func:`~recbole_tpad.distributed.shard` for the ``T`` and ``K`` item passes, and their features
        and token states gathered (:func:`~recbole_tpad.distributed.gather_batch`), so that HMIE samples
        the tokens one process samples and AMIE takes every next item as a negative. The parts are the
        batch's values.
        """
        s = self.settings
        device = self.backbone.device
        generator = torch.Generator().manual_seed(self.seed * 1000003 + step)
        rows = [int(r) for r in rows]
        targets = self.sessions.target[torch.as_tensor(rows, dtype=torch.long)].to(device)
        # the whole batch's unique next items, in the batch's order; this rank passes its share of them
        next_items = list(dict.fromkeys(int(t) for t in gather_batch(targets).tolist()))
        items = [int(i) for i in shard(next_items)]
        loss, parts = torch.zeros((), device=device), {}
        if s.stage2_next_weight > 0:
            self._prepare()
        # 1. Transfer-MLLM on the sessions: L_gen^T and L_next (t_s through the head against every item)
        gen_t = answers = l_next = None
        if rows:  # a rank with no rows of a small batch still takes part in the batch's collectives
            t_s, session_hidden, session_in = self.session_states(rows, with_answers=s.gen_t > 0)
            if s.gen_t > 0:
                answers = answer_count(session_in["labels"])
                if answers:
                    gen_t = self.backbone.token_loss(session_hidden, session_in["labels"]) * answers
            if s.stage2_next_weight > 0:
                logits = self.head.scores(t_s, self.bank) / s.temperature
                exclude = session_in["exclude"]
                logits[exclude[:, 0], exclude[:, 1]] = float("-inf")  # the session's own items
                l_next = F.cross_entropy(logits, targets, reduction="sum")
        if s.gen_t > 0:
            loss = self._add_batch_mean(loss, parts, "gen_t", s.gen_t, gen_t, answers)
        if s.stage2_next_weight > 0:
            loss = self._add_batch_mean(loss, parts, "next", s.stage2_next_weight, l_next, len(rows))
        # 2. The teacher: what follows each next item by T and the head, without gradient (AMIE's stop-gradient)
        align = s.amie_weight > 0 or s.hmie_weight > 0
        if align:
            with torch.no_grad():
                item_in, t_hidden, t_summary = self._item_summaries(TRANSFER, items)
                t_feat = gather_batch(self.teacher_features(t_summary) if items else t_summary)
        # 3. Knowledge-MLLM on the same items: L_gen^K, HMIE and AMIE
        if align or s.gen_k > 0:
            k_in, k_hidden, k_summary = self._item_summaries(KNOWLEDGE, items, knowledge_labels=s.gen_k > 0)
            if s.gen_k > 0:
                k_answers = answer_count(k_in["labels"]) if items else 0
                gen_k = self.backbone.token_loss(k_hidden, k_in["labels"]) * k_answers if k_answers else None
                loss = self._add_batch_mean(loss, parts, "gen_k", s.gen_k, gen_k, k_answers)
        if align:
            k_feat = gather_batch(k_summary)
            t_align = t_feat
            if s.hmie_weight > 0:
                l_hmie_k, k_parts = self._hmie(KNOWLEDGE, k_hidden, k_in, generator, k_feat)
                l_hmie_t, t_parts = self._hmie(TRANSFER, t_hidden, item_in, generator, t_feat)  # T's split heads only
                loss = loss + s.hmie_weight * (l_hmie_k + l_hmie_t)
                parts["hmie"] = (l_hmie_k + l_hmie_t).item()
                parts["hmie_mi"] = k_parts["hmie_mi"] + t_parts["hmie_mi"]
                k_feat, t_align = k_parts["item_shared"], t_parts["item_shared"]
            if s.amie_weight > 0 and len(next_items) >= 2:
                l_amie = self.amie(k_feat, t_align)
                loss = loss + s.amie_weight * l_amie
                parts["amie"] = l_amie.item()
        return loss, parts

    def _add_batch_mean(self, loss, parts, name, weight, local_sum, local_count):
        r"""``loss`` plus ``weight`` times the whole batch's mean of a quantity summed over this rank's
        share (``local_sum``, ``None`` where it has none); its value goes to ``parts[name]``."""
        local_sum = local_sum if local_sum is not None else torch.zeros((), device=self.backbone.device)
        term, value = batch_mean(local_sum, local_count or 0)
        if term is None:
            return loss
        parts[name] = value
        return loss + weight * term

    # ---- held-out figures -------------------------------------------------------------------------
    def teacher_features(self, features):
        r"""``T``'s item ``features`` as AMIE's teacher: through the head's session map (what follows the
        item) where ``L_next`` trains the head, else as they are."""
        return self.head.successor(features) if self.settings.stage2_next_weight > 0 else features

    @torch.no_grad()
    def next_item_figures(self, adapter, rows, mapped=True):
        r"""Recall@10 and MRR of the session states of pair ``rows`` (under ``adapter``) against every
        item's bank feature, through the head (``mapped``) or by centred cosine alone."""
        ranks, targets = [], self.head.targets(self.bank) if mapped else None  # every item once
        for i in range(0, len(rows), 128):
            batch = rows[i: i + 128]
            inputs = self.session_inputs(batch, with_answers=False)
            hidden = self._upper(adapter, inputs)
            t_s = hidden.float()[torch.arange(len(batch)), inputs["state_index"]]
            scores = self.head.scores(t_s, self.bank, mapped=mapped, targets=targets)
            ranks.append(ranks_of(scores, self.sessions.target[torch.as_tensor(batch)].to(scores.device)).float())
        return rank_figures(torch.cat(ranks))

    @torch.no_grad()
    def evaluate(self):
        r"""Held-out figures of the stage, on training pairs of sessions it never trained on.

        ``T``'s next-item recall@10 / MRR against all items (``trained``: adapter and head), beside the
        untrained ``T`` (the frozen base, centred cosines: the last item's content similarity), the
        fitted head on the untrained ``T`` (``head``, before ``T``'s steps) and a popularity ranking (by
        next-item counts of the training rows); and AMIE's alignment: how often ``K``'s feature of an
        item retrieves its own ``T`` teacher feature among 1,000.
        """
        if len(self.heldout) == 0:
            return {}
        self._prepare(collective=False)  # (a stage 2 run without L_next has no bank yet; rank 0 alone here)
        rows = self.heldout
        figures = {"heldout_pairs": int(len(rows))}
        runs = [("untrained", None, False), ("trained", TRANSFER, self.settings.stage2_next_weight > 0)]
        for name, adapter, mapped in runs:
            for metric, value in self.next_item_figures(adapter, rows, mapped).items():
                figures[f"heldout_{metric}_{name}"] = value
        figures.update({f"heldout_{metric}_head": value for metric, value in self.head_figures.items()})
        counts = torch.bincount(self.sessions.target[torch.as_tensor(self.train_rows)], minlength=self.num_items).float()
        counts[0] = float("-inf")
        targets = self.sessions.target[torch.as_tensor(rows)]
        popular = ranks_of(counts.unsqueeze(0).expand(len(rows), -1), targets).float()
        for metric, value in rank_figures(popular).items():
            figures[f"heldout_{metric}_popularity"] = value
        if self.settings.amie_weight > 0:
            figures.update(self.alignment_figures())
        self.backbone.set_adapter(TRANSFER)
        return figures

    @torch.no_grad()
    def alignment_figures(self, sample=1000):
        rng = np.random.default_rng([self.seed, 11])
        rows = rng.choice(np.arange(1, self.num_items), size=min(sample, self.num_items - 1), replace=False)
        feats = {}
        for adapter in (KNOWLEDGE, TRANSFER):
            feat = self.item_features(adapter, rows)
            if adapter == TRANSFER:
                feat = self.teacher_features(feat)
            if self.settings.hmie_weight > 0:
                feat = self.hmie[adapter].split["item"](F.layer_norm(feat, feat.shape[-1:]))[0]
            feats[adapter] = F.layer_norm(feat, feat.shape[-1:])
        k = F.normalize(self.amie.k_head(feats[KNOWLEDGE]), dim=-1)
        t = F.normalize(self.amie.t_head(feats[TRANSFER]), dim=-1)
        ranks = ranks_of(k @ t.t(), torch.arange(len(rows), device=k.device)).float()
        return {"amie_recall@1": round(float((ranks <= 1).float().mean()), 4),
                "amie_recall@10": round(float((ranks <= 10).float().mean()), 4),
                "amie_candidates": int(len(rows))}

    def save(self, folder):
        save_knowledge_mllm(self.backbone, folder)
        self.backbone.save_adapter(TRANSFER, folder / f"adapter_{TRANSFER}")
        heads = {f"amie.{k}": v for k, v in self.amie.state_dict().items()}
        heads.update({f"hmie.{k}": v for k, v in self.hmie.state_dict().items()})
        heads.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        save_safetensors(heads, folder / HEADS_FILE)


def text_positions(start, length, axes):
    r"""Position ids ``[axes, length]`` of text tokens from ``start`` (every rotary axis alike)."""
    return torch.arange(start, start + length).unsqueeze(0).expand(axes, -1)


def rank_figures(ranks):
    return {"recall@10": round(float((ranks <= 10).float().mean()), 4),
            "mrr": round(float((1.0 / ranks).mean()), 4)}


def heldout_pairs(sessions, limit, seed):
    r"""Rows of every pair of seeded random sessions, whole sessions only, about ``limit`` rows at most."""
    if limit <= 0:
        return np.zeros(0, dtype=np.int64)
    session = sessions.session.numpy()
    ids, counts = np.unique(session, return_counts=True)
    order = np.random.default_rng([int(seed), 5]).permutation(len(ids))
    take = order[np.cumsum(counts[order]) <= min(limit, len(session) // 2)]
    return np.flatnonzero(np.isin(session, ids[take]))
