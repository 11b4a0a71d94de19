"""Atomic writes: a temporary name beside the target, ``os.replace``, and the clean-up of leftovers.

The plugin's one atomic writer (:func:`atomic_path`): the keyed cache store (``recbole_tpad.store``),
checkpoints, sidecars and result tables all write through it. Every file or folder is first written under ``.<name>.tmp-<pid>-...`` in its
final folder and then moved into place, so a reader sees the old file or the new one, never half
of one. A run killed in between leaves the temporary behind; :func:`remove_stale_temps` deletes
those whose process is gone (or that are older than an hour, in case the pid was reused) the next
time something is written to that folder, and logs each one.
NOTE: the pid test assumes one machine writes a cache folder at a time (no shared network cache).
"""

import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from logging import getLogger
from pathlib import Path

TEMP_MARK = re.compile(r"\.tmp-(\d+)")  # the pid of the writer follows the mark
STALE_AFTER_S = 3600  # no write of ours holds a temporary this long


def temp_name(path):
    """A temporary path beside ``path``, marked with this process's pid."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder, max_age=STALE_AFTER_S):
    """Delete the temporaries in ``folder`` left by processes that died mid-write; return their names."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in os.scandir(folder):
        mark = TEMP_MARK.search(entry.name)
        if mark is None or int(mark.group(1)) == os.getpid():
            continue
        pid = int(mark.group(1))
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:  # its writer just finished
            continue
        if _alive(pid) and age < max_age:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(entry.name)
        getLogger().warning(f"Removed {entry.path}: a temporary left by process {pid}, which died while writing it")
    return removed


@contextmanager
def atomic_path(path):
    """Yield a temporary path to write (a file, or a folder the caller makes); on success it replaces
    ``path`` (a folder replaces the folder there), on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():  # a damaged or older folder under the same name
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
