"""On-disk results of TPAD's training stages: entries of the keyed store, plus resumable checkpoints.

A stage's result is the store entry ``<root>/<stage>-<key>/`` (``recbole_tpad.store``: manifest,
atomic commit, validation on read): peft adapter folders, the projector and the alignment heads as
safetensors. A stage that dies halfway never leaves a readable result; it leaves at most
``<root>/<stage>-<key>.partial/checkpoint.pt`` (itself written through a temporary file) with a
step counter that is validated before a restart resumes from it.
"""

import shutil
from pathlib import Path

import torch

from recbole_tpad.atomic import atomic_path
from recbole_tpad.store import CacheEntry

CHECKPOINT = "checkpoint.pt"


class StageStore(CacheEntry):
    """The store entry and the resumable checkpoint of one stage.

    Args:
        root (str | Path): the stages' cache root.
        stage (str): stage name, e.g. ``'knowledge'``.
        key (dict): everything the result is made from (data hashes, backbone, stage config, the
            previous stage's key); its hash names the folder.
    """

    def __init__(self, root, stage, key):
        super().__init__(root, stage, key)
        self.stage = stage
        self.partial = Path(root) / f"{stage}-{self.key}.partial"

    def commit(self, write, info=None):
        manifest = super().commit(write, info)
        self.clear_checkpoint()
        return manifest

    # ---- resumable checkpoints --------------------------------------------------------------
    def save_checkpoint(self, step, total_steps, state):
        """Write ``state`` (a dict of tensors / numbers / lists) as the checkpoint after ``step``."""
        payload = {"key": self.key, "step": int(step), "total_steps": int(total_steps), "state": state}
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
            payload.get("key") != self.key
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
