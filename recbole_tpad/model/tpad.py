# -*- coding: utf-8 -*-
r"""
TPAD
################################################

Reference:
    Jiajie Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv 2504.10538, 2025.

This is TPAD's downstream session-based recommender (the realization's step 4). The MLLM stages
that produce the item views (knowledge acquisition, transition distillation, representation
generation) run before it, when the runner prepares the item views (``make_item_views``); this
model only sees their cached output.
"""


import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.errors import ConfigError
from recbole_tpad.model.correlation_supervision import (
    CorrelationSupervision,
    CorrelationTeacher,
    supervision_settings,
    teacher_settings,
)
from recbole_tpad.model.item_views import SUCCESSOR_VIEWS, VIEWS
from recbole_tpad.model.multimodal_recommender import MultimodalSequentialRecommender
from recbole_tpad.model.renamed_keys import renamed_key
from recbole_tpad.model.session_encoders import build_session_encoder, keep_recent_items, session_encoder_name
from recbole_tpad.model.view_adapters import ViewAdapter, check_view_adapter, standardize_view, view_statistics

FUSIONS = ("learned", "fixed")
# The session-item offset is this times its parameter: Adam moves a parameter by about the learning
# rate a step (1e-3 by default), which would take the offset tens of epochs to reach a few units.
SESSION_ITEM_BIAS_RATE = 20.0
TRANSITION_FUSIONS = ("validation", "joint")


def views_to_untie(config):
    r"""The views scored with their own output-side ID table or view adapter: ``tied_output`` True (every
    view tied), False (none) or the list of views that stay tied."""
    tied, views = config["tied_output"], list(config["views"])
    if tied is None:  # a config from before the key (an older checkpoint's): tied, as TPAD was then
        tied = True
    if isinstance(tied, bool):
        return [] if tied else views
    if not isinstance(tied, (list, tuple)) or any(v not in views for v in tied):
        raise ConfigError(f"tied_output={tied!r}: give True, False or a list of the views that stay tied, from views={views}.")
    return [v for v in views if v not in tied]


class TPAD(MultimodalSequentialRecommender):
    r"""TPAD scores a session against every item under several item views and fuses the scores late.

    Views: ``id`` (a trainable ID table) and the frozen MLLM item views ``text``, ``image``,
    ``fused``, each through its own trainable view adapter (items without a photo get a learned
    "no image" vector in the image view). Each view's session sequence is encoded by the chosen
    session encoder (SRGNN, GRU4Rec, SASRec), either by one encoder per view or by one shared encoder
    run on the views stacked along the batch (a learned view embedding tells the views apart).
    The score of item i for session s is ``sum_v w_v <s_v, e_v(i)>``; CE loss over all items.

    NOTE:
        The paper states late fusion without its form. Here the weights ``w_v`` are either fixed
        (``fusion: fixed``, ``fusion_weights`` or 1 each) or learned as ``V * softmax(alpha)``,
        initialised at the fixed weights (``fusion: learned``). Optionally each view's own scores
        get a CE term (``view_loss_weight``) so no view leans on the others, and the view adapters
        of the modality views can be held to the frozen features' item correlations with KDSR's
        correlation supervision (``correlation_supervision``).

        ``neighbour_views`` adds, for each named frozen view, ``s_k * cos(x_last, x_i)``: the cosine
        of the unadapted view of the session's last item with every item's, times a learned scale
        (initialised at ``neighbour_scale``). The view adapters and encoders learn the transitions; this
        term keeps the distilled item similarity as the MLLM made it, which training would
        otherwise wash out (the modality forgetting KDSR describes). Measured in docs/results.md.

        ``transition_score`` adds the Transfer-MLLM's score ``s_t * <succ(last), tgt(i)>``: the successor
        view of the session's last item (its ``T`` feature through stage 2's transition head: where its
        next item lies) against every item's target view, both frozen and computed once in stage 3. It
        is the transitions ``T`` learned from the training sessions, fused late; it exists where stage 2
        ran. With ``transition_fusion: validation`` the model trains without it and :class:`TPADTrainer`
        then picks ``s_t`` from ``transition_scales`` on the validation split (0 keeps it off), saved with
        the weights; with ``joint`` it is in the training loss, ``s_t`` learned from ``transition_scale``.
        Measured in docs/stages.md.

        ``session_item_bias`` adds one learned offset ``b`` to the score of every item already in the
        session (its whole history, not only the ``session_length`` items the encoder reads), trained
        with the rest by the CE loss from 0. Not in the paper: RecBole's full ranking keeps a session's
        own items as candidates, and where a dataset never repeats an item in a session (amazon-beauty)
        ``b`` learns to move them out of the way; where items repeat it can learn to favour them.

        ``tied_output: False`` scores items with their own ID table, view adapters and "no image" vector
        (``target_representations``) instead of those the session encoder reads, as ``e_v(i)`` above; a list
        (e.g. ``[id]``) keeps those views tied and unties the rest. Tied, the encoder's residual stream carries
        the last item's input vector into ``s_v``, so a session scores its own last item near the top.
        ``output_map: True`` instead scores ``W_v e_v(i)``, one ``H x H`` map per view learned from the
        identity: the model starts as the tied one and can learn scores that are not symmetric in the
        session's last item and the candidate. Neither is in the paper; measured in docs/results.md.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info
        self.embedding_size = config["embedding_size"]
        self.session_encoder = session_encoder_name(config)
        self.session_length = config["session_length"] or 0
        self.views = list(config["views"])
        self.shared_encoder = config["shared_encoder"]
        self.view_adapter = renamed_key(config, "view_adapter", "adapter_type")
        self.view_adapter_dropout = renamed_key(config, "view_adapter_dropout", "adapter_dropout")
        self.fusion = config["fusion"]
        self.view_loss_weight = config["view_loss_weight"]
        self.initializer_range = config["initializer_range"]
        self.use_correlation = config["correlation_supervision"]
        self.correlation_views = list(config["correlation_views"] or [])
        self.neighbour_views = list(config["neighbour_views"] or [])
        self.transition_score = self.uses_successor_views(config)
        self.transition_fusion = config["transition_fusion"]
        fusion_weights = dict(config["fusion_weights"] or {})
        fusion_weights = torch.tensor([float(fusion_weights.get(v, 1.0)) for v in self.views])
        self.frozen_views = self.required_views(config)
        views, image_mask = self.read_item_views(config, dataset)

        # define layers and loss
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0) if "id" in self.views else None
        self.view_adapters = nn.ModuleDict()  # filled last, below
        self.missing_image = nn.Parameter(torch.zeros(self.embedding_size)) if "image" in self.views else None
        n_encoders = 1 if self.shared_encoder else len(self.views)
        self.encoders = nn.ModuleList(
            build_session_encoder(config, self.embedding_size, self.max_seq_length) for _ in range(n_encoders)
        )
        self.view_embedding = nn.Embedding(len(self.views), self.embedding_size) if self.shared_encoder else None
        self.neighbour_log_scale = nn.Parameter(
            torch.full((len(self.neighbour_views),), float(config["neighbour_scale"])).log()) if self.neighbour_views else None
        self.transition_log_scale = None
        if self.transition_score:
            joint = self.transition_fusion == "joint"
            self.transition_log_scale = nn.Parameter(torch.tensor(float(config["transition_scale"])).log(),
                                                     requires_grad=joint)
            # validation: off until TPADTrainer has picked the scale after training (saved with the weights)
            self.register_buffer("transition_ready", torch.tensor(joint))
        self.session_item_bias = nn.Parameter(torch.zeros(())) if config["session_item_bias"] else None
        self.untied_views = views_to_untie(config)
        if self.fusion == "learned":
            self.fusion_logits = nn.Parameter(fusion_weights.log())
        else:
            self.register_buffer("fixed_fusion_weights", fusion_weights)
        self._register_frozen_views(views, image_mask)
        self.correlation = None
        if self.use_correlation:
            settings = teacher_settings(config, config["teacher_dim"])
            teachers = {
                name: CorrelationTeacher.from_view(views[name], self._rows_with_view(name, image_mask), **settings)
                for name in self.correlation_views
            }
            self.correlation = CorrelationSupervision(teachers, self.embedding_size, **supervision_settings(config))

        # parameters initialization
        self.apply(self._init_weights)
        if self.missing_image is not None:
            self.missing_image.data.normal_(mean=0.0, std=self.initializer_range)
        for encoder in self.encoders:
            encoder.reset_parameters()
        # The view adapters draw from the RNG after everything else, as they did when the views
        # came after construction: a seed gives the same weights as before.
        self.view_adapters.update(self._build_view_adapters(views, self.views))
        # untied views: the items as scored get their own ID table, view adapters and "no image" vector,
        # drawn last, so that a seed gives the rest the weights of the tied model
        self.output_embedding = self.output_missing_image = None
        if "id" in self.untied_views:
            self.output_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
            self._init_weights(self.output_embedding)
        if "image" in self.untied_views:
            self.output_missing_image = nn.Parameter(torch.zeros(self.embedding_size).normal_(std=self.initializer_range))
        self.output_adapters = nn.ModuleDict(self._build_view_adapters(views, self.untied_views))
        # output_map: one linear map per view on the items as scored, from the identity (starts as the tied model)
        self.output_maps = nn.Parameter(torch.eye(self.embedding_size).repeat(len(self.views), 1, 1)) if config["output_map"] else None

    def _build_view_adapters(self, views, names):
        adapters = {}
        for name in names:
            if name != "id":
                adapter = ViewAdapter(views[name].size(1), self.embedding_size, self.view_adapter, self.view_adapter_dropout)
                adapter.reset_parameters(self.initializer_range)
                adapters[name] = adapter
        return adapters

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        views, neighbour_views = list(config["views"]), list(config["neighbour_views"] or [])
        unknown = [v for v in views if v not in VIEWS]
        if not views or unknown or len(set(views)) != len(views):
            raise ConfigError(f"views={views}: give distinct names from {list(VIEWS)}.")
        check_view_adapter(renamed_key(config, "view_adapter", "adapter_type"))
        if (config["session_length"] or 0) < 0:
            raise ConfigError(f"session_length={config['session_length']}: give 0 (whole sessions) or a positive length.")
        if config["fusion"] not in FUSIONS:
            raise ConfigError(f"fusion={config['fusion']!r} is not supported; choose one of {list(FUSIONS)}.")
        fusion_weights = dict(config["fusion_weights"] or {})
        unknown = [v for v in fusion_weights if v not in views]
        if unknown:
            raise ConfigError(f"fusion_weights names {unknown}, which are not in views={views}.")
        if any(float(w) <= 0 for w in fusion_weights.values()):
            raise ConfigError(f"fusion_weights={fusion_weights}: every weight must be > 0.")
        bad = [v for v in neighbour_views if v not in VIEWS or v == "id"]
        if bad or len(set(neighbour_views)) != len(neighbour_views):
            raise ConfigError(f"neighbour_views={neighbour_views}: give distinct frozen views from {list(VIEWS[1:])}.")
        if neighbour_views and not (config["neighbour_scale"] or 0) > 0:
            raise ConfigError(f"neighbour_scale={config['neighbour_scale']} must be > 0.")
        if config["transition_score"]:
            if config["transition_fusion"] not in TRANSITION_FUSIONS:
                raise ConfigError(f"transition_fusion={config['transition_fusion']!r}: choose one of {list(TRANSITION_FUSIONS)}.")
            if not (config["transition_scale"] or 0) > 0:
                raise ConfigError(f"transition_scale={config['transition_scale']} must be > 0.")
            scales = list(config["transition_scales"] or [])
            if config["transition_fusion"] == "validation" and (not scales or any(float(x) < 0 for x in scales)):
                raise ConfigError(f"transition_scales={scales}: give the scales to try on the validation split, each >= 0.")
        views_to_untie(config)  # raises on a bad tied_output
        correlation_views = list(config["correlation_views"] or [])
        if config["correlation_supervision"]:
            bad = [v for v in correlation_views if v not in views or v == "id"]
            if not correlation_views or bad:
                raise ConfigError(
                    f"correlation_views={correlation_views}: name modality views used in views={views} "
                    "(not 'id'), or set correlation_supervision: False."
                )

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ------------------------------------------------------------------ item views
    @classmethod
    def required_views(cls, config):
        views = [v for v in config["views"] if v != "id"] + list(config["neighbour_views"] or [])
        if cls.uses_successor_views(config):
            views += list(SUCCESSOR_VIEWS)
        return tuple(dict.fromkeys(views))

    @staticmethod
    def uses_successor_views(config):
        r"""``transition_score`` where stage 2 runs: without it (``stage_distillation: False`` or
        ``stage2_epochs: 0``, :attr:`StageConfig.run_stage2`) there is no Transfer-MLLM, hence no
        successor views and no transition score. Read from the two keys: the stage block is parsed once
        per run, by the stages."""
        return bool(config["transition_score"]) and bool(config["stage_distillation"]) and (config["stage2_epochs"] or 0) > 0

    @classmethod
    def make_item_views(cls, config, train_dataset, features):
        r"""The distilled Knowledge-MLLM's item views: TPAD's MLLM stages, run or loaded from their cache.

        Stage 2 learns from ``train_dataset`` (the training split) only. The stage settings are
        read here, once per run; ``features`` is the run's feature settings.
        """
        from recbole_tpad.stages.config import StageConfig
        from recbole_tpad.stages.pipeline import StagePipeline

        pipeline = StagePipeline(config, train_dataset, train_dataset=train_dataset,
                                 show_progress=bool(config["show_progress"]),
                                 settings=StageConfig.from_config(config), features=features)
        item_views = pipeline.run()
        info = {f"{name}_s": round(seconds, 1) for name, seconds in pipeline.timings.items()}
        return item_views, dict(info, **pipeline.stage_figures())

    def _register_frozen_views(self, views, image_mask):
        self._view_stats = {}  # the training items' standardisation, kept for items added later
        for name in self.neighbour_views:  # unit rows; zero for the padding item and missing photos
            unit = F.normalize(views[name], dim=1) * self._rows_with_view(name, image_mask).unsqueeze(1)
            self.register_buffer(f"neighbour_{name}", unit, persistent=False)
        for name in SUCCESSOR_VIEWS if self.transition_score else ():  # unit rows already (stage 3)
            self.register_buffer(name, views[name], persistent=False)
        for name in self.views:
            if name == "id":
                continue
            valid = self._rows_with_view(name, image_mask)
            self._view_stats[name] = view_statistics(views[name], valid)
            self.register_buffer(f"view_{name}", standardize_view(views[name], valid, statistics=self._view_stats[name]),
                                 persistent=False)
        self.register_buffer("image_mask", image_mask, persistent=False)

    @torch.no_grad()
    def add_items(self, views, image_mask):
        r"""Append items that had no interaction in training; they get ids ``n_items, n_items + 1, ...``.

        They are scored through the frozen views alone: their rows of the ID table are zero, their
        frozen views are standardised with the training items' statistics and go through the
        trained view adapters, like every other item.

        Args:
            views (dict): name -> ``[n_new, dim]`` frozen views of the new items (every name of
                :meth:`required_views`), made as the training items' were.
            image_mask (torch.BoolTensor): ``[n_new]``, True where the new item has a photo.
        """
        if not self.frozen_views:
            raise ConfigError(f"TPAD with views={self.views} scores items by their trained ID rows only; "
                              "it cannot score items it was not trained with (give it a frozen view, e.g. text).")
        image_mask = torch.as_tensor(image_mask, dtype=torch.bool).reshape(-1)
        n_new = image_mask.numel()
        rows = {name: torch.ones(n_new, dtype=torch.bool) if name != "image" else image_mask for name in VIEWS}
        rows.update({name: torch.ones(n_new, dtype=torch.bool) for name in SUCCESSOR_VIEWS})
        device = self.image_mask.device
        for name in self.frozen_views:
            view = torch.as_tensor(views[name], dtype=torch.float32).cpu()
            if name in SUCCESSOR_VIEWS:
                self._append_rows(name, view.to(device))
            if name in self.neighbour_views:
                unit = F.normalize(view, dim=1) * rows[name].unsqueeze(1)
                self._append_rows(f"neighbour_{name}", unit.to(device))
            if name in self._view_stats:
                new = standardize_view(view, rows[name], statistics=[s.cpu() for s in self._view_stats[name]])
                self._append_rows(f"view_{name}", new.to(device))
        self._append_rows("image_mask", image_mask.to(device))
        for table in (self.item_embedding, self.output_embedding):
            if table is not None:
                table.weight = nn.Parameter(torch.cat([table.weight, table.weight.new_zeros(n_new, table.weight.size(1))]))
                table.num_embeddings += n_new
        self.n_items += n_new
        self._item_cache = None

    def _append_rows(self, buffer, rows):
        setattr(self, buffer, torch.cat([getattr(self, buffer), rows]))

    # ------------------------------------------------------------------ scoring
    def item_representations(self):
        reps = [self._view_representation(name, self.item_embedding, self.view_adapters, self.missing_image)
                for name in self.views]
        return self._without_padding(torch.stack(reps))  # [V, n_items, H]

    def target_representations(self, items):
        r"""The items as scored: a view of ``untied_views`` (``tied_output``) from its own ID table or view
        adapter, the other views as read; then, with ``output_map``, each view through its own linear map.
        Either lets a session not score its own last item highest (the residual stream of its encoder
        carries that item's input vector into the session vector)."""
        targets = items
        if self.untied_views:
            reps = [self._view_representation(name, self.output_embedding, self.output_adapters, self.output_missing_image)
                    if name in self.untied_views else items[v] for v, name in enumerate(self.views)]
            targets = self._without_padding(torch.stack(reps))
        if self.output_maps is not None:
            targets = torch.einsum("vnh,vgh->vng", targets, self.output_maps)  # e_v(i) W_v^T
        return targets

    def _view_representation(self, name, item_embedding, view_adapters, missing_image):
        if name == "id":
            return item_embedding.weight
        rep = view_adapters[name](getattr(self, f"view_{name}"))
        if name == "image":
            rep = torch.where(self.image_mask.unsqueeze(-1), rep, missing_image)
        return rep

    def _without_padding(self, reps):
        return reps * (torch.arange(self.n_items, device=reps.device) > 0).unsqueeze(-1)  # padding row 0

    def encode_sessions(self, item_seq, item_seq_len, items):
        item_seq, item_seq_len = keep_recent_items(item_seq, item_seq_len, self.session_length)
        ids, context = self.encoders[0].prepare(item_seq)  # the session graph / mask, shared by the views
        emb = items[:, ids]  # [V, B, L, H]
        if self.shared_encoder:
            emb = emb + self.view_embedding.weight[:, None, None, :]
            return self.encoders[0](context, item_seq_len, emb)  # [V, B, H]
        return torch.cat([encoder(context, item_seq_len, emb[v : v + 1]) for v, encoder in enumerate(self.encoders)])

    def extra_logits(self, item_seq, item_seq_len, candidates=None):
        transition = self.transition_score and bool(self.transition_ready)
        if not self.neighbour_views and not transition and self.session_item_bias is None:
            return None
        last = item_seq.gather(1, (item_seq_len - 1).unsqueeze(1)).squeeze(1)  # [B]
        pairs = [(scale, getattr(self, f"neighbour_{name}"), getattr(self, f"neighbour_{name}"))
                 for scale, name in zip(self.neighbour_log_scale.exp(), self.neighbour_views)] if self.neighbour_views else []
        if transition:  # the last item's successor against every item's target view
            pairs.append((self.transition_log_scale.exp(), self.successor, self.successor_target))
        logits = 0
        for scale, source, target in pairs:
            # frozen cosines, only the scale learns; predict() needs one candidate per session, not all
            cosine = source[last] @ target.T if candidates is None else (source[last] * target[candidates]).sum(-1)
            logits = logits + scale * cosine
        if self.session_item_bias is not None:
            logits = self._add_session_item_offset(logits, item_seq, candidates)
        return logits

    def session_item_offset(self):
        r"""The learned score offset of a session's own items (``session_item_bias``)."""
        return SESSION_ITEM_BIAS_RATE * self.session_item_bias

    def _add_session_item_offset(self, logits, item_seq, candidates=None):
        """``logits`` (``[B, n_items]``, ``[B]`` for ``candidates``, or 0) with the offset added where an
        item is in the session, once however often it occurs there (padding aside)."""
        offset = self.session_item_offset()
        if candidates is not None:
            return logits + offset * ((item_seq == candidates.unsqueeze(1)) & (item_seq > 0)).any(1)
        if not torch.is_tensor(logits):
            logits = offset.new_zeros(item_seq.size(0), self.n_items)
        # written, not accumulated, per position: an item the session holds twice gets the offset once
        shifted = logits.gather(1, item_seq) + (offset * (item_seq > 0)).to(logits.dtype)
        return logits.scatter(1, item_seq, shifted)

    @property
    def picks_transition_scale(self):
        r"""True where :class:`TPADTrainer` picks the transition score's scale on the validation split."""
        return self.transition_score and self.transition_fusion == "validation"

    @torch.no_grad()
    def set_transition_scale(self, scale):
        r"""Fuse the transition score at ``scale`` from now on (0: not at all)."""
        self.transition_log_scale.fill_(float(torch.tensor(float(scale)).log()))
        self.transition_ready.fill_(True)

    def view_weights(self):
        if self.fusion == "learned":
            return len(self.views) * torch.softmax(self.fusion_logits, dim=0)
        return self.fixed_fusion_weights

    def view_losses(self, seq_output, targets, pos_items):
        if not self.view_loss_weight:
            return ()
        losses = [F.cross_entropy(logits, pos_items) for logits in self._view_logits(seq_output, targets)]
        return (self.view_loss_weight * torch.stack(losses).mean(),)

    def auxiliary_losses(self, interaction, items):
        if self.correlation is None:
            return ()
        item_seq = interaction[self.ITEM_SEQ]
        pool = torch.cat([item_seq[item_seq > 0], interaction[self.POS_ITEM_ID]])
        students = {name: items[self.views.index(name)] for name in self.correlation_views}
        return self.correlation(students, pool)
