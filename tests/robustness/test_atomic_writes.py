"""Writes are atomic, torn files are never trusted, and temporaries of killed writers are cleaned up."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import recbole.trainer.trainer as recbole_trainer
from recbole_tpad.atomic import remove_stale_temps
from recbole_tpad.errors import DataError
from recbole_tpad.model.correlation_supervision import CorrelationTeacher
from recbole_tpad.quick_start import run_recbole_tpad


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_recbole_checkpoint_save_never_leaves_a_torn_file(tmp_path, monkeypatch):
    path = tmp_path / "saved" / "model.pth"
    recbole_trainer.torch.save({"epoch": 1}, path)
    real_save = torch.save

    def dies_halfway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as file:
            file.truncate(os.path.getsize(f) // 2)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        recbole_trainer.torch.save({"epoch": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert os.listdir(path.parent) == ["model.pth"]  # no temporary left beside it
    assert recbole_trainer.torch.load(path)["epoch"] == 1  # the previous checkpoint, intact


def test_truncated_checkpoint_fails_naming_the_file_and_what_to_do(tiny_dataset):
    _, config = tiny_dataset
    run = run_recbole_tpad("GRU4Rec", "tiny", config_dict=config)
    trainer, path = run["trainer"], run["trainer"].saved_model_file
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(DataError, match="Delete it and train again") as error:
        trainer.evaluate(run["test_data"], load_best_model=True, model_file=path, show_progress=False)
    assert path in str(error.value) and "truncated" in str(error.value)
    with pytest.raises(DataError, match="missing"):
        trainer.resume_checkpoint(path + ".gone")


def test_temporaries_of_dead_or_old_writers_are_removed_and_logged(tmp_path, caplog):
    dead, alive = _dead_pid(), os.getppid()
    (tmp_path / f".views.tmp-{dead}-ab12").mkdir()             # a killed feature extraction
    (tmp_path / f".checkpoint.pt.tmp-{dead}").write_bytes(b"x")  # a killed checkpoint save
    (tmp_path / f"correlation-1.npz.tmp-{dead}.npz").write_bytes(b"x")
    (tmp_path / f".old.tmp-{alive}-cd34").write_bytes(b"x")     # a live pid, but hours old: reused
    os.utime(tmp_path / f".old.tmp-{alive}-cd34", (time.time() - 7200,) * 2)
    (tmp_path / f".busy.tmp-{alive}-ef56").write_bytes(b"x")    # another process writing right now
    (tmp_path / f".mine.tmp-{os.getpid()}-0000").write_bytes(b"x")
    (tmp_path / "model.pth").write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([f".views.tmp-{dead}-ab12", f".checkpoint.pt.tmp-{dead}",
                                      f"correlation-1.npz.tmp-{dead}.npz", f".old.tmp-{alive}-cd34"])
    assert sorted(os.listdir(tmp_path)) == sorted([f".busy.tmp-{alive}-ef56", f".mine.tmp-{os.getpid()}-0000",
                                                   "model.pth"])
    assert caplog.text.count("died while writing it") == 4


def test_stage_checkpoint_write_removes_a_torn_one_left_by_a_kill(tmp_path):
    from recbole_tpad.stages.stage_cache import StageStore

    store = StageStore(tmp_path, "knowledge", {"k": 1})
    store.partial.mkdir(parents=True)
    torn = store.partial / f".checkpoint.pt.tmp-{_dead_pid()}"
    torn.write_bytes(b"PK\x03\x04 half a zip")
    store.save_checkpoint(1, 4, {"w": torch.ones(2)})
    assert not torn.exists() and store.load_checkpoint(4)[0] == 1


def test_truncated_correlation_cache_is_refit_not_trusted(tmp_path):
    view, valid = torch.randn(40, 20), torch.arange(40) > 0
    first = CorrelationTeacher.from_view(view, valid, 8, 2, 4, 2000, seed=0, cache_dir=str(tmp_path))
    path = next(tmp_path.glob("correlation-*/codes.npz"))
    path.write_bytes(path.read_bytes()[:-40])  # still starts like a zip
    assert CorrelationTeacher._load(str(path), 40, 8, 4, 2) is None
    again = CorrelationTeacher.from_view(view, valid, 8, 2, 4, 2000, seed=0, cache_dir=str(tmp_path))
    assert torch.equal(first.teacher, again.teacher)
    np.testing.assert_array_equal(first.centroids, again.centroids)
