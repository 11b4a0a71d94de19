"""One keyed store for every cache the plugin writes: key -> folder, manifest, atomic commit, validation.

An entry is the folder ``<root>/<kind>-<key>/``. ``key`` is :func:`stable_hash` of the kind and
of the entry's identity (a JSON-able dict of everything its content is made from: data hashes,
settings, the key of the entry it was made from). The folder holds the files its writer made and
``manifest.json``, written last, with the identity, the key and the size and sha256 of every file.

The folder is built under a temporary name (``recbole_tpad.atomic``, the plugin's one atomic
writer, which also removes the temporaries of writers killed mid-write) and moved into place, so a
reader sees a whole entry or none. On read the manifest is checked (present, complete, of this key,
every file listed there with its size and hash): an entry that fails is logged and built again,
never read. Work that builds an entry for long (a stage's training, the encoding of every item) may
keep a resumable checkpoint beside it, ``<root>/<kind>-<key>.partial/checkpoint.pt`` (written
through the atomic writer), with its step and step count, validated before a restart resumes from it
and removed once the entry is committed. Users of the store: item views (``features.cache``), stage results
(``stages.stage_cache``), the pointer to TPAD's final views (``stages.representation``),
correlation codes (``model.correlation_supervision``) and converted models (``features.sources``).
"""

import hashlib
import json
import shutil
import time
from logging import getLogger
from pathlib import Path

from recbole_tpad.atomic import atomic_path

MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 2  # bump when an entry's layout changes: every key changes with it
KEY_LENGTH = 20  # hex digits of a key (80 bits)


def stable_hash(obj, length=KEY_LENGTH):
    """The plugin's one key hash: sha256 of ``obj`` as canonical JSON (sorted keys, no spaces), hex prefix."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_sha256(path, chunk=1 << 20):
    """sha256 of a file's bytes (a content fingerprint, part of an identity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(*chunks):
    """sha256 of byte strings (arrays' ``tobytes()``, names) read one after another."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class CacheEntry:
    r"""One keyed entry of the store: ``<root>/<kind>-<key>/``.

    Args:
        root (str | Path): the folder holding entries of this kind.
        kind (str): what the entry holds, e.g. ``'knowledge'``, ``'views'``, ``'correlation'``.
        identity (dict): everything the content is made from; its :func:`stable_hash` is the key.
        verify (str): ``'sha256'`` (default) checks every file's size and hash on read; ``'size'``
            its size only (large, rarely edited entries: converted model weights).
    """

    checkpoint_every_s = 300  # seconds of work between two checkpoints of a long build (item encoding)

    def __init__(self, root, kind, identity, verify="sha256"):
        self.root = Path(root)
        self.kind = kind
        self.identity = identity
        self.key = stable_hash({"format": FORMAT_VERSION, "kind": kind, "identity": identity})
        self.folder = self.root / f"{kind}-{self.key}"
        self.partial = self.root / f"{kind}-{self.key}.partial"  # the resumable checkpoint's folder
        self.verify = verify
        self._saved_at = time.perf_counter()  # the clock of save_checkpoint_when_due
        self._checked = None  # (manifest mtime, manifest) of the last successful check
        self.logger = getLogger()

    def manifest(self):
        """The validated manifest, or ``None`` when the entry is missing, foreign or damaged (logged)."""
        path = self.folder / MANIFEST
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._checked is not None and self._checked[0] == stamp:
            return self._checked[1]
        manifest, problem = read_manifest(self.folder, self.key, self.verify)
        if problem:
            self.logger.warning(f"cache {self.folder}: {problem}; it will be rebuilt")
            return None
        self._checked = (stamp, manifest)
        return manifest

    def is_complete(self):
        return self.manifest() is not None

    def commit(self, write, info=None):
        """Build the entry with ``write(tmp_folder)`` and move it into place atomically.

        Args:
            write (callable): writes every file of the entry into the folder it is given.
            info (dict, optional): extra manifest entries (losses, timings, shapes, ...).

        Returns:
            dict: the manifest.
        """
        with atomic_path(self.folder) as tmp:  # also removes entries of writers killed mid-commit
            tmp.mkdir()
            write(tmp)
            files = {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest = {
                **(info or {}),
                "format": FORMAT_VERSION,
                "kind": self.kind,
                "key": self.key,
                "identity": self.identity,
                "files": files,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "complete": True,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
        self._checked = None
        self.clear_checkpoint()
        return manifest

    # ---- resumable checkpoints of the work that builds the entry ---------------------------------
    def save_checkpoint(self, step, total_steps, state):
        """Write ``state`` (a dict of tensors / numbers / lists) as the checkpoint after ``step``."""
        import torch

        payload = {"key": self.key, "step": int(step), "total_steps": int(total_steps), "state": state}
        with atomic_path(self.partial / CHECKPOINT) as tmp:  # also removes a checkpoint torn by a kill
            torch.save(payload, tmp)
        # the log's only sign of progress where the bar is off (show_progress: False, the benchmark's rows)
        self.logger.info(f"{self.folder.name}: checkpoint after step {step} of {total_steps} (a cut-off run resumes here)")

    def save_checkpoint_when_due(self, step, total_steps, state):
        """``save_checkpoint(step, total_steps, state())`` when ``checkpoint_every_s`` have passed since the
        last one (or since ``load_checkpoint``, where the work starts), never after the last step."""
        if step < total_steps and time.perf_counter() - self._saved_at >= self.checkpoint_every_s:
            self.save_checkpoint(step, total_steps, state())
            self._saved_at = time.perf_counter()

    def load_checkpoint(self, total_steps):
        """The state of a valid checkpoint of this key and schedule, as ``(step, state)``, else ``None``."""
        import torch

        self._saved_at = time.perf_counter()  # the work starts (again) here
        path = self.partial / CHECKPOINT
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start over
            self.logger.warning(f"checkpoint {path} is unreadable ({e}); the work restarts")
            return None
        step = payload.get("step") if isinstance(payload, dict) else None
        if (
            not isinstance(payload, dict)
            or payload.get("key") != self.key
            or payload.get("total_steps") != total_steps
            or not isinstance(step, int)
            or not 0 < step < total_steps
            or not isinstance(payload.get("state"), dict)
        ):
            self.logger.warning(f"checkpoint {path} does not match this run (step {step!r}); the work restarts")
            return None
        return step, payload["state"]

    def clear_checkpoint(self):
        shutil.rmtree(self.partial, ignore_errors=True)


def read_manifest(folder, key=None, verify="sha256"):
    """``(manifest, None)`` for a valid entry in ``folder`` (of ``key`` if given), else ``(None, why)``."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no manifest"
    except (OSError, ValueError) as error:
        return None, f"unreadable manifest ({error})"
    if not isinstance(manifest, dict) or not manifest.get("complete") or manifest.get("format") != FORMAT_VERSION:
        return None, "incomplete manifest, or one of another format"
    if key is not None and manifest.get("key") != key:
        return None, f"manifest of key {manifest.get('key')}, expected {key}"
    for name, expected in (manifest.get("files") or {}).items():
        file = folder / name
        if not file.is_file() or file.stat().st_size != expected.get("size"):
            return None, f"{name} is missing or has another size"
        if verify == "sha256" and file_sha256(file) != expected.get("sha256"):
            return None, f"{name} has changed"
    return manifest, None
