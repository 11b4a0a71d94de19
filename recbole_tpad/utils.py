"""Lookups that try the plugin first and fall back to RecBole; where the properties and data live."""

import importlib
from pathlib import Path

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_tpad.errors import DataError

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
# The plugin's YAML: properties/ beside the package in a checkout (and an editable install); a
# wheel carries the same folder inside the package (setup.py maps it to recbole_tpad/properties).
PROPERTIES_DIR = next((d for d in (PACKAGE_ROOT / "properties", REPO_ROOT / "properties") if d.is_dir()),
                      REPO_ROOT / "properties")
# Where a dataset is looked for when the user sets no `data_path`, in this order.
DEFAULT_DATA_DIRS = (REPO_ROOT / "dataset_atomic", REPO_ROOT.parent / "shared" / "datasets")


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset folder was found in none of the places searched."""


def get_model(model_name):
    """Return the model class: ``recbole_tpad.model.<name lower>`` first, then RecBole's."""
    module_path = f"recbole_tpad.model.{model_name.lower()}"
    if importlib.util.find_spec(module_path) is not None:
        return getattr(importlib.import_module(module_path), model_name)
    return recbole_get_model(model_name)


def get_trainer(model_type, model_name):
    """Return ``<model_name>Trainer`` from ``recbole_tpad.trainer`` if it exists, else RecBole's."""
    plugin_trainers = importlib.import_module("recbole_tpad.trainer")
    trainer = getattr(plugin_trainers, f"{model_name}Trainer", None)
    return trainer if trainer is not None else recbole_get_trainer(model_type, model_name)


def resolve_data_path(dataset, data_path=None):
    """Return the folder that *contains* ``<dataset>/`` (RecBole's ``data_path`` meaning).

    An explicit ``data_path`` wins; it may also name the dataset folder itself. Otherwise
    ``dataset_atomic/`` and then ``../shared/datasets/`` are searched. Nothing is downloaded.
    """
    if data_path:
        given = Path(data_path).expanduser().resolve()
        candidates = [given]
        if given.name == dataset:
            candidates.append(given.parent)
    else:
        candidates = list(DEFAULT_DATA_DIRS)
    for parent in candidates:
        if (parent / dataset / f"{dataset}.inter").is_file():
            return str(parent)
    looked = "\n".join(f"  - {parent / dataset}/{dataset}.inter" for parent in candidates)
    raise DatasetNotFoundError(
        f"Dataset '{dataset}' not found. Looked for:\n{looked}\n"
        "Put its atomic files there or pass --data_path=DIR (DIR holds the '<dataset>/' folder). "
        "Datasets are never downloaded."
    )
