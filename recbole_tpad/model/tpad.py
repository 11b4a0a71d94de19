# -*- coding: utf-8 -*-
r"""
TPAD
################################################

Reference:
    Jiajie Su et al. "Distilling Transitional Pattern to Large Language Models for Multimodal
    Session-based Recommendation." arXiv 2504.10538, 2025.

This is TPAD's downstream session-based recommender (the realization's step 4). The MLLM stages
that produce the item views (knowledge acquisition, transition distillation, representation
generation) run before it, in ``TPADTrainer``; this model only sees their cached output.
"""


import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.errors import ConfigError, DataError
from recbole_tpad.model.correlation_supervision import CorrelationSupervision, CorrelationTeacher, teacher_settings
from recbole_tpad.model.modality_adapters import ModalityAdapter, standardize_view
from recbole_tpad.model.multimodal_recommender import MultimodalSequentialRecommender
from recbole_tpad.model.session_encoders import build_session_encoder, keep_recent_items

VIEWS = ("id", "text", "image", "fused")
FUSIONS = ("learned", "fixed")


class TPAD(MultimodalSequentialRecommender):
    r"""TPAD scores a session against every item under several item views and fuses the scores late.

    Views: ``id`` (a trainable ID table) and the frozen MLLM item views ``text``, ``image``,
    ``fused``, each through its own trainable adapter (items without a photo get a learned
    "no image" vector in the image view). Each view's session sequence is encoded by the chosen
    backbone (SRGNN, GRU4Rec, SASRec), either by one encoder per view or by one shared encoder
    run on the views stacked along the batch (a learned view embedding tells the views apart).
    The score of item i for session s is ``sum_v w_v <s_v, e_v(i)>``; CE loss over all items.

    NOTE:
        The paper states late fusion without its form. Here the weights ``w_v`` are either fixed
        (``fusion: fixed``, ``fusion_weights`` or 1 each) or learned as ``V * softmax(alpha)``,
        initialised at the fixed weights (``fusion: learned``). Optionally each view's own scores
        get a CE term (``view_loss_weight``) so no view leans on the others, and the adapters of
        the modality views can be held to the frozen features' item correlations with KDSR's
        correlation supervision (``correlation_supervision``).

        ``neighbour_views`` adds, for each named frozen view, ``s_k * cos(x_last, x_i)``: the cosine
        of the unadapted view of the session's last item with every item's, times a learned scale
        (initialised at ``neighbour_scale``). The adapters and encoders learn the transitions; this
        term keeps the distilled item similarity as the MLLM made it, which training would
        otherwise wash out (the modality forgetting KDSR describes). Measured in docs/results.md.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info
        self.embedding_size = config["embedding_size"]
        self.backbone = config["backbone"]
        self.session_length = config["session_length"] or 0
        self.views = list(config["views"])
        self.shared_encoder = config["shared_encoder"]
        self.adapter_type = config["adapter_type"]
        self.adapter_dropout = config["adapter_dropout"]
        self.fusion = config["fusion"]
        self.view_loss_weight = config["view_loss_weight"]
        self.initializer_range = config["initializer_range"]
        self.use_correlation = config["correlation_supervision"]
        self.correlation_views = list(config["correlation_views"] or [])
        self.correlation_config = teacher_settings(config, config["teacher_dim"])
        self.neighbour_views = list(config["neighbour_views"] or [])
        self._check_config(config)
        fusion_weights = self._initial_fusion_weights(config["fusion_weights"])

        # define layers and loss
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0) if "id" in self.views else None
        self.adapters = nn.ModuleDict()  # built by set_item_views, when the view sizes are known
        self.missing_image = nn.Parameter(torch.zeros(self.embedding_size)) if "image" in self.views else None
        n_encoders = 1 if self.shared_encoder else len(self.views)
        self.encoders = nn.ModuleList(
            build_session_encoder(self.backbone, config, self.embedding_size, self.max_seq_length) for _ in range(n_encoders)
        )
        self.view_embedding = nn.Embedding(len(self.views), self.embedding_size) if self.shared_encoder else None
        self.neighbour_log_scale = nn.Parameter(
            torch.full((len(self.neighbour_views),), float(config["neighbour_scale"])).log()) if self.neighbour_views else None
        if self.fusion == "learned":
            self.fusion_logits = nn.Parameter(fusion_weights.log())
        else:
            self.register_buffer("fixed_fusion_weights", fusion_weights)
        self.correlation = None
        if self.use_correlation:
            self.correlation = CorrelationSupervision(
                self.correlation_views,
                self.embedding_size,
                n_codes=config["n_codes"],
                tau=config["tau"],
                holistic_weight=config["holistic_weight"],
                code_weight=config["code_weight"],
                n_pairs=config["n_pairs"],
            )

        # parameters initialization
        self.apply(self._init_weights)
        if self.missing_image is not None:
            self.missing_image.data.normal_(mean=0.0, std=self.initializer_range)
        for encoder in self.encoders:
            encoder.reset_parameters()

    def _check_config(self, config):
        unknown = [v for v in self.views if v not in VIEWS]
        if not self.views or unknown or len(set(self.views)) != len(self.views):
            raise ConfigError(f"views={self.views}: give distinct names from {list(VIEWS)}.")
        if self.session_length < 0:
            raise ConfigError(f"session_length={self.session_length}: give 0 (whole sessions) or a positive length.")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion={self.fusion!r} is not supported; choose one of {list(FUSIONS)}.")
        bad = [v for v in self.neighbour_views if v not in VIEWS or v == "id"]
        if bad or len(set(self.neighbour_views)) != len(self.neighbour_views):
            raise ConfigError(f"neighbour_views={self.neighbour_views}: give distinct frozen views from {list(VIEWS[1:])}.")
        if self.neighbour_views and not (config["neighbour_scale"] or 0) > 0:
            raise ConfigError(f"neighbour_scale={config['neighbour_scale']} must be > 0.")
        if self.use_correlation:
            bad = [v for v in self.correlation_views if v not in self.views or v == "id"]
            if not self.correlation_views or bad:
                raise ConfigError(
                    f"correlation_views={self.correlation_views}: name modality views used in views={self.views} "
                    "(not 'id'), or set correlation_supervision: False."
                )

    def _initial_fusion_weights(self, fusion_weights):
        fusion_weights = dict(fusion_weights or {})
        unknown = [v for v in fusion_weights if v not in self.views]
        if unknown:
            raise ConfigError(f"fusion_weights names {unknown}, which are not in views={self.views}.")
        weights = torch.tensor([float(fusion_weights.get(v, 1.0)) for v in self.views])
        if (weights <= 0).any():
            raise ConfigError(f"fusion_weights={fusion_weights}: every weight must be > 0.")
        return weights

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ------------------------------------------------------------------ item views
    @property
    def required_views(self):
        return tuple(dict.fromkeys([v for v in self.views if v != "id"] + self.neighbour_views))

    def _build_from_item_views(self, views, image_mask):
        for name in self.neighbour_views:  # unit rows; zero for the padding item and missing photos
            unit = F.normalize(views[name], dim=1) * (image_mask if name == "image" else torch.arange(self.n_items) > 0).unsqueeze(1)
            self.register_buffer(f"neighbour_{name}", unit, persistent=False)
        for name, view in views.items():
            if name not in self.views:
                continue  # a neighbour view only
            valid = image_mask if name == "image" else torch.arange(self.n_items) > 0
            if valid.sum() < 2:
                raise DataError(
                    f"item view '{name}' has fewer than two items with features (no images in this dataset?); "
                    f"drop '{name}' from the model's `views`."
                )
            self.register_buffer(f"view_{name}", standardize_view(view, valid), persistent=False)
            if name not in self.adapters:  # adapters stay when views are set again (e.g. a refreshed cache)
                adapter = ModalityAdapter(view.size(1), self.embedding_size, self.adapter_type, self.adapter_dropout)
                adapter.reset_parameters(self.initializer_range)
                self.adapters[name] = adapter
        self.register_buffer("image_mask", image_mask, persistent=False)
        if self.correlation is not None:
            teachers = {
                name: CorrelationTeacher.from_view(
                    views[name], image_mask if name == "image" else torch.arange(self.n_items) > 0, **self.correlation_config
                )
                for name in self.correlation_views
            }
            self.correlation.set_teachers(teachers)

    # ------------------------------------------------------------------ scoring
    def item_representations(self):
        reps = []
        for name in self.views:
            if name == "id":
                rep = self.item_embedding.weight
            else:
                rep = self.adapters[name](getattr(self, f"view_{name}"))
                if name == "image":
                    rep = torch.where(self.image_mask.unsqueeze(-1), rep, self.missing_image)
            reps.append(rep)
        reps = torch.stack(reps)  # [V, n_items, H]
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
        if not self.neighbour_views:
            return None
        last = item_seq.gather(1, (item_seq_len - 1).unsqueeze(1)).squeeze(1)  # [B]
        logits = 0
        for scale, name in zip(self.neighbour_log_scale.exp(), self.neighbour_views):
            unit = getattr(self, f"neighbour_{name}")
            # frozen cosines, only the scale learns; predict() needs one candidate per session, not all
            cosine = unit[last] @ unit.T if candidates is None else (unit[last] * unit[candidates]).sum(-1)
            logits = logits + scale * cosine
        return logits

    def view_weights(self):
        if self.fusion == "learned":
            return len(self.views) * torch.softmax(self.fusion_logits, dim=0)
        return self.fixed_fusion_weights

    def view_losses(self, seq_output, items, pos_items):
        if not self.view_loss_weight:
            return ()
        losses = [F.cross_entropy(logits, pos_items) for logits in self._view_logits(seq_output, items)]
        return (self.view_loss_weight * torch.stack(losses).mean(),)

    def auxiliary_losses(self, interaction, items):
        if self.correlation is None:
            return ()
        item_seq = interaction[self.ITEM_SEQ]
        pool = torch.cat([item_seq[item_seq > 0], interaction[self.POS_ITEM_ID]])
        students = {name: items[self.views.index(name)] for name in self.correlation_views}
        return self.correlation(students, pool)
