"""Per-session test outcomes of a benchmark row: the file, its order, and the report's paired tests."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.session_outcomes import (  # noqa: E402
    load_session_outcomes,
    ranks_from_topk,
    session_outcomes,
    sessions_path,
    write_session_outcomes,
)


def test_ranks_and_outcomes_from_recbole_topk_rows():
    topk = np.array([[0, 1, 0, 1],   # target second
                     [0, 0, 0, 1],   # not in the top 3
                     [1, 0, 0, 1]])  # target first
    ranks = ranks_from_topk(topk)
    assert ranks.tolist() == [2, 0, 1]
    out = session_outcomes(ranks, topk=(1, 3))
    assert out["mrr@3"].tolist() == [0.5, 0.0, 1.0] and out["recall@1"].tolist() == [0, 0, 1]
    assert out["ndcg@3"] == pytest.approx([1 / np.log2(3), 0, 1])
    assert session_outcomes([25], topk=(20,))["mrr@20"].tolist() == [0.0]  # a full rank past K counts as a miss
    with pytest.raises(ValueError, match="one target per session"):
        ranks_from_topk(np.array([[1, 1, 2]]))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """SASRec and GRU4Rec, one epoch each, on the shared tiny dataset."""
    from recbole_tpad.quick_start import run_recbole_tpad
    from conftest import tiny_config, write_tiny_dataset

    tmp_path = tmp_path_factory.mktemp("runs")
    write_tiny_dataset(str(tmp_path / "data"), with_images=False)
    config = tiny_config(tmp_path / "data", tmp_path, IMAGE_FIELD=None,
                         load_col={"inter": ["session_id", "item_id", "timestamp"]}, ITEM_TEXT_FIELDS=[])
    return {model: run_recbole_tpad(model, "tiny", config_dict=config) for model in ("SASRec", "GRU4Rec")}


def test_the_file_reproduces_recboles_metrics_in_its_test_order(two_runs, tmp_path):
    from bench.cold_start import test_ranks

    run = two_runs["SASRec"]
    path = write_session_outcomes(sessions_path(tmp_path, "tiny", "SASRec", 2020), run)
    assert path == tmp_path / "sessions" / "tiny" / "SASRec-2020.npz"
    saved = load_session_outcomes(path)
    test_dataset = run["test_data"]._dataset
    assert saved["session"].tolist() == test_dataset.inter_feat[test_dataset.uid_field].tolist()
    loader_order = [u for batch in run["test_data"] for u in batch[0][test_dataset.uid_field].tolist()]
    assert saved["session"].tolist() == loader_order  # the order RecBole's evaluator saw them in
    assert saved["cutoff"] == 20 and saved["rank"].dtype == np.int64
    assert sorted(p.name for p in path.parent.iterdir()) == ["SASRec-2020.npz", f"test-sessions-{saved['digest']}.npz"]
    for metric, value in run["test_result"].items():  # RecBole's numbers, to its 4 decimals
        assert saved["outcomes"][metric].mean() == pytest.approx(value, abs=6e-5), metric
    # the same sessions in the same order as a pass of RecBole's test loader ranks them
    _, ranks, _ = test_ranks(run["model"], run["test_data"], "cpu")
    assert (np.where(ranks <= 20, ranks, 0) == saved["rank"]).mean() > 0.95  # score ties may break otherwise


def test_unseen_ranking_drops_the_session_items_and_only_moves_targets_up(two_runs, tmp_path):
    from bench.cold_start import ranking_metrics, test_ranks
    from bench.report import write_report

    run = two_runs["SASRec"]
    model, test_data = run["model"], run["test_data"]
    _, ranks, unseen = test_ranks(model, test_data, "cpu")
    repeats = np.concatenate([(batch[0][model.ITEM_SEQ] == batch[3][:, None]).any(1).numpy() for batch in test_data])
    assert (unseen[~repeats] <= ranks[~repeats]).all() and (unseen[repeats] > ranks[repeats]).all()
    # each session's top item, if one of its own, is gone from the unseen ranking
    items_above = ranks - unseen
    lengths = np.concatenate([batch[0][model.ITEM_SEQ_LEN].numpy() for batch in test_data])
    assert (items_above[~repeats] <= lengths[~repeats]).all()
    metrics = ranking_metrics(run["train_data"]._dataset, test_ranks(model, test_data, "cpu"))
    assert metrics["unseen_mrr@20"] >= 0 and set(metrics) >= {"unseen_recall@20", "unseen_mrr@20", "unseen_ndcg@20"}
    assert metrics["all_mrr@20"] == pytest.approx(float(np.where(ranks <= 20, 1.0 / ranks, 0).mean()))
    assert metrics["unseen_mrr@20"] == pytest.approx(float(np.where(unseen <= 20, 1.0 / unseen, 0).mean()))
    rows = [{"model": "SASRec", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03, **metrics},
            {"model": "GRU4Rec", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03}]  # made before the column existed
    write_report(rows, tmp_path, "tiny", header={})
    section = (tmp_path / "tiny.md").read_text().split("## Ranking without the session's own items", 1)[1].split("##")[0]
    assert "| SASRec | 1 |" in section and "GRU4Rec" not in section


def test_two_models_pair_and_the_report_tests_them(two_runs, tmp_path):
    from bench.report import significance_rows

    rows = []
    for model, run in two_runs.items():
        write_session_outcomes(sessions_path(tmp_path, "tiny", model, 2020), run)
        rows.append({"model": model, "seed": 2020, **{k.lower(): v for k, v in run["test_result"].items()}})
    sasrec, gru = (load_session_outcomes(sessions_path(tmp_path, "tiny", m, 2020)) for m in ("SASRec", "GRU4Rec"))
    assert sasrec["digest"] == gru["digest"] and (sasrec["session"] == gru["session"]).all()
    table = significance_rows(rows, tmp_path, "tiny", reference="SASRec")
    assert [(r["vs"], r["metric"]) for r in table] == [("GRU4Rec", "mrr@20"), ("GRU4Rec", "recall@20")]
    assert table[0]["diff"] == pytest.approx(rows[0]["mrr@20"] - rows[1]["mrr@20"], abs=1e-4)
    assert table[0]["seeds"] == "1 / 1" and 0 <= float(table[0]["Wilcoxon p"]) <= 1
    missing = significance_rows(rows + [{"model": "SRGNN", "seed": 2020, "mrr@20": 0.1}], tmp_path, "tiny",
                                reference="SASRec")
    assert missing[-1] == {"vs": "SRGNN", "metric": "", "note": "no per-session files for SRGNN"}


def test_the_file_keeps_the_ranking_without_the_sessions_items_and_the_report_pairs_it(two_runs, tmp_path):
    from bench.cold_start import ranking_metrics, test_ranks
    from bench.report import paired_section, significance_rows

    rows, unseen_metrics = [], {}
    for name, run in (("TPAD", two_runs["SASRec"]), ("GRU4Rec", two_runs["GRU4Rec"])):  # SASRec's run stands in for TPAD
        ranks = test_ranks(run["model"], run["test_data"], "cpu")
        unseen_metrics[name] = ranking_metrics(run["train_data"]._dataset, ranks)
        write_session_outcomes(sessions_path(tmp_path, "tiny", name, 2020), run, unseen_ranks=ranks[2])
        rows.append({"model": name, "seed": 2020, **{k.lower(): v for k, v in run["test_result"].items()}})
    saved = load_session_outcomes(sessions_path(tmp_path, "tiny", "TPAD", 2020))
    for metric in ("mrr@20", "recall@20", "ndcg@10"):  # the file's outcomes average to the row's unseen_* columns
        assert saved["outcomes"][f"unseen_{metric}"].mean() == pytest.approx(unseen_metrics["TPAD"][f"unseen_{metric}"])
    table = significance_rows(rows, tmp_path, "tiny")
    assert [r["metric"] for r in table] == ["mrr@20", "recall@20", "unseen_mrr@20", "unseen_recall@20"]
    assert table[2]["diff"] == pytest.approx(unseen_metrics["TPAD"]["unseen_mrr@20"]
                                             - unseen_metrics["GRU4Rec"]["unseen_mrr@20"])
    assert "`unseen_*` rows:" in "\n".join(paired_section(rows, tmp_path, "tiny"))
    # a file written without that ranking (a row made before it was kept): RecBole's ranking only
    write_session_outcomes(sessions_path(tmp_path, "tiny", "GRU4Rec", 2020), two_runs["GRU4Rec"])
    assert "unseen_mrr@20" not in load_session_outcomes(sessions_path(tmp_path, "tiny", "GRU4Rec", 2020))["outcomes"]
    assert [r["metric"] for r in significance_rows(rows, tmp_path, "tiny")] == ["mrr@20", "recall@20"]
    assert "`unseen_*` rows:" not in "\n".join(paired_section(rows, tmp_path, "tiny"))  # no such rows to explain
    with pytest.raises(ValueError, match="without the session's items"):
        write_session_outcomes(tmp_path / "x.npz", two_runs["GRU4Rec"], unseen_ranks=[1, 2])


def test_the_report_places_the_paired_tests_under_the_headline(two_runs, tmp_path):
    from bench.report import write_report

    rows = []
    for name, run in (("TPAD", two_runs["SASRec"]), ("GRU4Rec", two_runs["GRU4Rec"])):  # SASRec's run stands in for TPAD
        write_session_outcomes(sessions_path(tmp_path, "tiny", name, 2020), run)
        rows.append({"model": name, "dataset": "tiny", "seed": 2020, **{k.lower(): v for k, v in run["test_result"].items()}})
    write_report(rows, tmp_path, "tiny", header={"date": "today"})
    text = (tmp_path / "tiny.md").read_text()
    section = text.split("## TPAD against the other headline models", 1)[1].split("## All models", 1)[0]
    assert "| GRU4Rec | mrr@20 | 1 / 1 |" in section and "| GRU4Rec | recall@20 | 1 / 1 |" in section
    assert "Published anchors" not in text  # the tiny set has none


def test_the_ablation_table_reads_a_part_against_seed_noise(two_runs, tmp_path):
    from bench.report import ablation_rows, write_report

    def rows(name, run, values):  # one row per seed, each with the run's per-session file
        out = []
        for seed, mrr in zip((2020, 2021, 2022), values):
            write_session_outcomes(sessions_path(tmp_path, "tiny", name, seed), run)
            out.append({"model": name, "dataset": "tiny", "seed": seed, "mrr@20": mrr, "recall@20": 0.1})
        return out

    table_rows = (rows("TPAD", two_runs["SASRec"], [0.030, 0.031, 0.032])
                  + rows("TPAD-no_transition", two_runs["GRU4Rec"], [0.025, 0.026, 0.027])  # 5 std below
                  + rows("TPAD-no_amie", two_runs["SASRec"], [0.029, 0.031, 0.033])  # within the spread
                  + rows("TPAD-no_gen", two_runs["SASRec"], [0.035])  # one seed
                  + rows("TPAD-session_item_bias", two_runs["GRU4Rec"], [0.040, 0.041, 0.042]))  # adds a part
    table = {(r["part"], r["metric"]): r for r in ablation_rows(table_rows, tmp_path, "tiny")}
    assert table[("transition", "mrr@20")]["the part, by seeds"] == "helps"
    assert table[("transition", "mrr@20")]["diff"] == pytest.approx(0.005)
    assert table[("transition", "mrr@20")]["pooled std"] == pytest.approx(0.001)
    assert 0 <= float(table[("transition", "mrr@20")]["Wilcoxon p"]) <= 1
    assert table[("amie", "mrr@20")]["the part, by seeds"] == "within seed noise"
    assert table[("amie", "recall@20")]["diff"] == 0  # equal on every seed: no difference, no noise
    assert table[("amie", "recall@20")]["the part, by seeds"] == "within seed noise"
    assert table[("gen", "mrr@20")]["the part, by seeds"] == "needs 2+ seeds a side"
    added = table[("session_item_bias", "mrr@20")]  # the variant is the side with the part
    assert (added["with it"], added["without it"]) == (pytest.approx(0.041), pytest.approx(0.031))
    assert added["diff"] == pytest.approx(0.010) and added["the part, by seeds"] == "helps"
    write_report(table_rows, tmp_path, "tiny", header={})
    assert "## TPAD's parts: seeded ablations" in (tmp_path / "tiny.md").read_text()


def test_the_rank_bands_add_up_to_recall_and_give_the_rows_mrr(two_runs, tmp_path):
    from bench.report import rank_band_rows, write_report

    rows = []
    for model, run in two_runs.items():
        for seed in (2020, 2021):
            write_session_outcomes(sessions_path(tmp_path, "tiny", model, seed), run)
            rows.append({"model": model, "dataset": "tiny", "seed": seed, **{k.lower(): v for k, v in run["test_result"].items()}})
    rows.append({"model": "SRGNN", "dataset": "tiny", "seed": 2020, "mrr@20": 0.1})  # no per-session file: not listed
    table = {row["model"]: row for row in rank_band_rows(rows, tmp_path, "tiny")}
    assert set(table) == set(two_runs)
    for model, run in two_runs.items():
        bands = table[model]
        assert bands["seeds"] == 2
        assert sum(bands[c] for c in ("rank 1", "rank 2-3", "rank 4-10", "rank 11-20")) == pytest.approx(
            run["test_result"]["recall@20"], abs=1e-4)
        assert bands["mrr@20"] == pytest.approx(run["test_result"]["mrr@20"], abs=1e-4)
    write_report(rows, tmp_path, "tiny", header={})
    assert "## Where the hits sit in the top 20" in (tmp_path / "tiny.md").read_text()


def test_paired_checkpoints_rebuild_each_run_and_reproduce_its_test(two_runs):
    from bench.paired_checkpoints import main

    files = [two_runs[m]["trainer"].saved_model_file for m in ("SASRec", "GRU4Rec")]
    rows = main([f"--model_files={','.join(files)}", "--names=SASRec,GRU4Rec"])
    assert [(r["baseline"], r["metric"]) for r in rows] == [("GRU4Rec", "mrr@20"), ("GRU4Rec", "recall@20")]
    for r in rows:  # each checkpoint's test, rebuilt from its saved config, is the run's own
        assert r["mean_a"] == pytest.approx(two_runs["SASRec"]["test_result"][r["metric"]], abs=6e-5)
        assert r["mean_b"] == pytest.approx(two_runs["GRU4Rec"]["test_result"][r["metric"]], abs=6e-5)
        assert 0 <= r["p"] <= 1
