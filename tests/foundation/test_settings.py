"""Settings objects: defaults from the YAML only, unread keys named in a warning."""

import dataclasses

import pytest
import yaml

from recbole_tpad.features.config import FeaturesConfig
from recbole_tpad.precision import resolve_dtype
from recbole_tpad.settings import unread_keys, warn_unread_keys, yaml_defaults
from recbole_tpad.stages.config import _KEYS, StageConfig


@pytest.mark.parametrize("cls", [FeaturesConfig, StageConfig])
def test_settings_classes_hold_no_defaults_of_their_own(cls):
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(cls))


def test_features_defaults_are_the_yaml():
    settings = FeaturesConfig.from_config({"device": "cpu"})
    for key, value in yaml_defaults("features.yaml").items():
        name = key[len("feature_"):]
        if value is not None and key != "feature_dtype":
            assert getattr(settings, name) == value, key
    assert settings.dtype == resolve_dtype("auto", "cpu")  # the YAML's 'auto', resolved for this machine
    assert settings.device == "cpu" and settings.text_fields == []  # None: RecBole's device, ITEM_TEXT_FIELDS
    assert FeaturesConfig.from_config({"ITEM_TEXT_FIELDS": ["title"]}).text_fields == ["title"]
    assert {f"feature_{f.name}" for f in dataclasses.fields(FeaturesConfig)} == set(yaml_defaults("features.yaml"))


def test_stage_defaults_are_the_yaml():
    settings = StageConfig.from_config({"stage1_epochs": 3})
    assert settings.stage1_epochs == 3
    defaults = yaml_defaults("model/TPAD.yaml")
    assert all(getattr(settings, name) == defaults[key] for key, (name, _) in _KEYS.items() if key != "stage1_epochs")


def test_unread_keys_are_named(caplog, tmp_path):
    user_file = tmp_path / "mine.yaml"
    user_file.write_text(yaml.safe_dump({"stage1_epochs": 2, "stage1_epoch": 2}))
    overrides = {"feature_bakcbone": "tiny-llama", "epochs": 1, "backbone": "SASRec", "hidden_size": 8,
                 "MAX_ITEM_LIST_LENGTH": 5, "n_layers": 1, "gpu_id": "0", "ip": "127.0.0.1", "port": 1234}
    assert unread_keys(overrides) == ["feature_bakcbone"]
    assert warn_unread_keys([str(user_file)], overrides) == ["stage1_epoch", "feature_bakcbone"]
    assert "`stage1_epoch`" in caplog.text and "`feature_bakcbone`" in caplog.text and "`epochs`" not in caplog.text


def test_the_runner_warns_about_a_misspelt_key(tiny_dataset, caplog):
    from recbole_tpad.quick_start import run_recbole_tpad

    _, config = tiny_dataset
    run_recbole_tpad("GRU4Rec", "tiny", config_dict=dict(config, lerning_rate=0.1))
    assert "config key `lerning_rate` is read by neither RecBole nor recbole-tpad" in caplog.text
