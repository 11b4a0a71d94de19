"""Every sequential model RecBole ships runs through the runner and --compare, with each loss it
supports, on RecBole's own defaults where the plugin's shared settings cannot apply."""

import csv
import inspect
import os
import random

import pytest
import recbole.model.sequential_recommender as recbole_sequential
from recbole.utils import ModelType

import run_recbole_tpad as cli
from conftest import COLOURS, KINDS, tiny_config, write_tiny_dataset
from recbole_tpad.compare import compare_models
from recbole_tpad.errors import ConfigError
from recbole_tpad.quick_start import load_config, run_recbole_tpad

N_ITEMS = 120  # GRU4RecCPR and SASRecCPR rerank their top reranker_CAN_NUM (100) items
SEQUENTIAL_MODELS = sorted(
    name for name, cls in inspect.getmembers(recbole_sequential, inspect.isclass) if cls.type == ModelType.SEQUENTIAL
)
LOSSES = [None, "CE", "BPR", "NLL"]  # None: the model's own default

# The losses a model's __init__ accepts (RecBole 1.2.1); any other it refuses, and the runner says so.
ACCEPTED_LOSSES = {"CORE": {"CE"}, "GRU4RecCPR": {"CE"}, "SASRecCPR": {"CE"}, "FPMC": {"BPR"}, "SINE": {"CE", "BPR", "NLL"}}
# No loss_type read: a fixed loss of their own, whatever loss_type says.
OWN_LOSS = {"TransRec", "DIN", "DIEN", "RepeatNet"}
# GRU4RecKG and KSR read a knowledge graph and pretrained entity (and relation) vectors, as RecBole's docs set them up.
KG_SETTINGS = {
    "load_col": {"inter": ["session_id", "item_id", "timestamp"], "kg": ["head_id", "relation_id", "tail_id"],
                 "link": ["item_id", "entity_id"], "ent": ["ent_id", "ent_emb"], "rel": ["rel_id", "rel_emb"]},
    "additional_feat_suffix": ["ent", "rel"],
    "alias_of_entity_id": ["ent_id"],
    "alias_of_relation_id": ["rel_id"],
    "preload_weight": {"ent_id": "ent_emb", "rel_id": "rel_emb"},
}
MODEL_SETTINGS = {
    "GRU4RecKG": KG_SETTINGS,
    "KSR": KG_SETTINGS,
    "S3Rec": {"pretrain_epochs": 1, "save_step": 1},  # its default stage, pretraining: one epoch
}
# Where RecBole 1.2.1 itself cannot run a model, whatever the runner does.
RECBOLE_FAILURES = {
    "KSR": "ksr.py multiplies float32 session vectors by the float64 relation matrix RecBole preloads "
           "(np.zeros in Dataset._preload_weight_matrix); torch refuses mixed dtypes in matmul",
}


def write_knowledge_graph(folder, name="tiny", dim=64, seed=0):
    """Items linked to entities with kind and colour relations, random entity and relation vectors."""
    rng = random.Random(seed)
    entities = [f"e{i:03d}" for i in range(N_ITEMS)] + KINDS + COLOURS
    files = {
        "link": ["item_id:token\tentity_id:token"] + [f"i{i:03d}\te{i:03d}" for i in range(N_ITEMS)],
        "kg": ["head_id:token\trelation_id:token\ttail_id:token"]
        + [f"e{i:03d}\tkind\t{KINDS[i % len(KINDS)]}\ne{i:03d}\tcolour\t{COLOURS[i % len(COLOURS)]}" for i in range(N_ITEMS)],
        "ent": ["ent_id:token\tent_emb:float_seq"] + [f"{e}\t{' '.join(str(rng.gauss(0, 0.1)) for _ in range(dim))}" for e in entities],
        "rel": ["rel_id:token\trel_emb:float_seq"] + [f"{r}\t{' '.join(str(rng.gauss(0, 0.1)) for _ in range(dim))}" for r in ("kind", "colour")],
    }
    for suffix, lines in files.items():
        with open(os.path.join(folder, f"{name}.{suffix}"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_knowledge_graph(write_tiny_dataset(str(root), n_items=N_ITEMS, n_sessions=80, with_images=False))
    return root


@pytest.fixture
def settings(data_root, tmp_path):
    """The runner's config dict for the fixture; feature-aware models read categories, as on our datasets."""
    return tiny_config(data_root, tmp_path, selected_features=["categories", "brand"], item_attribute="categories")


def _accepts(model, loss):
    return loss is None or model in OWN_LOSS or loss in ACCEPTED_LOSSES.get(model, {"CE", "BPR"})


def _cases():
    for model in SEQUENTIAL_MODELS:
        for loss in [None] if model == "S3Rec" else LOSSES:  # S3Rec's losses: test_s3rec_pretrains_then_finetunes
            marks = [pytest.mark.xfail(raises=RuntimeError, strict=True, reason=RECBOLE_FAILURES[model])] \
                if model in RECBOLE_FAILURES and _accepts(model, loss) else []
            yield pytest.param(model, loss, marks=marks, id=f"{model}-{loss or 'default'}")


@pytest.mark.parametrize("model, loss", _cases())
def test_every_recbole_sequential_model_runs_with_each_loss_it_supports(model, loss, settings):
    config = dict(settings, **MODEL_SETTINGS.get(model, {}), **({"loss_type": loss} if loss else {}))
    if not _accepts(model, loss):
        with pytest.raises(ConfigError, match=f"loss_type='{loss}'"):
            run_recbole_tpad(model, "tiny", config_dict=config, saved=False)
        return
    run = run_recbole_tpad(model, "tiny", config_dict=config, saved=False)
    assert len(run["epoch_seconds"]) == 1 and run["test_result"]


def test_s3rec_pretrains_then_finetunes_with_each_loss(settings, tmp_path):
    settings = dict(settings, **MODEL_SETTINGS["S3Rec"])
    pretrained = run_recbole_tpad("S3Rec", "tiny", config_dict=settings)
    assert pretrained["trainer"].saved_model_file == str(tmp_path / "saved" / "S3Rec-tiny-1.pth")
    finetune = dict(settings, train_stage="finetune", pre_model_path=pretrained["trainer"].saved_model_file)
    for loss in ("CE", "BPR"):
        assert run_recbole_tpad("S3Rec", "tiny", config_dict=dict(finetune, loss_type=loss), saved=False)["test_result"]
    with pytest.raises(ConfigError, match="loss_type='NLL'"):
        run_recbole_tpad("S3Rec", "tiny", config_dict=dict(finetune, loss_type="NLL"), saved=False)


def test_shared_settings_hold_where_they_apply_and_recbole_defaults_elsewhere(settings, tmp_path):
    sasrec = load_config("SASRec", "tiny", config_dict=settings)
    assert sasrec["loss_type"] == "CE" and sasrec["train_neg_sample_args"]["distribution"] == "none"
    assert sasrec["eval_args"]["mode"] == {"valid": "full", "test": "full"} and sasrec["valid_metric"] == "MRR@20"
    bpr = load_config("SASRec", "tiny", config_dict=dict(settings, loss_type="BPR"))
    assert bpr["train_neg_sample_args"] == {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}
    user_yaml = tmp_path / "negatives.yaml"
    user_yaml.write_text("train_neg_sample_args: {distribution: popularity, sample_num: 2}\n")
    chosen = load_config("SASRec", "tiny", [str(user_yaml)], dict(settings, loss_type="BPR"))
    assert chosen["train_neg_sample_args"]["distribution"] == "popularity" and chosen["train_neg_sample_args"]["sample_num"] == 2
    fpmc = load_config("FPMC", "tiny", config_dict=settings)  # BPR-only: its YAML's loss beats nothing of ours
    assert fpmc["loss_type"] == "BPR" and fpmc["train_neg_sample_args"]["distribution"] == "uniform"
    din = load_config("DIN", "tiny", config_dict=settings)  # cannot rank all items: RecBole's evaluation for it
    assert din["eval_args"]["mode"] == {"valid": "uni100", "test": "uni100"} and din["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert din["metrics"] == ["AUC", "LogLoss"] and din["valid_metric"] == "AUC"
    assert din["train_neg_sample_args"]["distribution"] == "uniform"  # its labels come from sampled negatives
    with pytest.raises(ConfigError, match="DIN cannot rank all items.*eval_args"):
        load_config("DIN", "tiny", config_dict=dict(settings, metrics="['Recall']"))


@pytest.mark.parametrize("model", ["TPAD", "KDSR"])
def test_our_models_refuse_a_loss_they_do_not_support(model, settings):
    with pytest.raises(ConfigError, match="loss_type='BPR'"):
        run_recbole_tpad(model, "tiny", config_dict=dict(settings, loss_type="BPR"), saved=False)


def test_compare_records_each_rows_loss_and_an_error_row_for_a_model_that_cannot_run(settings, tmp_path, caplog):
    out = tmp_path / "cmp.csv"
    rows, table, _ = compare_models(["SASRec", "FPMC", "DIN", "SASRecCPR"], "tiny",
                                    config_dict=dict(settings, loss_type="BPR"), results_file=str(out))
    with open(out, newline="") as f:
        written = {row["model"]: row for row in csv.DictReader(f)}
    assert [written[m]["loss_type"] for m in ("SASRec", "FPMC", "DIN")] == ["BPR", "BPR", ""]
    assert written["SASRec"]["recall@20"] and written["DIN"]["auc"] and not written["DIN"]["error"]
    assert "loss_type='BPR'" in written["SASRecCPR"]["error"]
    assert "SASRecCPR failed: " in caplog.text and "Traceback" not in caplog.text  # the message, not a traceback


def test_command_line_reports_a_refused_loss_in_one_line(settings, capsys):
    code = cli.main(["--model=SASRecCPR", "--dataset=tiny", f"--data_path={settings['data_path']}", "--loss_type=BPR",
                     "--USER_ID_FIELD=session_id", "--state=WARNING", "--show_progress=False",
                     "--load_col={'inter': ['session_id', 'item_id', 'timestamp']}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if "loss_type" in line] == [err.strip().splitlines()[-1]]
    assert err.strip().splitlines()[-1].startswith("error: SASRecCPR exited while being built with loss_type='BPR'")
