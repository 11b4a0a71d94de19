"""The real offline default (SmolLM2-135M-Instruct from GGUF + EfficientNet-Lite0) on a handful of items.

The GGUF is converted once per machine into the feature cache (~20-40 s the first time).
"""

import types

import numpy as np
import pytest

from conftest import write_tiny_dataset
from recbole_tpad.errors import ConfigError
from recbole_tpad.features.build import build_backbone
from recbole_tpad.features.config import FeaturesConfig
from recbole_tpad.features.items import load_items


def test_default_backbone_encodes_real_items(tmp_path):
    folder = write_tiny_dataset(str(tmp_path), n_items=4, n_sessions=2)
    tokens = ["[PAD]", "i000", "i001", "i002", "i003"]
    config = {"data_path": folder, "dataset": "tiny", "ITEM_TEXT_FIELDS": ["title", "brand", "categories"],
              "IMAGE_FIELD": "image"}
    dataset = types.SimpleNamespace(iid_field="item_id", field2id_token={"item_id": np.array(tokens)})
    items = load_items(config, dataset, FeaturesConfig.from_config(config))
    items.records[4].image_path = None  # one text-only item
    backbone = build_backbone(FeaturesConfig.from_config({}))  # the default: no path given, offline
    assert backbone.describe()["image_encoder"] == "efficientnet-lite0" and backbone.hidden_size == 576
    views = backbone.encode_items(items, batch_size=2, progress=False)
    assert views["fused"].shape == (5, 576) and views["image_mask"].tolist() == [False, True, True, True, False]
    for name in ("text", "fused"):
        assert np.isfinite(views[name]).all() and not views[name][0].any()
        assert np.linalg.norm(views[name][1] - views[name][2]) > 1e-3  # different items, different features
    assert not views["image"][4].any() and np.abs(views["image"][1]).sum() > 0


def test_unavailable_model_names_the_key(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="feature_llm_path"):
        build_backbone(FeaturesConfig.from_config({"feature_backbone": "causal", "feature_llm_path": "no-such-org/no-such-model"}))
    with pytest.raises(ConfigError, match="feature_mllm_path"):
        build_backbone(FeaturesConfig.from_config({"feature_backbone": "mllm", "feature_mllm_path": "no-such-org/no-such-vlm"}))
