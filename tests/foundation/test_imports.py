"""Importing the package changes nothing in RecBole; the entry points apply the shims."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import recbole_tpad
from recbole_tpad import compat

REPO = Path(recbole_tpad.__file__).resolve().parents[1]

# Imports every module of the package in a fresh interpreter, then reports what RecBole looks like
# before and after compat.apply(), and after a second call.
SHIM_STATE = """
import importlib, json, pkgutil
import numpy as np
aliases_before = set(np.__dict__)
import recbole_tpad
names = [m.name for m in pkgutil.walk_packages(recbole_tpad.__path__, "recbole_tpad.")]
for name in names:
    importlib.import_module(name)
import pandas, torch
import recbole.data.dataset.dataset as recbole_dataset
import recbole.trainer.trainer as recbole_trainer

def state():
    return {
        "numpy_aliases": sorted({"float_", "complex_", "unicode_", "bool8"} & (set(np.__dict__) - aliases_before)),
        "trainer_torch": type(recbole_trainer.torch).__name__,
        "dataset_pandas": type(recbole_dataset.pd).__name__,
        "dataset_open": "open" in vars(recbole_dataset),
        "download": recbole_dataset.Dataset._download.__module__,
    }

from recbole_tpad import compat
report = {"modules": len(names), "imported": state()}
compat.apply()
report["applied"] = state()
patched = (recbole_trainer.torch, recbole_dataset.pd, recbole_dataset.Dataset._download)
compat.apply()
report["same_after_second_call"] = patched == (recbole_trainer.torch, recbole_dataset.pd, recbole_dataset.Dataset._download)
print(json.dumps(report))
"""


def test_importing_every_module_patches_nothing_and_apply_is_idempotent():
    result = subprocess.run([sys.executable, "-c", SHIM_STATE], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] > 30
    assert report["imported"] == {"numpy_aliases": [], "trainer_torch": "module", "dataset_pandas": "module",
                                  "dataset_open": False, "download": "recbole.data.dataset.dataset"}
    assert report["applied"] == {"numpy_aliases": ["bool8", "complex_", "float_", "unicode_"],
                                 "trainer_torch": "_TorchForRecBoleTrainer",
                                 "dataset_pandas": "_PandasReadingWithReplacement", "dataset_open": True,
                                 "download": "recbole_tpad.compat"}
    assert report["same_after_second_call"]


class Applied(Exception):
    """Raised by the stand-in for compat.apply: proves an entry point called it first."""


@pytest.fixture
def apply_called(monkeypatch):
    def stand_in():
        raise Applied

    monkeypatch.setattr(compat, "apply", stand_in)
    monkeypatch.setattr(sys, "argv", ["entry-point"])


def _runner():
    from recbole_tpad.quick_start import run_recbole_tpad

    run_recbole_tpad("GRU4Rec", "tiny")


def _command_line():
    from recbole_tpad.__main__ import main

    main(["--model=GRU4Rec", "--dataset=tiny"])


def _features_command_line():
    from recbole_tpad.features.__main__ import main

    main(["--dataset=tiny"])


def _trainer():
    from recbole_tpad.trainer import KDSRTrainer

    KDSRTrainer(None, None)


def _bench(name):
    def run():
        sys.path.insert(0, str(REPO))
        try:
            __import__(f"bench.{name}", fromlist=["main"]).main()
        finally:
            sys.path.remove(str(REPO))

    run.__name__ = f"bench/{name}.py"
    return run


@pytest.mark.parametrize("entry_point", [_runner, _command_line, _features_command_line, _trainer] + [
    _bench(name) for name in ("run_one", "content_ranker", "downstream_speed", "bench_features", "bench_stages",
                              "bench_features_gpu")
], ids=lambda entry: entry.__name__)
def test_entry_points_apply_the_shims_first(apply_called, entry_point):
    with pytest.raises(Applied):
        entry_point()
