"""A built wheel carries the plugin's properties and command; an installed copy runs with them."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import write_tiny_dataset

import recbole_tpad

REPO = Path(recbole_tpad.__file__).resolve().parents[1]
PROPERTIES = REPO / "properties"

# Run inside the installed copy, from a folder that is neither the repository nor the copy.
CONFIG_OF_INSTALLED_COPY = """
import json, sys
import recbole_tpad
from recbole_tpad.quick_start import load_config
from recbole_tpad.utils import PROPERTIES_DIR

config = load_config("TPAD", "tiny", config_dict={"data_path": sys.argv[1]})
print(json.dumps({"package": recbole_tpad.__file__, "properties": str(PROPERTIES_DIR), "views": config["views"]}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy of what setup.py ships: setuptools writes build/ and *.egg-info beside it.
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "README.md", "run_recbole_tpad.py"):
        shutil.copy(REPO / name, source)
    for name in ("recbole_tpad", "properties"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("recbole_tpad-*.whl")
    return built


def test_wheel_carries_the_properties_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    yaml_files = {f"recbole_tpad/properties/{p.relative_to(PROPERTIES).as_posix()}" for p in PROPERTIES.rglob("*.yaml")}
    assert {"recbole_tpad/properties/overall.yaml", "recbole_tpad/properties/model/TPAD.yaml"} <= yaml_files
    assert yaml_files <= names
    assert any(name.endswith(".data/scripts/run_recbole_tpad.py") for name in names)
    assert not any(name.startswith(("tests/", "bench/", "properties/")) for name in names)


def test_installed_copy_reads_its_own_properties_and_refuses_a_missing_one(wheel, tmp_path):
    installed = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(installed)  # what pip does with a pure-Python wheel's package files
    write_tiny_dataset(str(tmp_path / "data"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run():
        return subprocess.run([sys.executable, "-c", CONFIG_OF_INSTALLED_COPY, str(tmp_path / "data")], cwd=elsewhere,
                              env=dict(os.environ, PYTHONPATH=str(installed)), capture_output=True, text=True,
                              timeout=300)

    result = run()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(installed)
    assert Path(report["properties"]) == installed / "recbole_tpad" / "properties"
    assert report["views"] == yaml.safe_load((PROPERTIES / "model" / "TPAD.yaml").read_text())["views"]

    (installed / "recbole_tpad" / "properties" / "model" / "TPAD.yaml").unlink()
    result = run()
    assert result.returncode != 0 and "TPAD.yaml is missing" in result.stderr and "pip install ." in result.stderr
