"""Paired tests of bench/significance.py on synthetic per-session values with known answers."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.significance import compare_models, paired_comparison, seed_averaged  # noqa: E402


def test_a_constant_shift_gives_its_size_and_a_tiny_p():
    b = np.linspace(0.0, 0.2, 500)
    result = paired_comparison(b + 0.01, b, n_resamples=200)
    assert result["diff"] == pytest.approx(0.01)
    assert result["rel_%"] == pytest.approx(100 * 0.01 / b.mean())
    assert result["ci_low"] == pytest.approx(0.01) and result["ci_high"] == pytest.approx(0.01)
    assert result["p"] < 1e-50 and result["n"] == 500


def test_the_comparison_pairs_sessions_by_position():
    # Sessions differ far more from each other than the two models differ on one session: a paired test
    # sees the small, consistent gain; a test that lost the pairing would see noise.
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    a, b = base + 0.005 + rng.normal(0, 0.001, 2000), base
    paired = paired_comparison(a, b, n_resamples=300)
    assert paired["p"] < 1e-100
    assert 0.004 < paired["ci_low"] < paired["diff"] < paired["ci_high"] < 0.006
    unpaired = paired_comparison(a, rng.permutation(b), n_resamples=300)  # the pairing broken on purpose
    assert unpaired["diff"] == pytest.approx(paired["diff"])  # the means alone cannot tell them apart
    assert unpaired["p"] > 1e-3 and unpaired["ci_low"] < 0 < unpaired["ci_high"]


def test_identical_models_and_bad_input():
    values = np.array([0.0, 0.5, 1.0, 0.0])
    result = paired_comparison(values, values, n_resamples=50)
    assert result["diff"] == 0 and result["p"] == 1.0
    with pytest.raises(ValueError, match="one length"):
        paired_comparison(values, values[:3])


def _runs(digest, *rr):
    return [{"digest": digest, "outcomes": {"mrr@20": np.asarray(v, float), "recall@20": np.asarray(v, float) > 0}}
            for v in rr]


def test_seeds_are_averaged_per_session_and_only_the_same_sessions_pair():
    tpad = _runs("d1", [1.0, 0.5, 0.0, 0.2], [0.0, 0.5, 1.0, 0.2])
    assert seed_averaged(tpad, "mrr@20").tolist() == [0.5, 0.5, 0.5, 0.2]
    other = _runs("d1", [0.25, 0.5, 0.0, 0.1])
    result = compare_models(tpad, other, n_resamples=50)
    assert result["mrr@20"]["diff"] == pytest.approx((0.25 + 0 + 0.5 + 0.1) / 4)
    with pytest.raises(ValueError, match="cannot be paired"):
        compare_models(tpad, _runs("d2", [0.25, 0.5, 0.0, 0.1]))
    with pytest.raises(ValueError, match="different test sessions"):
        seed_averaged(tpad + _runs("d2", [0, 0, 0, 0]), "mrr@20")
