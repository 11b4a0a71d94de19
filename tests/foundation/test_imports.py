"""Importing the package changes nothing in RecBole, the entry points apply the shims, and no module
imports itself back through another."""

import ast
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


def import_graph(package_dir):
    """``{module: modules of the package it imports}``, from every import statement (also inside functions)."""
    modules = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                imported.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                                for alias in node.names)
        graph[name] = sorted(imported & set(modules) - {name})
    return graph


def find_cycle(graph):
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for other in graph[module]:
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state and (cycle := visit(other, path + [other])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_import_graph_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_the_package_has_no_import_cycles():
    graph = import_graph(REPO / "recbole_tpad")
    assert {"recbole_tpad.features.encode", "recbole_tpad.testing.tiny_llm"} <= set(graph)
    assert "recbole_tpad.features.encode" in graph["recbole_tpad.features.backbone"]  # function-level imports count
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
