"""tie_order: a seeded shuffle of a session's same-timestamp interactions, and nothing else."""

import numpy as np
import pytest
from recbole.data import create_dataset, data_preparation

from recbole_tpad.data.tie_order import TieOrder, apply_tie_order, tie_permutation
from recbole_tpad.errors import ConfigError
from recbole_tpad.quick_start import load_config

# Two sessions interleaved in the file, with ties inside each session and one timestamp both share.
SESSIONS = np.array(["a", "a", "b", "a", "b", "b", "a", "b", "a", "c"])
TIMES = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 3.0, 2.0, 5.0])


def test_the_shuffle_is_seeded_and_only_permutes_within_a_session_and_timestamp():
    order = tie_permutation(SESSIONS, TIMES, seed=0)
    assert sorted(order) == list(range(len(SESSIONS)))  # a permutation of the rows
    assert (SESSIONS[order] == SESSIONS).all() and (TIMES[order] == TIMES).all()  # each position keeps its group
    assert order[7] == 7 and order[9] == 9  # rows alone in their group stay
    assert (tie_permutation(SESSIONS, TIMES, seed=0) == order).all()  # deterministic
    orders = {tuple(tie_permutation(SESSIONS, TIMES, seed=s)) for s in range(20)}
    assert len(orders) > 5  # the seed matters
    # every row of a tie group reaches every position of its group under some seed
    group = [2, 4, 5]  # session b at time 1
    assert {order[2] for order in map(np.array, orders)} == set(group)


def test_bad_settings_fail_naming_the_key():
    with pytest.raises(ConfigError, match="tie_order='random'.*file, shuffle"):
        TieOrder(order="random")
    with pytest.raises(ConfigError, match="tie_seed"):
        TieOrder(order="shuffle", seed="1")
    assert TieOrder.from_config({"tie_order": None, "tie_seed": None}) == TieOrder()


def _write_tied_dataset(root, n_sessions=30):
    folder = root / "ties"
    folder.mkdir(parents=True)
    lines = ["session_id:token\titem_id:token\ttimestamp:float"]
    for s in range(n_sessions):  # four items, the last three on one day
        lines += [f"s{s:02d}\ti{(s + k) % 12:02d}\t{day}" for k, day in enumerate([1, 2, 2, 2])]
    (folder / "ties.inter").write_text("\n".join(lines) + "\n")
    return root


def _splits(root, tmp_path, **overrides):
    config = load_config("SASRec", "ties", config_dict={
        "data_path": str(root), "USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["session_id", "item_id", "timestamp"]}, "checkpoint_dir": str(tmp_path / "saved"),
        "state": "WARNING", "show_progress": False, **overrides})
    dataset = create_dataset(config)
    apply_tie_order(config, dataset)
    rows = dataset.inter_feat.copy()  # as RecBole's sorts will find it
    return rows, dataset.field2id_token["item_id"].tolist(), data_preparation(config, dataset)


def _targets(split):
    feat = split._dataset.inter_feat
    return dict(zip(feat["session_id"].tolist(), feat["item_id"].tolist()))


def test_the_runner_hook_reorders_ties_before_recbole_sorts_and_splits(tmp_path):
    root = _write_tied_dataset(tmp_path / "data")
    file_rows, file_items, (_, _, file_test) = _splits(root, tmp_path)
    rows, items, (_, _, test) = _splits(root, tmp_path, tie_order="shuffle", tie_seed=3)
    assert _targets(_splits(root, tmp_path, tie_order="shuffle", tie_seed=3)[2][2]) == _targets(test)  # seeded
    assert items == file_items  # IDs were remapped before the shuffle: the same under both orders
    key = ["session_id", "timestamp"]
    assert (rows[key] == file_rows[key]).all().all()  # each position keeps its session and day
    assert sorted(map(tuple, rows.values.tolist())) == sorted(map(tuple, file_rows.values.tolist()))
    alone = file_rows["timestamp"] == 1  # the first item of every session is alone on its day
    assert (rows[alone] == file_rows[alone]).all().all()
    file_targets, targets = _targets(file_test), _targets(test)
    assert file_targets.keys() == targets.keys()
    changed = sum(file_targets[s] != targets[s] for s in targets)
    assert 0 < changed < len(targets)  # a target is one of its day's three items: it changes for about 2/3
