"""The keyed store: one key hash, atomic commits, validation on read, stale temporaries removed."""

import json
import os
import subprocess
import sys

import pytest

from recbole_tpad.compare import write_csv
from recbole_tpad.store import CacheEntry, read_manifest, stable_hash


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write(folder):
    (folder / "a.bin").write_bytes(b"abc")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text("hello")


def test_stable_hash_is_canonical_json():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert len(stable_hash({})) == 20 and len(stable_hash({}, length=12)) == 12


def test_commit_then_read_back(tmp_path):
    entry = CacheEntry(tmp_path, "thing", {"x": 1})
    assert entry.folder.name == f"thing-{entry.key}" and not entry.is_complete()
    manifest = entry.commit(_write, {"rows": 3})
    assert manifest["rows"] == 3 and set(manifest["files"]) == {"a.bin", "sub/b.txt"}
    again = CacheEntry(tmp_path, "thing", {"x": 1})
    assert again.manifest()["identity"] == {"x": 1}
    assert CacheEntry(tmp_path, "thing", {"x": 2}).folder != entry.folder
    assert sorted(os.listdir(tmp_path)) == [entry.folder.name]  # no temporary left


@pytest.mark.parametrize("damage", ["truncate", "edit", "delete", "manifest"])
def test_a_damaged_entry_is_not_read_and_is_rebuilt(tmp_path, caplog, damage):
    entry = CacheEntry(tmp_path, "thing", {"x": 1})
    entry.commit(_write)
    target = entry.folder / "a.bin"
    if damage == "truncate":
        target.write_bytes(b"ab")
    elif damage == "edit":
        target.write_bytes(b"abd")  # same size, other bytes
    elif damage == "delete":
        target.unlink()
    else:
        manifest = json.loads((entry.folder / "manifest.json").read_text())
        (entry.folder / "manifest.json").write_text(json.dumps(dict(manifest, complete=False)))
    fresh = CacheEntry(tmp_path, "thing", {"x": 1})
    assert fresh.manifest() is None and "it will be rebuilt" in caplog.text
    fresh.commit(_write)
    assert fresh.is_complete() and (fresh.folder / "a.bin").read_bytes() == b"abc"


def test_size_only_verification_skips_the_hash(tmp_path):
    entry = CacheEntry(tmp_path, "model", {"v": 1}, verify="size")
    entry.commit(_write)
    (entry.folder / "a.bin").write_bytes(b"abd")
    assert read_manifest(entry.folder, entry.key, verify="size")[0] is not None
    assert read_manifest(entry.folder, entry.key)[1] == "a.bin has changed"


def test_a_commit_removes_the_temporaries_of_dead_writers(tmp_path, caplog):
    dead = _dead_pid()
    stale = tmp_path / f".thing-0123.tmp-{dead}-ab12"
    stale.mkdir()
    (stale / "a.bin").write_bytes(b"half")
    CacheEntry(tmp_path, "thing", {"x": 1}).commit(_write)
    assert not stale.exists() and "died while writing it" in caplog.text


def test_a_failing_writer_leaves_nothing(tmp_path):
    def fails(folder):
        (folder / "a.bin").write_bytes(b"x")
        raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        CacheEntry(tmp_path, "thing", {"x": 1}).commit(fails)
    assert os.listdir(tmp_path) == []


def test_compare_csv_temporaries_are_found_by_the_clean_up(tmp_path, monkeypatch):
    import csv

    stale = tmp_path / f".table.csv.tmp-{_dead_pid()}-0000"
    stale.write_text("half a table")
    write_csv([{"model": "GRU4Rec", "dataset": "tiny", "seed": 1, "recall@10": 0.5}], tmp_path / "table.csv")
    assert os.listdir(tmp_path) == ["table.csv"]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        write_csv([{"model": "SASRec", "dataset": "tiny", "seed": 1}], tmp_path / "table.csv")
    assert os.listdir(tmp_path) == ["table.csv"] and "GRU4Rec" in (tmp_path / "table.csv").read_text()


def test_compare_csv_rewrite_keeps_the_column_order_of_the_file_it_replaces(tmp_path):
    import csv

    path = tmp_path / "table.csv"
    old = {"model": "GRU4Rec", "dataset": "tiny", "seed": 1, "mrr@20": 0.1, "recall@20": 0.5, "cpu": "AVX2"}
    write_csv([old], path)
    # a new row lists its keys in another order and brings one more: the old columns keep their places
    new = {"model": "SASRec", "dataset": "tiny", "seed": 1, "unseen_mrr@20": 0.2, "cpu": "AMX", "recall@20": 0.6,
           "mrr@20": 0.3}
    write_csv([new, old], path)
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["model", "dataset", "seed", "mrr@20", "recall@20", "cpu", "unseen_mrr@20",
                      "params", "train_s_per_epoch", "epochs", "eval_s", "error"]
