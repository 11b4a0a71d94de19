"""On-disk results of TPAD's training stages: keyed, atomic, validated, resumable.

A stage's result lives in ``<root>/<stage>-<key hash>/``: peft adapter folders, the projector and
the alignment heads as safetensors, and ``manifest.json`` written last with the key it was made
from and the sha256 of every file. The folder is built under a temporary name and moved into place
with ``os.replace``, so a stage that dies halfway never leaves a readable result; it leaves at most
``<root>/<stage>-<key hash>.partial/checkpoint.pt`` (itself written through a temporary file) with a
step counter that is validated before a restart resumes from it.
"""

import hashlib
import json
import os
import shutil
import time
from logging import getLogger
from pathlib import Path

import torch

from recbole_tpad.atomic import atomic_path, remove_stale_temps, temp_name
from recbole_tpad.features.cache import file_sha256

MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


def stable_hash(obj):
    """sha256 of a JSON-serializable object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _atomic_write_bytes(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class StageStore:
    """The cache folder and the resumable checkpoint of one stage.

    Args:
        root (str | Path): the stages' cache root.
        stage (str): stage name, e.g. ``'knowledge'``.
        key (dict): everything the result is made from (data hashes, backbone, stage config, the
            previous stage's hash); its hash names the folder.
    """

    def __init__(self, root, stage, key):
        self.root = Path(root)
        self.stage = stage
        self.key = key
        self.key_hash = stable_hash({"format": FORMAT_VERSION, "stage": stage, "key": key})[:20]
        self.folder = self.root / f"{stage}-{self.key_hash}"
        self.partial = self.root / f"{stage}-{self.key_hash}.partial"
        self.logger = getLogger()

    # ---- complete results -------------------------------------------------------------------
    def manifest(self):
        """The validated manifest, or ``None`` when the result is missing, foreign or damaged."""
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.logger.warning(f"stage cache {self.folder}: unreadable manifest ({e}); it will be rebuilt")
            return None
        if manifest.get("key_hash") != self.key_hash or not manifest.get("complete"):
            self.logger.warning(f"stage cache {self.folder}: manifest does not match its key; it will be rebuilt")
            return None
        for name, digest in manifest.get("files", {}).items():
            file = self.folder / name
            if not file.is_file() or file_sha256(file) != digest:
                self.logger.warning(f"stage cache {self.folder}: {name} is missing or changed; it will be rebuilt")
                return None
        return manifest

    def is_complete(self):
        return self.manifest() is not None

    def commit(self, write, info=None):
        """Build the result with ``write(tmp_folder)`` and move it into place atomically.

        Args:
            write (callable): writes every file of the result into the folder it is given.
            info (dict, optional): extra manifest entries (losses, timings, ...).

        Returns:
            dict: the manifest.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root)  # result folders of stages killed mid-commit
        tmp = temp_name(self.folder)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            files = {
                str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            manifest = {
                "format": FORMAT_VERSION,
                "stage": self.stage,
                "key_hash": self.key_hash,
                "key": self.key,
                "files": files,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "complete": True,
                **(info or {}),
            }
            _atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2, default=str).encode("utf-8"))
            if self.folder.exists():  # a damaged or foreign result under our name
                shutil.rmtree(self.folder)
            os.replace(tmp, self.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.clear_checkpoint()
        return manifest

    # ---- resumable checkpoints --------------------------------------------------------------
    def save_checkpoint(self, step, total_steps, state):
        """Write ``state`` (a dict of tensors / numbers / lists) as the checkpoint after ``step``."""
        payload = {"key_hash": self.key_hash, "step": int(step), "total_steps": int(total_steps), "state": state}
        with atomic_path(self.partial / CHECKPOINT) as tmp:  # also removes a checkpoint torn by a kill
            torch.save(payload, tmp)

    def load_checkpoint(self, total_steps):
        """The state of a valid checkpoint of this key and schedule, as ``(step, state)``, else ``None``."""
        path = self.partial / CHECKPOINT
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start over
            self.logger.warning(f"stage checkpoint {path} is unreadable ({e}); the stage restarts")
            return None
        step = payload.get("step") if isinstance(payload, dict) else None
        if (
            payload.get("key_hash") != self.key_hash
            or payload.get("total_steps") != total_steps
            or not isinstance(step, int)
            or not 0 < step < total_steps
            or not isinstance(payload.get("state"), dict)
        ):
            self.logger.warning(f"stage checkpoint {path} does not match this run (step {step!r}); the stage restarts")
            return None
        return step, payload["state"]

    def clear_checkpoint(self):
        shutil.rmtree(self.partial, ignore_errors=True)
