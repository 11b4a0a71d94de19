"""TPAD end to end on the tiny fixture: the runner prepares the item views (the stages), then RecBole's own fit / evaluate."""

from pathlib import Path

import pytest
import torch

from tests.stages.stage_keys import STAGE_KEYS


def test_tpad_run_trains_the_stages_then_the_recommender(tiny_dataset, tmp_path, monkeypatch, caplog):
    from recbole_tpad.features.config import FeaturesConfig
    from recbole_tpad.quick_start import run_recbole_tpad
    from recbole_tpad.stages.config import StageConfig

    parsed = []
    for cls in (FeaturesConfig, StageConfig):  # each settings object is read once per run and passed down
        real = cls.from_config
        monkeypatch.setattr(cls, "from_config", lambda config, cls=cls, real=real: parsed.append(cls.__name__) or real(config))
    _, config_dict = tiny_dataset
    config_dict = dict(config_dict, feature_cache_dir=str(tmp_path / "cache"), **STAGE_KEYS)
    result = run_recbole_tpad("TPAD", "tiny", config_dict=config_dict)
    assert "test_result" in result
    # the transition score's scale, picked on the validation split after the fit, is in the checkpoint
    tried = result["trainer"].transition_scales_tried
    assert list(tried) == [float(x) for x in result["config"]["transition_scales"]]
    state = torch.load(result["trainer"].saved_model_file, weights_only=False)["state_dict"]
    picked = max(tried, key=tried.get)
    assert bool(state["transition_ready"]) and float(state["transition_log_scale"].exp()) == pytest.approx(picked)
    assert result["valid_result"][result["config"]["valid_metric"].lower()] == pytest.approx(tried[picked])
    assert sorted(parsed) == ["FeaturesConfig", "StageConfig"]
    assert "is read by neither" not in caplog.text
    root = tmp_path / "cache" / "stages" / "tiny"
    names = sorted(p.name.split("-")[0] for p in root.iterdir())
    assert names == ["distillation", "knowledge", "projector", "representation", "states", "transition_head"]
    assert not list(root.glob("*.partial")) and not list(root.glob(".*"))


def test_bad_stage_key_fails_before_training(tiny_dataset, tmp_path):
    from recbole_tpad.errors import ConfigError
    from recbole_tpad.quick_start import run_recbole_tpad

    _, config_dict = tiny_dataset
    config_dict = dict(config_dict, feature_cache_dir=str(tmp_path / "cache"), stage2_hmie_weight=-1.0)
    with pytest.raises(ConfigError, match="stage2_hmie_weight"):
        run_recbole_tpad("TPAD", "tiny", config_dict=config_dict)
    assert not (Path(tmp_path) / "cache" / "stages").exists()
