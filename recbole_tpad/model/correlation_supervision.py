# -*- coding: utf-8 -*-
r"""
Correlation supervision
################################################

Reference:
    Hengchang Hu et al. "Lightweight Modality Adaptation to Sequential Recommendation via
    Correlation Supervision." in ECIR 2024 (arXiv 2401.07257).

A frozen teacher (an item's modality feature reduced to ``d`` dims) supervises a trainable
student item representation of the same modality, so that the student keeps the teacher's view
of which items are alike while the recommender adapts it ("modality forgetting"):

- holistic correlations ``S^m_ij = cos(e^m_i, e^m_j)``; the student's ``S_hat^m_ij`` is the cosine
  after two linear maps; loss ``|| (S_hat^m - S^m) / tau ||``;
- dissected correlation codes: the vectors are split into ``D`` sub-vectors, ``c_ij`` holds the
  ``D`` sub-vector cosines, k-means (scikit-learn ``MiniBatchKMeans``) with ``K`` centroids is fit
  once per dataset on the ``c_ij`` of sampled item pairs; a pair's code ``z_ij`` is its nearest
  centroid; loss ``CE(MLP(|h_i - h_j|), z_ij)``.

NOTE:
    The authors' code computes both targets for every pair of items of the catalogue (dense
    items x items matrices) and the losses over all node pairs of each session graph. Here the
    centroids are the only per-dataset state (cached on disk), the codes of a pair are assigned on
    the fly (nearest centroid, the same rule as ``KMeans.predict``), and the losses run on
    ``n_pairs`` item pairs sampled per batch from the batch's items (session items and targets),
    so memory is O(n_pairs) whatever the catalogue size. The holistic loss is the root mean
    square over the sampled pairs (the authors' Frobenius norm per session grows with the
    session length); its weight is therefore not on the authors' scale.
"""

import os
import zipfile
from logging import getLogger

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.distributed import broadcast_object, is_main_process, main_process_first
from recbole_tpad.errors import ConfigError
from recbole_tpad.store import CacheEntry, bytes_sha256

CODES_FILE = "codes.npz"

logger = getLogger()


def reduce_item_matrix(matrix, dim, valid, seed=0):
    r"""PCA of the ``valid`` rows of ``matrix`` to ``dim`` components (scikit-learn), other rows zero.

    The result is scaled so that the valid rows have unit mean L2 norm. If fewer than ``dim``
    components exist (few items or a narrow feature), the rest are zero-padded.

    Returns:
        torch.Tensor: ``[n_items, dim]`` float32.
    """
    return fit_item_reduction(matrix, dim, valid, seed)[0]


def fit_item_reduction(matrix, dim, valid, seed=0):
    r""":func:`reduce_item_matrix`, and the map it applied, for rows that come later (items added
    after training).

    Returns:
        tuple: ``reduced`` ``[n_items, dim]`` (float32 tensor), ``mean`` ``[D]`` and ``basis``
        ``[D, dim]`` (float32 arrays): a valid row ``x`` reduces to ``(x - mean) @ basis``.
    """
    from sklearn.decomposition import PCA

    matrix = torch.as_tensor(matrix, dtype=torch.float32).cpu().numpy()
    valid = torch.as_tensor(valid, dtype=torch.bool).cpu().numpy()
    rows = matrix[valid]
    n_components = min(dim, rows.shape[0] - 1, rows.shape[1])
    if n_components < 1:
        raise ValueError(f"reduce_item_matrix needs at least two valid rows, got {rows.shape[0]}.")
    if n_components < dim:
        logger.warning(f"Teacher reduced to {n_components} PCA components, zero-padded to {dim}.")
    pca = PCA(n_components=n_components, random_state=seed)
    reduced = pca.fit_transform(rows)
    scale = np.linalg.norm(reduced, axis=1).mean() + 1e-12
    reduced /= scale
    out = np.zeros((matrix.shape[0], dim), dtype=np.float32)
    out[valid, :n_components] = reduced
    basis = np.zeros((matrix.shape[1], dim), dtype=np.float32)
    basis[:, :n_components] = pca.components_.T / scale
    return torch.from_numpy(out), pca.mean_.astype(np.float32), basis


def subvector_cosines(x_i, x_j, n_sub):
    """Cosines of the ``n_sub`` aligned sub-vectors of ``x_i`` and ``x_j`` (``[P, d]``) -> ``[P, n_sub]``."""
    shape = (x_i.size(0), n_sub, x_i.size(1) // n_sub)
    return F.cosine_similarity(x_i.reshape(shape), x_j.reshape(shape), dim=-1)


def sample_pairs(pool, n_pairs):
    """``n_pairs`` pairs ``(i, j)``, ``i != j``, drawn uniformly from the id list ``pool``."""
    idx = torch.randint(pool.numel(), (2, n_pairs), device=pool.device)
    i, j = pool[idx[0]], pool[idx[1]]
    keep = i != j
    return i[keep], j[keep]


def fit_correlation_codes(teacher, valid, n_sub, n_codes, n_pairs, seed=0):
    r"""Fit the ``K = n_codes`` correlation-code centroids on ``n_pairs`` random pairs of valid items.

    Returns:
        numpy.ndarray: ``[n_codes, n_sub]`` centroids in sub-vector-cosine space.
    """
    from sklearn.cluster import MiniBatchKMeans

    ids = torch.as_tensor(valid).nonzero().flatten()
    if ids.numel() < 2:
        raise ValueError("fit_correlation_codes needs at least two valid items.")
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(ids.numel(), (2, n_pairs), generator=generator)
    i, j = ids[idx[0]], ids[idx[1]]
    keep = i != j
    codes_input = subvector_cosines(teacher[i[keep]], teacher[j[keep]], n_sub).numpy()
    if codes_input.shape[0] < n_codes:
        raise ConfigError(f"n_codes={n_codes} exceeds the {codes_input.shape[0]} sampled item pairs.")
    kmeans = MiniBatchKMeans(n_clusters=n_codes, random_state=seed, n_init=3, batch_size=4096)
    return kmeans.fit(codes_input).cluster_centers_.astype(np.float32)


class CorrelationTeacher(nn.Module):
    r"""Frozen teacher of one modality: reduced item vectors, their validity, the code centroids.

    Build it with :meth:`from_view`, which runs PCA and k-means once and caches both on disk.
    ``reduction`` (``mean`` ``[D]``, ``basis`` ``[D, dim]``, from :func:`fit_item_reduction`) lets
    :meth:`project` reduce the features of items added later.
    """

    def __init__(self, teacher, valid, centroids, n_sub, reduction=None):
        super().__init__()
        self.n_sub = n_sub
        self.register_buffer("teacher", F.normalize(teacher, dim=-1), persistent=False)
        self.register_buffer("valid", valid.clone(), persistent=False)
        self.register_buffer("centroids", torch.as_tensor(centroids), persistent=False)
        mean, basis = reduction if reduction is not None else (None, None)
        self.register_buffer("reduction_mean", None if mean is None else torch.as_tensor(mean), persistent=False)
        self.register_buffer("reduction_basis", None if basis is None else torch.as_tensor(basis), persistent=False)

    @classmethod
    def from_view(cls, view, valid, dim, n_sub, n_codes, n_pairs, seed=0, cache_dir=None):
        """Reduce ``view`` to ``dim`` dims and fit the codes, or load both from ``cache_dir``."""
        if dim % n_sub:
            raise ConfigError(f"n_sub_vectors={n_sub} must divide the teacher size {dim}.")
        view = torch.as_tensor(view, dtype=torch.float32).cpu()
        valid = torch.as_tensor(valid, dtype=torch.bool).cpu()
        if not cache_dir:  # rank 0 computes, the other ranks of a distributed run get its result
            teacher, centroids, mean, basis = broadcast_object(
                cls._fit(view, dim, valid, n_sub, n_codes, n_pairs, seed) if is_main_process() else None)
            return cls(teacher, valid, centroids, n_sub, (mean, basis))
        entry = CacheEntry(cache_dir, "correlation", {
            "view": bytes_sha256(view.numpy().tobytes(), valid.numpy().tobytes()),
            "dim": dim, "n_sub": n_sub, "n_codes": n_codes, "n_pairs": n_pairs, "seed": seed, "format": 2})
        path = entry.folder / CODES_FILE
        with main_process_first():  # rank 0 fits and writes the cache, the other ranks read it
            cached = cls._load(path, view.size(0), dim, n_codes, n_sub, view.size(1)) if entry.is_complete() else None
            if cached is not None:
                return cls(cached[0], valid, cached[1], n_sub, cached[2:])
            teacher, centroids, mean, basis = cls._fit(view, dim, valid, n_sub, n_codes, n_pairs, seed)
            entry.commit(lambda folder: np.savez(folder / CODES_FILE, teacher=teacher.numpy(), centroids=centroids,
                                                 mean=mean, basis=basis))
            logger.info(f"Correlation codes cached to {entry.folder}")
        return cls(teacher, valid, centroids, n_sub, (mean, basis))

    @staticmethod
    def _fit(view, dim, valid, n_sub, n_codes, n_pairs, seed):
        teacher, mean, basis = fit_item_reduction(view, dim, valid, seed)
        return teacher, fit_correlation_codes(teacher, valid, n_sub, n_codes, n_pairs, seed), mean, basis

    @staticmethod
    def _load(path, n_items, dim, n_codes, n_sub, width=None):
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path) as data:
                teacher, centroids, mean, basis = data["teacher"], data["centroids"], data["mean"], data["basis"]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:  # torn or foreign file
            logger.warning(f"Ignoring unreadable correlation cache {path}: {error}")
            return None
        width = basis.shape[0] if width is None else width
        if (teacher.shape != (n_items, dim) or centroids.shape != (n_codes, n_sub) or mean.shape != (width,)
                or basis.shape != (width, dim) or not np.isfinite(teacher).all()):
            logger.warning(f"Ignoring correlation cache {path}: shapes {teacher.shape}, {centroids.shape}, "
                           f"{mean.shape}, {basis.shape} or non-finite values.")
            return None
        return torch.from_numpy(teacher), centroids, mean, basis

    def project(self, view):
        r"""Unit teacher rows ``[n, dim]`` of items added after training: the catalogue's PCA applied
        to their features ``view`` ``[n, D]`` (the rows an item of the catalogue has in :attr:`teacher`)."""
        if self.reduction_basis is None:
            raise RuntimeError("this teacher was built without its PCA map (from_view keeps it); it cannot reduce new rows.")
        view = torch.as_tensor(view, dtype=torch.float32, device=self.reduction_basis.device)
        return F.normalize((view - self.reduction_mean) @ self.reduction_basis, dim=-1)

    def holistic(self, i, j):
        """Teacher cosines ``S_ij`` ``[P]``."""
        return (self.teacher[i] * self.teacher[j]).sum(-1)

    def codes(self, i, j):
        """Correlation codes ``z_ij`` ``[P]``: the nearest centroid to the sub-vector cosines."""
        c_ij = subvector_cosines(self.teacher[i], self.teacher[j], self.n_sub)
        return torch.cdist(c_ij, self.centroids).argmin(-1)


class CorrelationSupervision(nn.Module):
    r"""Holistic and dissected correlation losses for several modalities of a student.

    Args:
        teachers (dict[str, CorrelationTeacher]): one frozen teacher per modality (item view).
        student_dim (int): size of the student item vectors.
        n_codes (int): K, the number of correlation codes.
        tau (float): temperature dividing both correlations in the holistic loss.
        holistic_weight (float): w_h.
        code_weight (float): w_c.
        n_pairs (int): item pairs sampled per batch.
    """

    def __init__(self, teachers, student_dim, n_codes, tau, holistic_weight, code_weight, n_pairs):
        super().__init__()
        self.modalities = list(teachers)
        self.tau = tau
        self.holistic_weight = holistic_weight
        self.code_weight = code_weight
        self.n_pairs = n_pairs
        self.cor_maps = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(student_dim, student_dim), nn.Linear(student_dim, student_dim)) for m in self.modalities}
        )
        self.code_heads = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(student_dim, student_dim), nn.ReLU(), nn.Linear(student_dim, n_codes))
                for m in self.modalities
            }
        )
        self.teachers = nn.ModuleDict(teachers)

    def holistic_loss(self, modality, student, i, j):
        target = self.teachers[modality].holistic(i, j)
        mapped = self.cor_maps[modality](torch.stack([student[i], student[j]]))
        predicted = F.cosine_similarity(mapped[0], mapped[1], dim=-1)
        return torch.sqrt((((predicted - target) / self.tau) ** 2).mean() + 1e-8)

    def code_loss(self, modality, student, i, j):
        target = self.teachers[modality].codes(i, j)
        logits = self.code_heads[modality](torch.abs(student[i] - student[j]))
        return F.cross_entropy(logits, target)

    def forward(self, students, pool):
        r"""Weighted ``(L_holistic, L_code)`` summed over modalities.

        Args:
            students (dict[str, torch.Tensor]): ``modality -> [n_items, student_dim]`` student tables.
            pool (torch.LongTensor): item ids of the batch to sample pairs from (padding excluded).
        """
        i_all, j_all = sample_pairs(pool, self.n_pairs)
        zero = students[self.modalities[0]].sum() * 0.0
        holistic, code = zero, zero
        for modality in self.modalities:
            valid = self.teachers[modality].valid
            keep = valid[i_all] & valid[j_all]
            if not keep.any():
                continue
            i, j, student = i_all[keep], j_all[keep], students[modality]
            holistic = holistic + self.holistic_loss(modality, student, i, j)
            code = code + self.code_loss(modality, student, i, j)
        return self.holistic_weight * holistic, self.code_weight * code


def supervision_settings(config):
    """Keyword arguments of ``CorrelationSupervision`` (besides teachers and size) from a model's config."""
    return {
        "n_codes": config["n_codes"],
        "tau": config["tau"],
        "holistic_weight": config["holistic_weight"],
        "code_weight": config["code_weight"],
        "n_pairs": config["n_pairs"],
    }


def teacher_settings(config, dim):
    """Keyword arguments of ``CorrelationTeacher.from_view`` from a model's config."""
    return {
        "dim": dim,
        "n_sub": config["n_sub_vectors"],
        "n_codes": config["n_codes"],
        "n_pairs": config["kmeans_pairs"],
        "seed": config["seed"],
        "cache_dir": config["correlation_cache_dir"] or os.path.join(config["checkpoint_dir"], "correlation"),
    }
