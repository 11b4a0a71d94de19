"""Correlation supervision (KDSR): targets on hand-made vectors, codes, caching, losses that learn."""

import math

import numpy as np
import pytest
import torch

from recbole_tpad.model import correlation_supervision as cs
from recbole_tpad.model.correlation_supervision import (
    CorrelationSupervision,
    CorrelationTeacher,
    fit_correlation_codes,
    reduce_item_matrix,
    sample_pairs,
    subvector_cosines,
)



def test_holistic_targets_are_cosines_of_hand_made_vectors():
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    valid = torch.tensor([False, True, True, True, True])
    t = CorrelationTeacher(teacher, valid, np.zeros((2, 1), np.float32), n_sub=1)
    i, j = torch.tensor([1, 1, 1, 2]), torch.tensor([2, 3, 4, 3])
    expected = torch.tensor([0.0, 1 / math.sqrt(2), -1.0, 1 / math.sqrt(2)])
    assert torch.allclose(t.holistic(i, j), expected, atol=1e-6)


def test_subvector_cosines_and_code_assignment():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    y = torch.tensor([[2.0, 0.0, 0.0, 1.0], [-1.0, 0.0, -1.0, 0.0]])
    assert torch.allclose(subvector_cosines(x, y, 2), torch.tensor([[1.0, 0.0], [-1.0, -1.0]]), atol=1e-6)
    teacher = torch.cat([torch.zeros(1, 4), x, y])  # ids 1, 2 = x rows; 3, 4 = y rows
    centroids = np.array([[1.0, 1.0], [0.9, 0.1], [-1.0, -1.0]], np.float32)
    t = CorrelationTeacher(teacher, torch.arange(5) > 0, centroids, n_sub=2)
    # pairs (1,3): cos [1, 0] -> centroid 1; (2,4): [-1, -1] -> 2; (1,2): identical -> [1, 1] -> 0
    assert t.codes(torch.tensor([1, 2, 1]), torch.tensor([3, 4, 2])).tolist() == [1, 2, 0]


def test_pairs_never_pair_an_item_with_itself():
    torch.manual_seed(0)
    i, j = sample_pairs(torch.tensor([3, 3, 5, 7]), 500)
    assert len(i) > 300 and (i != j).all()
    assert set(i.tolist()) <= {3, 5, 7}


def test_codes_are_stable_for_a_seed():
    teacher = reduce_item_matrix(torch.randn(60, 24), 16, torch.arange(60) > 0, seed=0)
    first = fit_correlation_codes(teacher, torch.arange(60) > 0, n_sub=4, n_codes=6, n_pairs=3000, seed=3)
    again = fit_correlation_codes(teacher, torch.arange(60) > 0, n_sub=4, n_codes=6, n_pairs=3000, seed=3)
    other = fit_correlation_codes(teacher, torch.arange(60) > 0, n_sub=4, n_codes=6, n_pairs=3000, seed=4)
    assert first.shape == (6, 4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_reduce_item_matrix_zeroes_invalid_rows_and_pads():
    valid = torch.tensor([False] + [True] * 5 + [False] * 2)
    reduced = reduce_item_matrix(torch.randn(8, 10), 8, valid)
    assert reduced.shape == (8, 8)
    assert (reduced[~valid] == 0).all() and (reduced[:, 4:] == 0).all()  # only 4 components from 5 rows
    assert torch.allclose(reduced[valid].norm(dim=1).mean(), torch.tensor(1.0), atol=1e-5)


def test_teacher_is_cached_once_per_dataset(tmp_path, monkeypatch):
    view, valid = torch.randn(40, 20), torch.arange(40) > 0
    first = CorrelationTeacher.from_view(view, valid, 8, 2, 4, 2000, seed=0, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("correlation-*/codes.npz"))) == 1

    def refit(*args, **kwargs):
        raise AssertionError("the cached codes should have been reused")

    monkeypatch.setattr(cs, "fit_correlation_codes", refit)
    again = CorrelationTeacher.from_view(view, valid, 8, 2, 4, 2000, seed=0, cache_dir=str(tmp_path))
    assert torch.equal(first.centroids, again.centroids) and torch.equal(first.teacher, again.teacher)
    # a damaged cache is ignored (and refit), never trusted
    next(tmp_path.glob("correlation-*/codes.npz")).write_bytes(b"not a zip")
    with pytest.raises(AssertionError, match="cached codes"):
        CorrelationTeacher.from_view(view, valid, 8, 2, 4, 2000, seed=0, cache_dir=str(tmp_path))


@pytest.mark.parametrize("cached", [False, True])
def test_teacher_projects_new_rows_as_it_reduced_the_catalogue(tmp_path, cached):
    """Items added after training: the catalogue's PCA (kept in the cache) gives a row of the
    catalogue the teacher row it has; a wide view runs PCA's randomized solver."""
    view, valid = torch.randn(600, 700), torch.arange(600) > 0
    cache_dir = str(tmp_path) if cached else None
    CorrelationTeacher.from_view(view, valid, 16, 4, 4, 2000, seed=0, cache_dir=cache_dir)
    teacher = CorrelationTeacher.from_view(view, valid, 16, 4, 4, 2000, seed=0, cache_dir=cache_dir)
    rows = torch.tensor([1, 7, 599])
    assert torch.allclose(teacher.project(view[rows]), teacher.teacher[rows], atol=1e-4)
    assert torch.allclose(teacher.project(view[rows] + 0.01).norm(dim=1), torch.ones(3))


def test_both_losses_go_down_on_a_toy_problem():
    torch.manual_seed(0)
    n_items, dim = 50, 16
    teacher = CorrelationTeacher.from_view(torch.randn(n_items, 32), torch.arange(n_items) > 0, dim, 4, 5, 5000)
    supervision = CorrelationSupervision({"text": teacher}, dim, n_codes=5, tau=1.5, holistic_weight=1.0, code_weight=1.0, n_pairs=256)
    student = torch.nn.Parameter(torch.randn(n_items, dim))
    optimizer = torch.optim.Adam([student, *supervision.parameters()], lr=0.01)
    pool = torch.arange(1, n_items)
    history = []
    for _ in range(200):
        holistic, code = supervision({"text": student}, pool)
        optimizer.zero_grad()
        (holistic + code).backward()
        optimizer.step()
        history.append((holistic.item(), code.item()))
    start, end = np.mean(history[:10], axis=0), np.mean(history[-10:], axis=0)
    assert end[0] < 0.7 * start[0], (start, end)
    assert end[1] < 0.8 * start[1], (start, end)


def test_pairs_without_the_modality_are_skipped():
    teacher = CorrelationTeacher(torch.randn(6, 4), torch.tensor([False, True, True, False, False, False]), np.zeros((3, 2), np.float32), 2)
    supervision = CorrelationSupervision({"image": teacher}, 4, n_codes=3, tau=1.0, holistic_weight=1.0, code_weight=1.0, n_pairs=64)
    holistic, code = supervision({"image": torch.randn(6, 4, requires_grad=True)}, torch.tensor([3, 4, 5]))
    assert holistic.item() == 0.0 and code.item() == 0.0
