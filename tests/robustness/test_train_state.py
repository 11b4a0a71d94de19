"""train_state_file: a fit interrupted after some validations resumes and ends with the uninterrupted run's
metrics; an ended fit is not trained again; a state of other settings is refused; a damaged one is replaced."""

import pytest
from recbole.trainer import Trainer

from recbole_tpad.errors import ConfigError
from recbole_tpad.quick_start import run_recbole_tpad
from tests.stages.stage_keys import STAGE_KEYS

EPOCHS = 4


def _config(tiny_dataset, tmp_path, **overrides):
    _, config = tiny_dataset
    return {**config, **STAGE_KEYS, "epochs": EPOCHS, "feature_cache_dir": str(tmp_path / "cache"), **overrides}


def _interrupted(monkeypatch, config, model, at_epoch):
    """Run ``model`` and stop it with a KeyboardInterrupt (as Ctrl-C or a session's end would) as it
    starts training epoch ``at_epoch`` (0-based)."""
    train_epoch = Trainer._train_epoch

    def stops(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == at_epoch:
            raise KeyboardInterrupt
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", stops)
    with pytest.raises(KeyboardInterrupt):
        run_recbole_tpad(model, "tiny", config_dict=config)
    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)


# FDSA keeps a module among its other_parameter (its feature embedding layer, whose weights are in its
# state_dict too): a resume that put the saved module in its place would leave the optimizer training the
# replaced one, and the fit would part from the uninterrupted one
@pytest.mark.parametrize("model", ["SASRec", "TPAD", "FDSA"])
def test_interrupted_fit_resumes_to_the_uninterrupted_result(tiny_dataset, tmp_path, monkeypatch, model):
    features = {"selected_features": ["title", "categories", "brand"]} if model == "FDSA" else {}
    clean = run_recbole_tpad(model, "tiny", config_dict=_config(tiny_dataset, tmp_path, **features))
    assert len(clean["epoch_seconds"]) == EPOCHS and clean["resumed_after_epoch"] is None

    config = _config(tiny_dataset, tmp_path, train_state_file=str(tmp_path / "state" / f"{model}.pth"), **features)
    _interrupted(monkeypatch, config, model, at_epoch=2)
    resumed = run_recbole_tpad(model, "tiny", config_dict=config)
    assert resumed["resumed_after_epoch"] == 1
    assert len(resumed["epoch_seconds"]) == EPOCHS  # the two epochs before the interruption count
    assert resumed["earlier_fit_seconds"] > 0
    assert resumed["valid_result"] == clean["valid_result"]
    assert resumed["test_result"] == clean["test_result"]


def test_ended_fit_is_tested_again_not_trained(tiny_dataset, tmp_path):
    config = _config(tiny_dataset, tmp_path, train_state_file=str(tmp_path / "state.pth"))
    first = run_recbole_tpad("SASRec", "tiny", config_dict=config)
    again = run_recbole_tpad("SASRec", "tiny", config_dict=config)
    assert again["resumed_after_epoch"] == EPOCHS - 1
    assert again["epoch_seconds"] == first["epoch_seconds"]  # no epoch trained in the second run
    assert again["test_result"] == first["test_result"]  # the best epoch's weights, as the first run tested


def test_early_stopped_fit_is_not_trained_again(tiny_dataset, tmp_path):
    # stopping_step 0: the fit stops at the first validation without a better score (at the default learning rate the tiny fit improves for all 20)
    config = _config(tiny_dataset, tmp_path, epochs=20, stopping_step=0, learning_rate=0.1, train_state_file=str(tmp_path / "state.pth"))
    first = run_recbole_tpad("SASRec", "tiny", config_dict=config)
    assert len(first["epoch_seconds"]) < 20, "the fit was meant to stop early"
    again = run_recbole_tpad("SASRec", "tiny", config_dict=config)
    assert again["epoch_seconds"] == first["epoch_seconds"]
    assert again["test_result"] == first["test_result"]


def test_state_of_other_settings_is_refused_with_the_keys(tiny_dataset, tmp_path, monkeypatch):
    config = _config(tiny_dataset, tmp_path, train_state_file=str(tmp_path / "state.pth"))
    _interrupted(monkeypatch, config, "SASRec", at_epoch=1)
    with pytest.raises(ConfigError, match=r"train_state_file .*learning_rate: 0\.001 then, 0\.01 now"):
        run_recbole_tpad("SASRec", "tiny", config_dict=dict(config, learning_rate=0.01))


def test_damaged_state_is_replaced_by_a_fit_from_the_start(tiny_dataset, tmp_path):
    clean = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path))
    state_file = tmp_path / "state.pth"
    state_file.write_bytes(b"not a torch file")
    run = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, train_state_file=str(state_file)))
    assert run["resumed_after_epoch"] is None
    assert run["test_result"] == clean["test_result"]
    assert state_file.stat().st_size > 100  # overwritten by the new fit's state


def test_fit_at_its_epoch_limit_goes_on_under_a_higher_one_to_the_uninterrupted_result(tiny_dataset, tmp_path):
    clean = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path))  # EPOCHS epochs
    state = str(tmp_path / "state.pth")
    first = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, epochs=2, train_state_file=state))
    assert len(first["epoch_seconds"]) == 2
    longer = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, train_state_file=state))
    assert longer["resumed_after_epoch"] == 1 and len(longer["epoch_seconds"]) == EPOCHS
    assert longer["test_result"] == clean["test_result"]


def test_early_stopped_fit_stays_ended_under_a_higher_epoch_limit(tiny_dataset, tmp_path):
    config = _config(tiny_dataset, tmp_path, epochs=20, stopping_step=0, learning_rate=0.1, train_state_file=str(tmp_path / "s.pth"))
    first = run_recbole_tpad("SASRec", "tiny", config_dict=config)
    again = run_recbole_tpad("SASRec", "tiny", config_dict=dict(config, epochs=40))
    assert again["epoch_seconds"] == first["epoch_seconds"] and again["test_result"] == first["test_result"]


def test_state_written_with_keys_that_are_no_longer_settings_resumes(tiny_dataset, tmp_path):
    import json

    import torch

    state = str(tmp_path / "state.pth")
    first = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, epochs=2, train_state_file=state))
    saved = torch.load(state, weights_only=False)  # as a state written when the epoch limit and the paths were settings
    saved["settings"].update(epochs=json.dumps(2), checkpoint_dir=json.dumps("/elsewhere"))
    torch.save(saved, state)
    longer = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, train_state_file=state))
    assert longer["resumed_after_epoch"] == 1 and len(longer["epoch_seconds"]) == EPOCHS
    assert longer["epoch_seconds"][:2] == first["epoch_seconds"]


def test_state_written_before_a_setting_existed_resumes_and_logs_it(tiny_dataset, tmp_path, caplog):
    import torch

    state = str(tmp_path / "state.pth")
    first = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, epochs=2, train_state_file=state))
    saved = torch.load(state, weights_only=False)  # as a state written before the code had the key
    del saved["settings"]["hidden_dropout_prob"]
    torch.save(saved, state)
    with caplog.at_level("WARNING"):
        longer = run_recbole_tpad("SASRec", "tiny", config_dict=_config(tiny_dataset, tmp_path, train_state_file=state))
    assert longer["resumed_after_epoch"] == 1 and len(longer["epoch_seconds"]) == EPOCHS
    assert longer["epoch_seconds"][:2] == first["epoch_seconds"]
    assert "written before these settings existed: hidden_dropout_prob" in caplog.text
