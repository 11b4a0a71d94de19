"""Per-session test outcomes of a benchmark row, kept beside its CSV for paired significance tests.

One small compressed file per row and seed, ``<out>/sessions/<dataset>/<row>-<seed>.npz``
(:func:`sessions_path`, about 2 KB a ranking for amazon-beauty's 22,363 test sessions), holding:

- ``rank``: uint8, per test session in the order of RecBole's test data loader (the order its
  evaluator sees them; the same for every model of one dataset and split), the 1-based position of
  the session's target in the model's top ``cutoff`` list, 0 where the target is not in it; read
  from RecBole's own ``rec.topk`` result of the test, so that the outcomes average to exactly the
  metrics RecBole reported;
- ``cutoff``: the largest top-k cut-off of the run (20 with ``properties/overall.yaml``);
- ``digest``: a hash of the test sessions' and targets' tokens in that order: two files pair
  session by session only when their digests are equal;
- ``unseen_rank`` (rows made since it exists): the same, ranked without the session's own items
  (``bench/cold_start.py``'s ``test_ranks``, the ranking of the ``unseen_*`` columns), so that the
  protocol of code that removes a user's history can be tested paired as well.

The test sessions themselves (RecBole's internal session ids, int32, in the same order) are the
same for every row of a split, so they are written once beside the rows, ``test-sessions-<digest>.npz``.

:func:`session_outcomes` turns ranks into the per-session values whose mean is each metric:
``mrr@K`` the reciprocal rank within the top K (0 outside), ``recall@K`` = ``hit@K`` (one target
per session), ``ndcg@K`` = 1 / log2(rank + 1) within the top K; those of ``unseen_rank`` are named
``unseen_<metric>``.
"""

import hashlib
from pathlib import Path

import numpy as np

from recbole_tpad.atomic import atomic_path


def sessions_path(out_dir, dataset, row, seed):
    """Where the per-session outcomes of benchmark row ``row`` with ``seed`` live under ``out_dir``."""
    return Path(out_dir) / "sessions" / dataset / f"{row}-{seed}.npz"


def ranks_from_topk(topk):
    """1-based rank of each session's single target from RecBole's ``rec.topk`` rows
    (``[sessions, K + 1]``: hit flags at positions 1..K, then the number of targets); 0 outside the top K."""
    topk = np.asarray(topk)
    hits, targets = topk[:, :-1], topk[:, -1]
    if len(targets) and targets.max() > 1:
        raise ValueError("per-session ranks need one target per session (a sequential leave-one-out split); "
                         f"a session here has {int(targets.max())}")
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def session_outcomes(ranks, topk=(10, 20)):
    """``{metric@K: per-session values}`` from 1-based ranks (0, or a rank past K: not in the top K)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    result = {}
    for k in topk:
        inside = (ranks >= 1) & (ranks <= k)
        safe = np.where(inside, ranks, 1.0)
        result[f"recall@{k}"] = inside.astype(np.float64)
        result[f"mrr@{k}"] = np.where(inside, 1.0 / safe, 0.0)
        result[f"ndcg@{k}"] = np.where(inside, 1.0 / np.log2(safe + 1), 0.0)
        result[f"hit@{k}"] = result[f"recall@{k}"]
    return result


def split_digest(test_dataset):
    """Hash of the test sessions' and targets' tokens, in the test loader's order."""
    digest = hashlib.sha256()
    for field in (test_dataset.uid_field, test_dataset.iid_field):
        tokens = test_dataset.id2token(field, test_dataset.inter_feat[field].numpy())
        digest.update("\t".join(map(str, tokens)).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def _save(path, **arrays):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a reader never sees half a file
        np.savez_compressed(f, **arrays)


def write_session_outcomes(path, run, unseen_ranks=None):
    """Save the per-session outcomes of a ``run_recbole_tpad`` result (its ``test_topk``) at ``path``,
    and the split's test sessions beside it if no row has yet. ``unseen_ranks``: the 1-based ranks
    without the session's own items, in the same order (``bench.cold_start.test_ranks``), kept too."""
    if run.get("test_topk") is None:
        raise ValueError("the run kept no per-session top-k result: its metrics have no top-k metric")
    test_dataset = run["test_data"]._dataset
    ranks = ranks_from_topk(run["test_topk"].numpy())
    sessions = test_dataset.inter_feat[test_dataset.uid_field].numpy()
    if len(sessions) != len(ranks):
        raise ValueError(f"{len(ranks)} evaluated sessions, but the test split has {len(sessions)}")
    cutoff = run["test_topk"].shape[1] - 1
    if cutoff > 255:
        raise ValueError(f"a top-k cut-off of {cutoff} does not fit the file's uint8 ranks (at most 255)")
    path, digest = Path(path), split_digest(test_dataset)
    shared = path.parent / f"test-sessions-{digest}.npz"
    if not shared.is_file():
        _save(shared, session=sessions.astype(np.int32))
    arrays = dict(rank=ranks.astype(np.uint8), cutoff=np.int16(cutoff), digest=np.str_(digest))
    if unseen_ranks is not None:
        unseen_ranks = np.asarray(unseen_ranks)
        if len(unseen_ranks) != len(ranks):
            raise ValueError(f"{len(unseen_ranks)} ranks without the session's items for {len(ranks)} sessions")
        arrays["unseen_rank"] = np.where(unseen_ranks <= cutoff, unseen_ranks, 0).astype(np.uint8)
    _save(path, **arrays)
    return path


def load_session_outcomes(path, topk=(10, 20)):
    """``{"rank", "cutoff", "digest", "session", "outcomes"}`` of a file written by :func:`write_session_outcomes`
    (``session``: ``None`` when the split's test-sessions file is missing; ``outcomes`` has the
    ``unseen_*`` metrics when the file has ``unseen_rank``)."""
    path = Path(path)
    with np.load(path) as saved:
        cutoff, digest = int(saved["cutoff"]), str(saved["digest"])
        if max(topk) > cutoff:
            raise ValueError(f"{path}: ranks were kept up to {cutoff}, not {max(topk)}")
        ranks = saved["rank"].astype(np.int64)
        unseen = saved["unseen_rank"].astype(np.int64) if "unseen_rank" in saved.files else None
    shared = path.parent / f"test-sessions-{digest}.npz"
    sessions = None
    if shared.is_file():
        with np.load(shared) as saved:
            sessions = saved["session"]
    outcomes = session_outcomes(ranks, topk)
    if unseen is not None:
        outcomes.update({f"unseen_{name}": values for name, values in session_outcomes(unseen, topk).items()})
    return {"rank": ranks, "cutoff": cutoff, "digest": digest, "session": sessions, "outcomes": outcomes}
