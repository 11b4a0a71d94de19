"""Paired tests of one model against another over the same test sessions (scipy).

Each test session gives both models one value of a metric (``bench/session_outcomes.py``: the
reciprocal rank within the top 20 for MRR@20, 0/1 for Recall@20). The two models are compared on
the per-session differences: a Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided;
sessions where both values are equal, e.g. both models miss the target, carry no sign and are left
out, scipy's ``zero_method="wilcox"``) and a paired bootstrap of the mean difference
(``scipy.stats.bootstrap`` with ``paired=True``: sessions resampled with both models' values
together; percentile interval).

With several seeds per model, the values are paired on the seed-averaged per-session values: each
model's per-session value is its mean over the seeds it ran, so the test asks whether the
difference holds across the test sessions, with seed noise averaged out (not whether it holds
across seeds: three seeds are too few for that, and the headline table gives their spread).
"""

import numpy as np

METRICS = ("mrr@20", "recall@20")


def paired_comparison(a, b, confidence=0.95, n_resamples=2000, seed=0):
    """Compare per-session values ``a`` (the model) and ``b`` (the baseline), paired by position.

    Returns the means, ``diff`` (mean of a - b), ``rel_%`` (diff over b's mean, in %), the bootstrap
    interval of ``diff`` (``ci_low``, ``ci_high``), the Wilcoxon p-value ``p`` and ``n`` sessions.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a paired comparison needs at least two sessions")
    mean_a, mean_b = float(a.mean()), float(b.mean())
    diff = mean_a - mean_b
    if np.any(a != b):
        p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    else:  # no session differs: nothing to test
        p = 1.0
    interval = stats.bootstrap(
        (a, b), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), paired=True, vectorized=True,
        confidence_level=confidence, n_resamples=n_resamples, method="percentile", batch=100,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return {"mean_a": mean_a, "mean_b": mean_b, "diff": diff,
            "rel_%": 100 * diff / mean_b if mean_b else float("nan"),
            "ci_low": float(interval.low), "ci_high": float(interval.high), "p": p, "n": len(a)}


def seed_averaged(runs, metric):
    """One model's per-session values of ``metric``, averaged over its seeds.

    ``runs``: the loaded per-session files of its seeds (``load_session_outcomes``); all must hold
    the same test sessions in the same order (equal digests), or the average would mix sessions.
    """
    digests = {run["digest"] for run in runs}
    if len(digests) != 1:
        raise ValueError(f"the seeds' per-session files hold different test sessions (digests {sorted(digests)})")
    return np.mean([run["outcomes"][metric] for run in runs], axis=0)


def compare_models(runs_a, runs_b, metrics=METRICS, **kwargs):
    """``{metric: paired_comparison}`` of model A against model B on their seed-averaged per-session values."""
    if runs_a[0]["digest"] != runs_b[0]["digest"]:
        raise ValueError("the two models were tested on different sessions, or in another order "
                         f"(digests {runs_a[0]['digest']} and {runs_b[0]['digest']}): they cannot be paired")
    return {metric: paired_comparison(seed_averaged(runs_a, metric), seed_averaged(runs_b, metric), **kwargs)
            for metric in metrics}
