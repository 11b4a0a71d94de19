"""Cached item views: extraction, reuse, invalidation, damaged and interrupted writes, the command."""

import json

import numpy as np
import pytest
from recbole.data import create_dataset

from recbole_tpad.features import cache as cache_module
from recbole_tpad.features.__main__ import main as features_main
from recbole_tpad.features.build import build_backbone
from recbole_tpad.features.cache import get_item_views, read_cache
from recbole_tpad.features.config import FeaturesConfig
from recbole_tpad.quick_start import load_config
from recbole_tpad.store import CacheEntry


@pytest.fixture
def setup(tiny_dataset, tmp_path):
    root, config_dict = tiny_dataset
    config_dict.update(feature_backbone="tiny-llama", feature_cache_dir=str(tmp_path / "cache"), feature_dtype="fp32")
    config = load_config("SASRec", "tiny", config_dict=config_dict)
    return config, create_dataset(config), root, config_dict


def test_extract_then_reuse(setup, monkeypatch):
    config, dataset, _, _ = setup
    views = get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False)
    n = dataset.item_num
    assert set(views.views) == {"text", "image", "fused"}
    for array in views.views.values():
        assert array.shape == (n, 64) and array.dtype == np.float32
        assert not array[0].any()  # [PAD] row
        assert np.abs(array[1:]).sum(1).min() > 0  # every item has an image here, so every view is set
    assert views.image_mask[0] == False and views.image_mask[1:].all()  # noqa: E712
    manifest = views.manifest
    assert manifest["num_items"] == n and manifest["dim"] == 64 and manifest["item_ids"][0] == "[PAD]"
    assert manifest["item_ids"] == list(dataset.field2id_token["item_id"])
    assert manifest["backbone"]["kind"] == "causal" and "tiny.item" in manifest["data_hashes"]
    assert "Item: {title}." in manifest["prompt"]["template"]

    def no_encoding(*args, **kwargs):
        raise AssertionError("a valid cache must be reused, not re-encoded")

    monkeypatch.setattr(cache_module, "read_cache", read_cache)
    monkeypatch.setattr("recbole_tpad.features.build.build_backbone", no_encoding)
    again = get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False)
    assert again.folder == views.folder
    np.testing.assert_array_equal(again.views["fused"], views.views["fused"])


def test_changes_invalidate(setup, tmp_path):
    config, dataset, root, config_dict = setup
    first = get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False).folder
    # a prompt setting changes the key
    config2 = load_config("SASRec", "tiny", config_dict=dict(config_dict, feature_summary_suffix=" Summary:"))
    assert get_item_views(config2, dataset, FeaturesConfig.from_config(config2), progress=False).folder != first
    # a data file changes the key
    item_file = root / "tiny" / "tiny.item"
    item_file.write_text(item_file.read_text().replace("Brand1", "Brand9"))
    third = get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False)
    assert third.folder != first and third.manifest["data_hashes"] != read_cache(first).manifest["data_hashes"]


def test_adapter_weights_are_part_of_the_key(setup):
    config, dataset, _, _ = setup
    backbone = build_backbone(config)
    backbone.add_adapter("K")
    base = get_item_views(config, dataset, FeaturesConfig.from_config(config), backbone=backbone, progress=False)
    with_k = get_item_views(config, dataset, FeaturesConfig.from_config(config), backbone=backbone, adapter="K", progress=False)
    assert with_k.folder != base.folder and with_k.manifest["adapter"] == "K"
    import torch

    with torch.no_grad():
        for p in backbone.adapter_parameters("K"):
            p.add_(0.3)
    changed = get_item_views(config, dataset, FeaturesConfig.from_config(config), backbone=backbone, adapter="K", progress=False)
    assert changed.folder != with_k.folder
    assert np.abs(changed.views["fused"] - with_k.views["fused"]).max() > 1e-4


def test_damaged_cache_is_rebuilt(setup):
    config, dataset, _, _ = setup
    views = get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False)
    good = views.views["text"].copy()
    (views.folder / "text.npy").write_bytes(b"\x93NUMPY garbage")
    assert read_cache(views.folder, views.manifest["key"]) is None
    rebuilt = get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False)
    np.testing.assert_allclose(rebuilt.views["text"], good, atol=1e-5)
    manifest = json.loads((views.folder / "manifest.json").read_text())
    manifest["num_items"] += 1
    (views.folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_cache(views.folder, manifest["key"]) is None


def test_interrupted_write_leaves_nothing_readable(setup, monkeypatch):
    config, dataset, _, _ = setup
    calls = []
    real_save = np.save

    def failing_save(path, array, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(cache_module.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False)
    monkeypatch.setattr(cache_module.np, "save", real_save)
    parent = FeaturesConfig.from_config(config).cache_root / "item_views" / "tiny"
    assert not parent.exists() or not [p for p in parent.iterdir()]  # no temp or final folder left
    assert get_item_views(config, dataset, FeaturesConfig.from_config(config), progress=False).manifest["num_items"] == dataset.item_num


def test_command_prints_the_folder_last(setup, capsys, tmp_path):
    _, _, root, _ = setup
    code = features_main(["--dataset=tiny", f"--data_path={root}", "--feature_backbone=tiny-llama",
                          f"--feature_cache_dir={tmp_path / 'cli_cache'}", "--show_progress=False",
                          "--IMAGE_FIELD=image", "--ITEM_TEXT_FIELDS=[title, brand]", "--USER_ID_FIELD=session_id",
                          "--load_col={'inter': ['session_id', 'item_id', 'timestamp']}"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert read_cache(last) is not None and str(tmp_path / "cli_cache") in last


def test_encoding_killed_halfway_resumes_from_its_checkpoint_to_the_same_views(setup, tmp_path, monkeypatch, caplog):
    from recbole_tpad.features import encode as encode_module

    _, dataset, _, config_dict = setup
    config_dict = dict(config_dict, feature_batch_size=4)  # 8 batches of the tiny dataset's 30 items
    clean_config = load_config("SASRec", "tiny", config_dict=dict(config_dict, feature_cache_dir=str(tmp_path / "clean")))
    clean = get_item_views(clean_config, dataset, FeaturesConfig.from_config(clean_config), progress=False)
    config = load_config("SASRec", "tiny", config_dict=config_dict)
    settings = FeaturesConfig.from_config(config)
    monkeypatch.setattr(CacheEntry, "checkpoint_every_s", 0)  # a checkpoint after every batch
    as_numpy, calls = encode_module.as_numpy, []

    def dies_in_fourth_batch(tensor):
        calls.append(1)
        if len(calls) == 3 * 3 + 1:  # three views a batch: the first view of the 4th batch
            raise KeyboardInterrupt
        return as_numpy(tensor)

    monkeypatch.setattr(encode_module, "as_numpy", dies_in_fourth_batch)
    with pytest.raises(KeyboardInterrupt), caplog.at_level("INFO"):
        get_item_views(config, dataset, settings, progress=False)
    partial = list((tmp_path / "cache").rglob("*.partial"))
    assert len(partial) == 1 and (partial[0] / "checkpoint.pt").is_file()
    # without a progress bar the log shows how far the build got
    assert "checkpoint after step 3 of 8 (a cut-off run resumes here)" in caplog.text
    caplog.clear()

    rerun = []
    monkeypatch.setattr(encode_module, "as_numpy", lambda tensor: rerun.append(1) or as_numpy(tensor))
    with caplog.at_level("INFO"):
        views = get_item_views(config, dataset, settings, progress=False)
    assert "Encoding items: resuming at batch 3/8" in caplog.text
    assert len(rerun) == (8 - 3) * 3  # only the batches after the checkpoint are encoded again
    assert not partial[0].exists()  # the committed entry clears its checkpoint
    for name in ("text", "image", "fused"):
        np.testing.assert_allclose(views.views[name], clean.views[name], rtol=1e-5, atol=1e-5)
