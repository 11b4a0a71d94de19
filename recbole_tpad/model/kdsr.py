# -*- coding: utf-8 -*-
r"""
KDSR
################################################

Reference:
    Hengchang Hu et al. "Lightweight Modality Adaptation to Sequential Recommendation via
    Correlation Supervision." in ECIR 2024 (arXiv 2401.07257).

Reference code:
    The authors' public KDSR code (defaults d=128, D=8, K=50, tau=1.5, w_h=4, w_c=0.5).
"""


import torch
from torch import nn

from recbole_tpad.errors import ConfigError
from recbole_tpad.model.correlation_supervision import (
    CorrelationSupervision,
    CorrelationTeacher,
    supervision_settings,
    teacher_settings,
)
from recbole_tpad.model.item_views import VIEWS
from recbole_tpad.model.multimodal_recommender import MultimodalSequentialRecommender
from recbole_tpad.model.renamed_keys import renamed_key
from recbole_tpad.model.session_encoders import build_session_encoder, session_encoder_name



class KDSR(MultimodalSequentialRecommender):
    r"""KDSR distils the item correlations of frozen modality features (the teacher) into trainable
    modality tables (the student) while they adapt to sequential recommendation.

    Teacher: each modality's frozen item feature reduced to ``d = embedding_size`` dims by PCA
    (scikit-learn, fit on the items that have that modality). Student: one trainable table per
    modality (each frozen item view in ``views``), initialised from the teacher (unit-norm rows),
    and the ID table (the view ``id``, always there); a per-item softmax gate (a shared two-layer
    MLP scoring each of the item's vectors) fuses them. The fused item sequence goes through the
    session encoder; scores are dot products with every item's fused vector; CE loss, plus the
    holistic and dissected correlation losses of :mod:`recbole_tpad.model.correlation_supervision`
    on the student tables. Asynchronous learning: the modality tables learn at
    ``learning_rate * modality_lr_scale`` (``parameter_groups``, used by ``KDSRTrainer``).

    NOTE:
        The authors' code reduces the features with CCA and scores sessions against the ID
        table; here PCA reduces each modality on its own (CCA needs two paired modalities) and
        candidates are scored with their fused vectors, so items never seen in training still
        carry their modality information (and items added after training, ``add_items``, can be
        scored: their teacher rows, no ID row). The authors' slow rate is ``lr / gamma^n_milestones``
        of their step schedule; here it is the explicit ``modality_lr_scale``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info
        self.embedding_size = config["embedding_size"]
        self.session_encoder = session_encoder_name(config)
        self.views = self._views(config)
        self.modalities = list(self.required_views(config))  # the frozen views, one modality table each
        self.fusion_dropout_prob = config["fusion_dropout_prob"]
        self.modality_lr_scale = config["modality_lr_scale"]
        self.initializer_range = config["initializer_range"]
        views, image_mask = self.read_item_views(config, dataset)

        # define layers and loss
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.modality_embedding = nn.ModuleDict(
            {m: nn.Embedding(self.n_items, self.embedding_size, padding_idx=0) for m in self.modalities}
        )
        self.gate = nn.Sequential(
            nn.Linear(self.embedding_size, self.embedding_size), nn.ReLU(), nn.Linear(self.embedding_size, 1)
        )
        self.fusion_dropout = nn.Dropout(self.fusion_dropout_prob)
        self.encoder = build_session_encoder(config, self.embedding_size, self.max_seq_length)
        # mask of the candidates [id, modality...] each item has; the image column is False where the item has no photo
        modality_mask = torch.ones(self.n_items, 1 + len(self.modalities), dtype=torch.bool)
        teachers, settings = {}, teacher_settings(config, self.embedding_size)
        for column, modality in enumerate(self.modalities, start=1):
            valid = self._rows_with_view(modality, image_mask)
            teachers[modality] = CorrelationTeacher.from_view(views[modality], valid, **settings)
            modality_mask[:, column] = valid
        self.register_buffer("modality_mask", modality_mask, persistent=False)
        self.correlation = CorrelationSupervision(teachers, self.embedding_size, **supervision_settings(config))

        # parameters initialization
        self.apply(self._init_weights)
        self.encoder.reset_parameters()
        for modality, teacher in teachers.items():  # the student starts at the teacher (unit rows; zero where missing)
            self.modality_embedding[modality].weight.data.copy_(teacher.teacher)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    @staticmethod
    def _views(config):
        # the old key listed the frozen views only; the ID table was implied
        return list(renamed_key(config, "views", "modalities", convert=lambda modalities: ["id", *modalities]))

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        views = cls._views(config)
        unknown = [v for v in views if v not in VIEWS]
        if "id" not in views or len(views) < 2 or unknown or len(set(views)) != len(views):
            raise ConfigError(
                f"views={views}: give 'id' (KDSR always fuses the ID table) and one or more distinct frozen views "
                f"from {list(VIEWS[1:])}."
            )
        if config["embedding_size"] % config["n_sub_vectors"]:
            raise ConfigError(
                f"n_sub_vectors={config['n_sub_vectors']} must divide embedding_size={config['embedding_size']}."
            )
        if not 0 < config["modality_lr_scale"] <= 1:
            raise ConfigError(f"modality_lr_scale={config['modality_lr_scale']} must be in (0, 1].")

    @classmethod
    def required_views(cls, config):
        return tuple(v for v in cls._views(config) if v != "id")

    def parameter_groups(self, learning_rate):
        """Optimizer param groups: the modality tables at ``learning_rate * modality_lr_scale``, the rest at the default."""
        slow = [table.weight for table in self.modality_embedding.values()]
        slow_ids = {id(p) for p in slow}
        rest = [p for p in self.parameters() if id(p) not in slow_ids]
        return [{"params": slow, "lr": learning_rate * self.modality_lr_scale}, {"params": rest}]

    # ------------------------------------------------------------------ new items
    @torch.no_grad()
    def add_items(self, views, image_mask):
        r"""Append items that had no interaction in training; they get ids ``n_items, n_items + 1, ...``.

        A new item's modality rows are what a catalogue item's started from, its teacher: its frozen
        feature reduced by the catalogue's PCA (unit rows; zero for a missing photo). It has no
        trained ID row, so the gate fuses its modality vectors only (its ID column is masked, as
        the image column of an item without a photo is).

        Args:
            views (dict): modality -> ``[n_new, dim]`` frozen features of the new items, made as the
                catalogue's were (the base backbone's views, ``recbole_tpad.features``).
            image_mask (torch.BoolTensor): ``[n_new]``, True where the new item has a photo.
        """
        image_mask = torch.as_tensor(image_mask, dtype=torch.bool).reshape(-1).cpu()
        n_new = image_mask.numel()
        has = torch.stack([torch.ones(n_new, dtype=torch.bool) if m != "image" else image_mask
                           for m in self.modalities], dim=1)  # [n_new, M]
        if not has.any(1).all():
            raise ConfigError(f"KDSR with views={self.views} needs a photo to score a new item (it has no ID row to fall "
                              "back on); these new items have none: give them a photo or train with a text view.")
        device = self.modality_mask.device
        for column, modality in enumerate(self.modalities):
            table = self.modality_embedding[modality]
            rows = self.correlation.teachers[modality].project(torch.as_tensor(views[modality]).to(device))
            rows = rows * has[:, column : column + 1].to(device)
            table.weight = nn.Parameter(torch.cat([table.weight, rows]))
            table.num_embeddings += n_new
        weight = self.item_embedding.weight
        self.item_embedding.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(n_new, weight.size(1))]))
        self.item_embedding.num_embeddings += n_new
        mask = torch.cat([torch.zeros(n_new, 1, dtype=torch.bool), has], dim=1)
        self.modality_mask = torch.cat([self.modality_mask, mask.to(device)])
        self.n_items += n_new
        self._item_cache = None

    # ------------------------------------------------------------------ scoring
    def item_representations(self):
        candidates = torch.stack(
            [self.item_embedding.weight] + [self.modality_embedding[m].weight for m in self.modalities], dim=1
        )  # [n_items, 1 + M, H]
        energy = self.gate(candidates).squeeze(-1).masked_fill(~self.modality_mask, float("-inf"))
        weights = torch.softmax(energy, dim=-1)  # [n_items, 1 + M]
        fused = self.fusion_dropout((candidates * weights.unsqueeze(-1)).sum(1))
        return fused.unsqueeze(0)  # [1, n_items, H]

    def encode_sessions(self, item_seq, item_seq_len, items):
        ids, context = self.encoder.prepare(item_seq)
        return self.encoder(context, item_seq_len, items[:, ids])  # [1, B, H]

    def auxiliary_losses(self, interaction, items):
        item_seq = interaction[self.ITEM_SEQ]
        pool = torch.cat([item_seq[item_seq > 0], interaction[self.POS_ITEM_ID]])
        students = {m: self.modality_embedding[m].weight for m in self.modalities}
        return self.correlation(students, pool)
