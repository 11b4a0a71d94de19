"""bench/tie_order.py: the tie statistic on a table with known ties, and the runs it plans."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tie_order import tie_rows, tie_statistic  # noqa: E402


def test_the_statistic_counts_ties_as_recbole_orders_sessions():
    # a: last two tie (day 2); b: no tie at the end, its first two tie; c: one item; d: three items on one day
    sessions = ["a", "b", "a", "b", "a", "b", "c", "d", "d", "d"]
    times = [1, 1, 2, 1, 2, 3, 5, 4, 4, 4]
    stats = tie_statistic(sessions, times, tie_seeds=range(30))
    assert stats["sessions"] == 4 and stats["sessions with 2+ items"] == 3
    assert stats["test target ties"] == 2 / 3  # a and d
    assert stats["valid target ties (3+ items)"] == 2 / 3  # b (its first two items) and d; a's are days 1, 2
    assert stats["interactions sharing their session's timestamp"] == 7 / 10
    changes = [stats[f"test target changes, tie_seed={s}"] for s in range(30)]
    assert set(changes) <= {0, 1 / 3, 2 / 3} and max(changes) > 0  # only a and d can change


def test_each_model_runs_with_the_file_order_and_each_shuffle():
    rows = tie_rows(["SASRec"], [2020], [0, 1])
    assert [(name, overrides) for name, _, _, overrides in rows] == [
        ("SASRec-tie_file", {"tie_order": "file"}),
        ("SASRec-tie_shuffle0", {"tie_order": "shuffle", "tie_seed": 0}),
        ("SASRec-tie_shuffle1", {"tie_order": "shuffle", "tie_seed": 1})]
