"""What a trained model needs beside its checkpoint to recommend: the sidecar file.

RecBole's checkpoint (``saved/<model>-<time>-<id>.pth``) holds the config and the trained weights.
To build the model again without reading and splitting the dataset, the runner writes
``saved/<model>-<time>-<id>.sidecar.pth`` beside it (atomically, before training starts):

- ``dataset``: the training split's RecBole dataset without its interactions (item-token mapping
  ``field2id_token``, item and user features, counts): what a model's ``__init__`` reads;
- ``item_views``: where the frozen item views of TPAD / KDSR are cached (folder and key of
  :func:`recbole_tpad.features.read_cache`) and TPAD's successor views file, ``None`` for a model without;
- ``knowledge_mllm``: TPAD's Knowledge-MLLM (the adapter ``K`` folder and the projector file) that
  encodes items added after training, and stage 2's folder (the Transfer-MLLM and its transition
  head, for their successor views), ``None`` for other models.

The sidecar is validated when read: a missing, damaged or foreign sidecar is a ``DataError``
naming the file and what to do.
"""

from pathlib import Path

import torch

from recbole_tpad.atomic import atomic_path
from recbole_tpad.errors import DataError

FORMAT_VERSION = 1
SUFFIX = ".sidecar.pth"


def sidecar_path(model_file):
    """``saved/X.pth`` -> ``saved/X.sidecar.pth``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.stem + SUFFIX)


def without_interactions(dataset):
    """A copy of a RecBole dataset with no interactions and no attached item views (small to save)."""
    from recbole.data.interaction import Interaction

    # cloned: a slice is a view, and torch.save would write the whole interaction table behind it
    light = dataset.copy(Interaction({k: v[:0].clone() for k, v in dataset.inter_feat.interaction.items()}))
    light.__dict__.pop("item_views", None)
    return light


def write_sidecar(model_file, config, train_dataset, item_views=None, knowledge_mllm=None):
    """Write the sidecar of ``model_file`` (which need not exist yet) and return its path."""
    path = sidecar_path(model_file)
    record = {
        "format": FORMAT_VERSION,
        "checkpoint": Path(model_file).name,
        "model": config["model"],
        "dataset_name": config["dataset"],
        "dataset": without_interactions(train_dataset),
        "item_views": None if item_views is None else _cache_pointer(item_views),
        "knowledge_mllm": knowledge_mllm,
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp, pickle_protocol=4)
    return path


def _cache_pointer(item_views):
    """Folder and key of cached views (``folder`` None for views made in memory, a script's own) and
    TPAD's successor views file (or None)."""
    key = item_views.manifest.get("key")
    successor = item_views.successor_file
    return {"folder": str(item_views.folder) if item_views.folder is not None and key else None, "key": key,
            "successor_file": str(successor) if successor is not None else None}


def read_sidecar(model_file):
    """The validated sidecar record of ``model_file``."""
    path = sidecar_path(model_file)
    if not path.is_file():
        raise DataError(
            f"{path} is missing: the checkpoint {model_file} has no sidecar. run_recbole_tpad writes it beside every "
            "checkpoint it saves; retrain with it (python run_recbole_tpad.py --model=... --dataset=...)."
        )
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
        missing = [k for k in ("format", "checkpoint", "model", "dataset_name", "dataset", "item_views") if k not in record]
    except Exception as error:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise DataError(f"{path} is damaged ({type(error).__name__}: {error}); retrain to write it again.") from error
    if missing or record["format"] != FORMAT_VERSION:
        raise DataError(f"{path} is not a recbole-tpad sidecar of format {FORMAT_VERSION} (missing {missing}); retrain.")
    if record["checkpoint"] != Path(model_file).name:
        raise DataError(
            f"{path} belongs to checkpoint {record['checkpoint']}, not {Path(model_file).name}: "
            "keep each checkpoint with its own sidecar (rename both together)."
        )
    return record
