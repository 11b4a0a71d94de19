"""TPAD end to end on a damaged copy of a dataset (bench/damage_dataset.py on the tiny fixture).

The same damage as the hm-fashion run of docs/robustness.md, at the fixture's size: images deleted,
truncated, emptied, garbage, CMYK / palette / alpha, another format than the extension, one
decompression bomb; a fifth of titles blank; invalid UTF-8; interactions with unknown items.
"""

import numpy as np

from bench.damage_dataset import damage_dataset
from recbole_tpad.features.cache import read_cache
from recbole_tpad.quick_start import run_recbole_tpad
from tests.stages.stage_keys import STAGE_KEYS

# damage kind -> the problem the item loader must count for it (None: the image is still used)
EXPECTED_PROBLEM = {
    "deleted": "image_missing", "truncated": "image_truncated", "emptied": "image_empty",
    "garbage": "image_unreadable", "bomb": "image_too_large",
    "cmyk": None, "palette": None, "alpha": None, "other_format": None,
}


def test_tpad_runs_to_the_end_on_a_damaged_copy_and_counts_every_fault(tiny_dataset, tmp_path, caplog):
    root, config = tiny_dataset
    damage = damage_dataset(root / "tiny", tmp_path / "damaged", seed=0, bad_utf8_items=3,
                            ghost_interactions=20, ghost_items=5)
    assert set(damage["images"]) == set(EXPECTED_PROBLEM)
    cache = tmp_path / "cache"
    config = dict(config, **STAGE_KEYS, data_path=str(tmp_path / "damaged"), feature_cache_dir=str(cache),
                  state="INFO")
    run = run_recbole_tpad("TPAD", "tiny", config_dict=config)
    assert all(np.isfinite(value) for value in run["test_result"].values())

    # every item got a finite representation (read_cache checks finiteness), text even without an image
    (folder,) = (cache / "item_views" / "tiny").iterdir()
    views = read_cache(folder)
    assert views is not None and views.manifest["num_items"] == run["train_data"].dataset.item_num
    assert np.abs(views.views["fused"][1:]).sum(1).min() > 0 and np.abs(views.views["text"][1:]).sum(1).min() > 0

    # each fault was counted as what it is, and the log says so
    problems, ids = views.manifest["problems"], views.manifest["item_ids"]
    for kind, problem in EXPECTED_PROBLEM.items():
        if problem is not None:
            assert problems.get(problem) == len(damage["images"][kind]), (kind, problems)
    assert problems["bad_utf8"] == 3
    unusable = {i for kind, p in EXPECTED_PROBLEM.items() if p for i in damage["images"][kind]}
    assert int(views.image_mask.sum()) == len(ids) - 1 - len(unusable)
    assert all(views.image_mask[ids.index(i)] for kind, p in EXPECTED_PROBLEM.items() if not p
               for i in damage["images"][kind])  # odd modes and formats are converted, not dropped
    assert "20 of" in caplog.text and "5 items missing from tiny.item; RecBole drops them" in caplog.text
    assert "3 lines not valid utf-8" in caplog.text
    assert f"image_missing={len(damage['images']['deleted'])}" in caplog.text and "image_too_large=1" in caplog.text
