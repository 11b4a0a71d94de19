"""TPAD end to end on the tiny fixture: the runner prepares the item views (the stages), then RecBole's own fit / evaluate."""

from pathlib import Path

import pytest

from tests.stages.stage_keys import STAGE_KEYS


def test_tpad_run_trains_the_stages_then_the_recommender(tiny_dataset, tmp_path):
    from recbole_tpad.quick_start import run_recbole_tpad

    _, config_dict = tiny_dataset
    config_dict = dict(config_dict, feature_cache_dir=str(tmp_path / "cache"), **STAGE_KEYS)
    result = run_recbole_tpad("TPAD", "tiny", config_dict=config_dict)
    assert "test_result" in result
    root = tmp_path / "cache" / "stages" / "tiny"
    names = sorted(p.name.split("-")[0] for p in root.iterdir())
    assert names == ["distillation", "knowledge", "projector", "representation", "states"]
    assert not list(root.glob("*.partial")) and not list(root.glob(".*"))


def test_bad_stage_key_fails_before_training(tiny_dataset, tmp_path):
    from recbole_tpad.errors import ConfigError
    from recbole_tpad.quick_start import run_recbole_tpad

    _, config_dict = tiny_dataset
    config_dict = dict(config_dict, feature_cache_dir=str(tmp_path / "cache"), stage2_hmie_weight=-1.0)
    with pytest.raises(ConfigError, match="stage2_hmie_weight"):
        run_recbole_tpad("TPAD", "tiny", config_dict=config_dict)
    assert not (Path(tmp_path) / "cache" / "stages").exists()
