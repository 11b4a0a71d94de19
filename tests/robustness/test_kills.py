"""A TPAD run SIGKILLed in each stage, then started again, ends with the uninterrupted run's metrics.

One chain of child processes on one cache (tests/robustness/killed_run.py: each kills itself with
SIGKILL at a chosen point): killed in stage 1, the rerun resumes stage 1 and is killed in stage 2, that rerun resumes
stage 2 and is killed while encoding items, and so on until a run finishes. Each killed process
leaves what a power cut would (a torn checkpoint, a half-written cache folder); each rerun must
remove it, never read it, and the last must report the same test metrics as a run never killed.
"""

import json
import signal

import torch

from recbole_tpad.quick_start import run_recbole_tpad
from tests.robustness.killed_run import run_in_child
from tests.stages.stage_keys import STAGE_KEYS

STALE_REMOVED = "died while writing it"
# fault -> what its killed run left behind (a glob under the cache or checkpoint dir), and what
# the next run must log when it meets that state again
CHAIN = [
    ("stage1", "stages/tiny/knowledge-*.partial/.checkpoint.pt.tmp-*", "Knowledge Acquisition: resuming at step 1/4"),
    ("stage2", "stages/tiny/distillation-*.partial/.checkpoint.pt.tmp-*", "Transition Distillation: resuming at step 1/4"),
    ("encode", None, "Encoded 30 items"),
    ("views", "item_views/tiny/.*.tmp-*", STALE_REMOVED),
    ("train", "saved/.TPAD-*.pth.tmp-*", STALE_REMOVED),
]


def _config(tiny_dataset, tmp_path, cache):
    _, config = tiny_dataset
    return dict(config, **STAGE_KEYS, stage1_epochs=2, stage2_epochs=2, stage_checkpoint_steps=1,
                feature_batch_size=8, epochs=2, state="INFO", feature_cache_dir=str(cache),
                checkpoint_dir=str(tmp_path / "saved"))


def test_killed_at_every_stage_then_rerun_gives_the_uninterrupted_metrics(tiny_dataset, tmp_path):
    clean = run_recbole_tpad("TPAD", "tiny", config_dict=_config(tiny_dataset, tmp_path, tmp_path / "clean"))
    cache = tmp_path / "cache"
    config = _config(tiny_dataset, tmp_path, cache)
    log_file, result_file = tmp_path / "run.log", tmp_path / "result.json"

    left_behind, expect = None, None
    for fault, leftover, next_logs in CHAIN + [(None, None, None)]:
        code = run_in_child(config, fault, log_file, result_file)
        log = log_file.read_text()
        if expect is not None:  # what the previous kill left was met, and never read as a result
            assert expect in log, f"after the kill in {previous}: expected '{expect}' in the rerun's log\n{log[-3000:]}"
            assert "restarts" not in log and "Ignoring damaged" not in log, log[-3000:]
            assert all(not path.exists() for path in left_behind), f"left by the kill in {previous}: {left_behind}"
        if fault is None:
            assert code == 0, log[-3000:]
            break
        assert code == -signal.SIGKILL, f"{fault}: the fault did not fire\n{log[-3000:]}"
        left_behind = list((tmp_path if leftover and leftover.startswith("saved") else cache).glob(leftover or "-"))
        assert bool(left_behind) == bool(leftover), f"{fault}: expected a torn temporary {leftover}"
        if fault.startswith("stage"):  # the torn one is a temporary: the last complete checkpoint is intact
            checkpoint = left_behind[0].parent / "checkpoint.pt"
            assert torch.load(checkpoint, weights_only=True)["step"] == 1
        previous, expect = fault, next_logs
    assert json.loads(result_file.read_text()) == clean["test_result"]
