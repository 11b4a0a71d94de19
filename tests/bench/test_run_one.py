"""bench/run_one.py: TPAD's row without the transition score, derived from the same trained model; a row
whose fit was cut off goes on from its train state."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.run_one import write_without_transition  # noqa: E402
from bench.session_outcomes import load_session_outcomes, ranks_from_topk  # noqa: E402
from tests.stages.stage_keys import STAGE_KEYS  # noqa: E402


def test_the_derived_row_is_the_row_of_a_run_trained_without_the_transition_score(tiny_dataset, tmp_path):
    from recbole_tpad.quick_start import run_recbole_tpad

    _, config_dict = tiny_dataset
    # two epochs, so that the second starts from weights the first trained; one cache, so both read the same views
    config_dict = dict(config_dict, feature_cache_dir=str(tmp_path / "cache"), epochs=2, **STAGE_KEYS)
    with_term = run_recbole_tpad("TPAD", "tiny", config_dict=config_dict)
    assert with_term["model"].picks_transition_scale
    derived_file, sessions_file = tmp_path / "derived.json", tmp_path / "derived.npz"
    write_without_transition(with_term, {"params": 1}, str(derived_file), str(sessions_file))
    derived = json.loads(derived_file.read_text())

    without = run_recbole_tpad("TPAD", "tiny", config_dict=dict(config_dict, transition_score=False))
    trained = {k: v for k, v in with_term["model"].state_dict().items() if not k.startswith("transition_")}
    assert trained.keys() == without["model"].state_dict().keys()
    for key, value in without["model"].state_dict().items():  # the same training, step for step
        assert torch.equal(trained[key], value), key
    assert with_term["trainer"].transition_scales_tried[0.0] == pytest.approx(without["best_valid_score"])
    for metric, value in without["test_result"].items():
        assert derived[metric.lower()] == pytest.approx(value)
    assert derived["params"] == 1  # the rest of the row is the trained run's
    ranks = load_session_outcomes(sessions_file)["rank"]
    assert np.array_equal(ranks, ranks_from_topk(without["test_topk"].numpy()))  # session for session


def test_nothing_is_derived_for_a_model_that_does_not_pick_the_scale_on_validation(tmp_path):
    class Model:
        picks_transition_scale = False

    write_without_transition({"model": Model()}, {}, str(tmp_path / "derived.json"))
    assert not (tmp_path / "derived.json").exists()


def _run_one(config_dict, out, state, sessions=None):
    command = [sys.executable, str(Path(__file__).resolve().parents[2] / "bench" / "run_one.py"), "--model=SASRec",
               "--dataset=tiny", "--seed=2020", f"--overrides={json.dumps(config_dict)}", f"--out={out}",
               f"--train_state={state}"] + ([f"--sessions={sessions}"] if sessions else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_a_row_cut_off_mid_fit_goes_on_from_its_train_state_kept_only_while_it_may_train_on(tiny_dataset, tmp_path, monkeypatch):
    from tests.robustness.test_train_state import _interrupted

    _, config_dict = tiny_dataset
    config_dict = dict(config_dict, epochs=4)
    state = tmp_path / "state" / "SASRec-2020.pth"
    _interrupted(monkeypatch, dict(config_dict, seed=2020, train_state_file=str(state)), "SASRec", at_epoch=2)
    assert state.is_file()
    row = _run_one(config_dict, tmp_path / "row.json", state)
    assert row["resumed_after_epoch"] == 1 and row["epochs"] == 4 and row["epoch_limit"] == 4
    assert state.exists()  # it trained to its limit: kept, so that a run under a higher limit goes on from it
    # early stopping ends it (stopping_step 0, a learning rate at which the tiny fit stops early): nothing to keep
    row = _run_one(dict(config_dict, epochs=20, stopping_step=0, learning_rate=0.1), tmp_path / "row2.json",
                   tmp_path / "state2.pth", sessions=tmp_path / "row2.npz")
    assert row["epochs"] < 20 and not (tmp_path / "state2.pth").exists()
    # its per-session file keeps both rankings, each averaging to the row's own figures
    outcomes = load_session_outcomes(tmp_path / "row2.npz")["outcomes"]
    assert outcomes["mrr@20"].mean() == pytest.approx(row["mrr@20"], abs=6e-5)
    assert outcomes["unseen_mrr@20"].mean() == pytest.approx(row["unseen_mrr@20"])
