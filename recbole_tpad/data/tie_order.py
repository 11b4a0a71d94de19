"""The order of a session's interactions that share a timestamp (``tie_order``, ``tie_seed``).

RecBole orders each session by time with a stable sort (``Dataset.build`` sorts by ``TIME_FIELD``,
``SequentialDataset.data_augmentation`` by user then time, both ``Interaction.sort``, a stable
``np.argsort``), so interactions of one session with the same timestamp keep the order of the
atomic file. On day-granular data that order decides many targets (amazon-beauty: the last two
items of 43% of the sessions share a day; ``bench/tie_order.py`` measures it).

``tie_order: file`` (the default) keeps the file's order. ``tie_order: shuffle`` permutes the
interactions of each (session, timestamp) group with a generator seeded by ``tie_seed``, in the
dataset RecBole built (IDs already remapped, so every ID stays what it is under ``file``), before
``data_preparation`` sorts and splits it. Only rows of the same session and the same timestamp
trade places; every other row keeps its position.
"""

from dataclasses import dataclass
from logging import getLogger

import numpy as np

from recbole_tpad.errors import ConfigError

TIE_ORDERS = ("file", "shuffle")


@dataclass(frozen=True)
class TieOrder:
    """Validated ``tie_order`` and ``tie_seed`` (documented in ``properties/overall.yaml``)."""

    order: str = "file"
    seed: int = 0

    def __post_init__(self):
        if self.order not in TIE_ORDERS:
            raise ConfigError(f"tie_order='{self.order}' is not known; use one of: {', '.join(TIE_ORDERS)}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"tie_seed={self.seed!r} must be an integer (the seed of tie_order: shuffle).")

    @classmethod
    def from_config(cls, config):
        return cls(order=config["tie_order"] or "file", seed=config["tie_seed"] if config["tie_seed"] is not None else 0)


def tie_permutation(sessions, times, seed):
    """Row order that shuffles the rows of each (session, time) group among the group's own positions.

    ``sessions`` and ``times`` are equal-length arrays, one entry per row. Returns ``order`` such that
    ``rows[order]`` is the shuffled table: position ``i`` holds a row of the same group as row ``i``,
    and the same ``seed`` on the same rows gives the same order.
    """
    sessions, times = np.asarray(sessions), np.asarray(times)
    if sessions.shape != times.shape or sessions.ndim != 1:
        raise ValueError(f"sessions and times must be 1-d arrays of one length, got {sessions.shape} and {times.shape}")
    n = len(sessions)
    session_code = np.unique(sessions, return_inverse=True)[1].reshape(-1).astype(np.int64)
    time_code = np.unique(times, return_inverse=True)[1].reshape(-1).astype(np.int64)
    group = session_code * (int(time_code.max()) + 1 if n else 1) + time_code  # one key per (session, time)
    positions = np.lexsort((np.arange(n), group))  # each group's positions, in file order
    shuffled = np.lexsort((np.random.default_rng(seed).random(n), group))  # each group's rows, shuffled
    order = np.empty(n, dtype=np.int64)
    order[positions] = shuffled
    return order


def apply_tie_order(config, dataset):
    """Reorder ``dataset.inter_feat`` as ``tie_order`` says; call after ``create_dataset``, before
    ``data_preparation`` (RecBole's sorts then keep the order given here). Returns the ``TieOrder``."""
    settings = TieOrder.from_config(config)
    if settings.order == "file":
        return settings
    uid, time = dataset.uid_field, dataset.time_field
    if time is None or time not in dataset.inter_feat:
        raise ConfigError("tie_order='shuffle' needs TIME_FIELD loaded in the .inter file (load_col): "
                          "without timestamps there are no ties to shuffle.")
    feat = dataset.inter_feat
    order = tie_permutation(feat[uid].to_numpy(), feat[time].to_numpy(), settings.seed)
    dataset.inter_feat = feat.iloc[order].reset_index(drop=True)
    moved = int((order != np.arange(len(order))).sum())
    getLogger().info(f"tie_order=shuffle (tie_seed={settings.seed}): {moved} of {len(order)} interactions "
                     "moved within their session's same-timestamp group")
    return settings
