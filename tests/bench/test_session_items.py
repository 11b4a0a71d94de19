"""bench/session_items.py: the ranking with and without the session's own items."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.session_items import session_item_effect  # noqa: E402
from recbole_tpad.recommend.recommender import Recommendation  # noqa: E402


class FixedRanking:
    """Ranks items a, b, c, d, ... in that order for every session, as SessionRecommender.recommend does."""

    def recommend(self, sessions, topk=20, exclude_seen=False):
        order = ["a", "b", "c", "d", "e"]
        return [Recommendation([i for i in order if not (exclude_seen and i in s)][:topk], []) for s in sessions]


def test_dropping_the_session_items_moves_the_targets_up():
    sessions, targets = [["a"], ["x"], ["a", "b"]], ["b", "c", "e"]
    result = session_item_effect(FixedRanking(), sessions, targets, k=2)
    assert result["recall@2"] == 1 / 3 and result["mrr@2"] == (1 / 2) / 3  # only b, at rank 2, is in a top 2
    # dropped: b is first in session 1; session 3's top 2 are c, d (e still out)
    assert result["recall@2_session_items_dropped"] == 1 / 3 and result["mrr@2_session_items_dropped"] == 1 / 3
    assert result["top1_is_a_session_item"] == 2 / 3 and result["target_is_a_session_item"] == 0
