"""Shared fixtures: small atomic datasets the tests write themselves."""

import os
import random
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from recbole_tpad import compat  # noqa: E402

compat.apply()  # RecBole 1.2.1 shims: tests call RecBole directly, not only through the runner

# The tests run tiny tensors: one thread avoids OpenMP's hand-off cost, which dominates them
# (and explodes when the cores are shared).
torch.set_num_threads(1)

COLOURS = ["Black", "White", "Red", "Blue", "Green"]
KINDS = ["Dress", "Shirt", "Trousers", "Shoes", "Hat", "Scarf"]


def write_tiny_dataset(root, name="tiny", n_items=30, n_sessions=60, with_images=True, seed=0):
    """Write ``root/name/name.{inter,item}`` (and ``images/``) and return the dataset folder.

    Sessions walk the catalogue in small steps (item i is mostly followed by i+1), so a model
    can learn transitions; titles and colours are real words so prompts look like real items.
    """
    rng = random.Random(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as f:
        f.write("session_id:token\titem_id:token\ttimestamp:float\n")
        for s in range(n_sessions):
            item = rng.randrange(n_items)
            for t in range(rng.randint(3, 7)):
                f.write(f"s{s:03d}\ti{item:03d}\t{1000 * s + t}\n")
                item = (item + rng.choice([1, 1, 1, 2])) % n_items
    if with_images:
        from PIL import Image

        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as f:
        f.write("item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\timage:token\n")
        for i in range(n_items):
            kind, colour = KINDS[i % len(KINDS)], COLOURS[i % len(COLOURS)]
            image = f"images/i{i:03d}.jpg" if with_images else ""
            if with_images:
                Image.new("RGB", (32, 48), (40 * (i % 6), 25 * (i % 10), 200)).save(os.path.join(folder, image))
            f.write(f"i{i:03d}\t{colour} {kind} {i}\tWomen {kind}s\tBrand{i % 4}\t{image}\n")
    return folder


def tiny_config(data_root, tmp_path, name="tiny", **overrides):
    """Config dict for a run on ``write_tiny_dataset`` output: one fast epoch, no progress bars."""
    config = {
        "data_path": str(data_root),
        "USER_ID_FIELD": "session_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["session_id", "item_id", "timestamp"], "item": ["item_id", "title", "categories", "brand"]},
        "ITEM_TEXT_FIELDS": ["title", "brand", "categories"],
        "IMAGE_FIELD": "image",
        "MAX_ITEM_LIST_LENGTH": 10,
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved"),
        "state": "WARNING",
    }
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch):
    # RecBole writes ./log and ./log_tensorboard relative to the working directory.
    monkeypatch.chdir(tmp_path)
    # temporary folders (the benchmark's work folder, bench/run_benchmark.py) go where pytest cleans up
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def tiny_dataset(tmp_path):
    """(data_root, config_dict) for a tiny dataset with text and images."""
    root = tmp_path / "data"
    write_tiny_dataset(str(root))
    return root, tiny_config(root, tmp_path)
