"""A TPAD run in a child process that kills itself with SIGKILL at a chosen point (issue #7).

FAULT (None: run to the end and write the test metrics as JSON):
    stage1, stage2  killed while writing the stage's 2nd resumable checkpoint, which is left torn
    encode          killed at the 2nd batch of item encoding (stage 3)
    views           killed while writing the item-view cache, after its first array
    train           killed while saving RecBole's first downstream checkpoint, which is left torn
The child is forked from the test process (no second start-up of torch and transformers: the
chain of runs stays fast) and dies by SIGKILL at that exact point, so the kill is deterministic
and nothing (no ``finally``, no ``atexit``) gets to clean up: what is left on disk is what a
power cut or the OOM killer would leave.
"""

import json
import multiprocessing
import os
import signal
import sys
import traceback
from pathlib import Path

from recbole_tpad.quick_start import run_recbole_tpad


def _die(torn=None):
    if torn is not None:  # the file being written when the process died: half of it on disk
        with open(torn, "r+b") as f:
            f.truncate(os.path.getsize(torn) // 2)
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _counting(real, matches, nth, torn):
    calls = []

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if matches(*args):
            calls.append(1)
            if len(calls) == nth:
                _die(args[1] if torn else None)
        return result

    return wrapper


def arm(fault):
    """Patch the one function after whose ``nth`` matching call the process dies."""
    import numpy as np
    import torch

    from recbole_tpad.stages import item_states

    def stage_checkpoint(prefix):
        return lambda obj, f: Path(f).parent.name.startswith(prefix) and Path(f).parent.name.endswith(".partial")

    if fault in ("stage1", "stage2"):
        prefix = "knowledge-" if fault == "stage1" else "distillation-"
        torch.save = _counting(torch.save, stage_checkpoint(prefix), 2, torn=True)
    elif fault == "train":
        torch.save = _counting(torch.save, lambda obj, f: ".pth.tmp-" in Path(f).name, 1, torn=True)
    elif fault == "encode":
        item_states.as_numpy = _counting(item_states.as_numpy, lambda tensor: True, 4, torn=False)  # 3 views a batch
    elif fault == "views":
        np.save = _counting(np.save, lambda f, array: ".tmp-" in Path(f).parent.name, 1, torn=False)
    elif fault is not None:
        raise SystemExit(f"unknown fault {fault!r}")


def _child(config, fault, log_file, result_file):
    # the run logs to a file the test reads; the fork's pytest capture streams are not ours
    sys.stdout = sys.stderr = open(log_file, "w", buffering=1)
    code = 1
    try:
        arm(fault)
        run = run_recbole_tpad("TPAD", "tiny", config_dict=config)
        Path(result_file).write_text(json.dumps(run["test_result"]))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)  # never back into pytest's code in the child


def run_in_child(config, fault, log_file, result_file, timeout=300):
    """Fork, run TPAD with ``fault`` armed in the child, and return its exit code (-9: SIGKILL)."""
    child = multiprocessing.get_context("fork").Process(target=_child, args=(config, fault, log_file, result_file))
    child.start()
    child.join(timeout)
    if child.exitcode is None:  # hung: fail, do not wait forever
        child.kill()
        child.join()
        raise TimeoutError(f"the run with fault {fault} did not end in {timeout} s")
    return child.exitcode
