"""The runner on stock models, --compare, data-path resolution and malformed atomic files."""

import csv
import os

import pytest
import torch

import run_recbole_tpad as cli
from recbole_tpad import compare as compare_module
from recbole_tpad.compare import compare_models
from recbole_tpad.errors import PluginError
from recbole_tpad.quick_start import load_config, run_recbole_tpad
from recbole_tpad.utils import DatasetNotFoundError, resolve_data_path


def test_stock_model_one_epoch(tiny_dataset):
    root, config = tiny_dataset
    run = run_recbole_tpad("GRU4Rec", "tiny", config_dict=config)
    assert set(run["test_result"]) == {f"{m}@{k}" for m in ("recall", "mrr", "ndcg", "hit") for k in (10, 20)}
    assert len(run["epoch_seconds"]) == 1
    assert os.path.isfile(run["trainer"].saved_model_file)


def test_plugin_properties_are_layered_under_the_user(tiny_dataset, tmp_path):
    root, config = tiny_dataset
    user_yaml = tmp_path / "user.yaml"
    user_yaml.write_text("stopping_step: 2\ntopk: [5]\n")
    built = load_config("SASRec", "tiny", [str(user_yaml)], dict(config, topk="[3]"))
    assert built["stopping_step"] == 2  # user file beats the plugin's overall.yaml (5)
    assert built["topk"] == [3]  # config dict beats the user file
    assert built["valid_metric"] == "MRR@20"  # the plugin's default survives
    assert built["n_layers"] == 2  # RecBole's own SASRec.yaml is still read


def test_checkpoint_names_are_unique_within_a_second(tiny_dataset):
    root, config = tiny_dataset
    first = run_recbole_tpad("GRU4Rec", "tiny", config_dict=config)
    second = run_recbole_tpad("GRU4Rec", "tiny", config_dict=config)
    assert first["trainer"].saved_model_file != second["trainer"].saved_model_file


def test_compare_writes_csv_and_keeps_rows_of_failures(tiny_dataset, tmp_path):
    root, config = tiny_dataset
    out = tmp_path / "cmp.csv"
    rows, table, path = compare_models(["GRU4Rec", "NoSuchModel", "SASRec"], "tiny", config_dict=config, results_file=str(out))
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["model"] for r in written] == ["GRU4Rec", "NoSuchModel", "SASRec"]
    assert written[1]["error"] and not written[0]["error"] and not written[2]["error"]
    for column in ("recall@10", "recall@20", "mrr@20", "ndcg@20", "hit@20", "params", "train_s_per_epoch", "epochs", "eval_s", "seed"):
        assert written[0][column] != "", column
    assert "| GRU4Rec |" in table


def test_compare_gives_each_model_its_own_train_state_file(tiny_dataset, tmp_path):
    _, config = tiny_dataset
    config = dict(config, train_state_file=str(tmp_path / "states" / "fit.pth"))
    rows, _, _ = compare_models(["GRU4Rec", "SASRec"], "tiny", config_dict=config, results_file=str(tmp_path / "cmp.csv"))
    assert not any(row.get("error") for row in rows), rows  # one shared file would refuse the second model
    assert sorted(p.name for p in (tmp_path / "states").iterdir()) == ["fit-GRU4Rec.pth", "fit-SASRec.pth"]


def test_compare_resume_keeps_finished_rows_of_the_same_settings(tiny_dataset, tmp_path, monkeypatch):
    root, config = tiny_dataset
    out = tmp_path / "cmp.csv"
    compare_models(["GRU4Rec", "NoSuchModel"], "tiny", config_dict=config, results_file=str(out))
    ran = []
    real_run = compare_module.run_recbole_tpad

    def counting_run(model, *args, **kwargs):
        ran.append(model)
        return real_run(model, *args, **kwargs)

    monkeypatch.setattr(compare_module, "run_recbole_tpad", counting_run)
    rows, _, _ = compare_models(["GRU4Rec", "NoSuchModel", "SASRec"], "tiny", config_dict=config,
                                results_file=str(out), resume=True)
    assert ran == ["NoSuchModel", "SASRec"]  # the failed row runs again, the finished one is kept
    assert [row["model"] for row in rows] == ["GRU4Rec", "NoSuchModel", "SASRec"]
    with open(out, newline="") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["GRU4Rec", "NoSuchModel", "SASRec"]
    # a run that reruns the first model keeps the later models' finished rows in the file meanwhile
    snapshots = []
    real_write = compare_module.write_csv
    monkeypatch.setattr(compare_module, "write_csv", lambda rows, path: snapshots.append([r["model"] for r in rows])
                        or real_write(rows, path))
    ran.clear()
    compare_models(["NoSuchModel", "GRU4Rec", "SASRec"], "tiny", config_dict=config, results_file=str(out), resume=True)
    assert ran == ["NoSuchModel"] and snapshots == [["NoSuchModel", "GRU4Rec", "SASRec"]]
    ran.clear()
    compare_models(["GRU4Rec"], "tiny", config_dict=dict(config, learning_rate=0.01), results_file=str(out), resume=True)
    assert ran == ["GRU4Rec"]  # other settings: the kept row would mix two runs in one table
    with pytest.raises(PluginError, match="--results_file"):
        compare_models(["GRU4Rec"], "tiny", config_dict=config, resume=True)


def test_command_line_runs_and_reports_user_errors(tiny_dataset, capsys):
    root, config = tiny_dataset
    code = cli.main([
        "--model=GRU4Rec", "--dataset=tiny", f"--data_path={root}", "--epochs=1", "--show_progress=False",
        "--USER_ID_FIELD=session_id", "--state=WARNING", "--load_col={'inter': ['session_id', 'item_id', 'timestamp']}",
    ])
    assert code == 0
    code = cli.main(["--model=GRU4Rec", "--dataset=absent", f"--data_path={root}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Dataset 'absent' not found" in err and "Traceback" not in err


def test_data_path_resolution(tmp_path, tiny_dataset):
    root, _ = tiny_dataset
    assert resolve_data_path("tiny", str(root)) == str(root)
    assert resolve_data_path("tiny", str(root / "tiny")) == str(root)  # the dataset folder itself
    assert resolve_data_path("amazon-beauty").endswith(os.path.join("shared", "datasets"))
    with pytest.raises(DatasetNotFoundError, match="dataset_atomic"):
        resolve_data_path("no-such-dataset")


def test_malformed_file_fails_before_training_without_traceback(tiny_dataset, capsys):
    root, config = tiny_dataset
    inter = root / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text() + "s999\ti001\tyesterday\n")
    code = cli.main(["--model=GRU4Rec", "--dataset=tiny", f"--data_path={root}"])
    err = capsys.readouterr().err
    assert code == 2 and "tiny.inter:" in err and "yesterday" in err and "Traceback" not in err


def test_compat_shims():
    import numpy as np
    import recbole.trainer.trainer as recbole_trainer

    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_ and np.bool8 is np.bool_
    assert not torch.is_anomaly_enabled()  # SINE's import switched it on; the shim switched it off
    assert "ray" not in __import__("sys").modules
    assert recbole_trainer.torch.load is not torch.load  # trusted load for RecBole's own checkpoints
    assert recbole_trainer.torch.nn is torch.nn


def test_ensure_dir_survives_another_rank_making_the_folder_first(tmp_path, monkeypatch):
    import recbole.data.utils as recbole_data_utils
    import recbole.trainer.trainer as recbole_trainer
    import recbole.utils.logger as recbole_logger

    # Another rank makes the folder between RecBole's exists-check and its makedirs.
    monkeypatch.setattr("os.path.exists", lambda path: False)
    for ensure_dir in (recbole_trainer.ensure_dir, recbole_data_utils.ensure_dir, recbole_logger.ensure_dir):
        ensure_dir(str(tmp_path))
    assert tmp_path.is_dir()
