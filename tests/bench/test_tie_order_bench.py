"""bench/tie_order.py: the tie statistic on a table with known ties, and the runs it plans."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tie_order import tie_rows, tie_statistic  # noqa: E402


def test_the_statistic_counts_ties_as_recbole_orders_sessions():
    # a: last two tie (day 2); b: no tie at the end, its first two tie; c: one item; d: three items on one day
    sessions = ["a", "b", "a", "b", "a", "b", "c", "d", "d", "d"]
    times = [1, 1, 2, 1, 2, 3, 5, 4, 4, 4]
    stats = tie_statistic(sessions, times, tie_seeds=range(30))
    assert stats["sessions"] == 4 and stats["sessions with 2+ items"] == 3
    assert stats["test target ties"] == 2 / 3  # a and d
    assert stats["valid target ties (3+ items)"] == 2 / 3  # b (its first two items) and d; a's are days 1, 2
    assert stats["interactions sharing their session's timestamp"] == 7 / 10
    changes = [stats[f"test target changes, tie_seed={s}"] for s in range(30)]
    assert set(changes) <= {0, 1 / 3, 2 / 3} and max(changes) > 0  # only a and d can change


def test_each_model_runs_with_the_file_order_and_each_shuffle():
    rows = tie_rows(["SASRec"], [2020], [0, 1])
    assert [(name, overrides) for name, _, _, overrides in rows] == [
        ("SASRec-tie_file", {"tie_order": "file"}),
        ("SASRec-tie_shuffle0", {"tie_order": "shuffle", "tie_seed": 0}),
        ("SASRec-tie_shuffle1", {"tie_order": "shuffle", "tie_seed": 1})]


def _run(model, order, seed, mrr, tie_seed=""):
    return {"model": f"{model}-tie_{order}", "tie_order": order.rstrip("0123456789"), "tie_seed": tie_seed,
            "seed": seed, "recall@10": mrr * 2, "recall@20": mrr * 3, "mrr@20": mrr, "ndcg@20": mrr * 1.5, "epochs": 9}


def test_the_effect_pools_every_tie_seed_and_says_when_it_is_beyond_run_noise():
    from bench.tie_order import tie_effect_rows

    rows = [_run("SASRec", "file", s, m) for s, m in ((2020, 0.030), (2021, 0.031), (2022, 0.029))]
    rows += [_run("SASRec", f"shuffle{t}", s, m + 0.010, t) for t in (0, 1) for s, m in ((2020, 0.030), (2021, 0.031))]
    rows += [_run("TPAD", "file", 2020, 0.04), _run("TPAD", "shuffle0", 2020, 0.05, 0), {"model": "TPAD-tie_file", "error": "x"}]
    effect = {(e["model"], e["metric"]): e for e in tie_effect_rows(rows)}
    sasrec = effect[("SASRec", "mrr@20")]
    assert sasrec["runs (file / shuffle)"] == "3 / 4"
    assert abs(sasrec["file mean"] - 0.030) < 1e-9 and abs(sasrec["shuffle mean"] - 0.0405) < 1e-9
    assert sasrec["by runs"] == "shuffle higher" and float(sasrec["Welch p"]) < 0.01
    assert sasrec["rel %"] == "+35.0%"
    tpad = effect[("TPAD", "mrr@20")]
    assert tpad["runs (file / shuffle)"] == "1 / 1" and tpad["by runs"] == "needs 2+ runs a side" and tpad["Welch p"] == ""


def test_the_report_lists_the_effect_and_every_run(tmp_path):
    from bench.tie_order import write_tie_report

    rows = [_run("SASRec", "file", 2020, 0.03), _run("SASRec", "file", 2021, 0.032),
            _run("SASRec", "shuffle0", 2020, 0.031, 0), _run("SASRec", "shuffle0", 2021, 0.030, 0)]
    text = write_tie_report(rows, tmp_path, "hm-fashion", "python bench/tie_order.py --dataset=hm-fashion").read_text()
    assert "| SASRec | mrr@20 | 2 / 2 | 0.0310 |" in text and "within run noise" in text
    assert text.count("| SASRec-tie_") == 4


def test_a_run_writes_each_row_with_its_order_and_the_report(tmp_path, monkeypatch):
    import bench.tie_order as tie_order

    ran = []

    def fake_run_row(row, args, common, work_dir, out_dir, first_seed, threads):
        name, _, seed, overrides = row
        ran.append((name, seed, overrides))
        mrr = 0.03 if overrides["tie_order"] == "file" else 0.04
        return [{"model": name, "dataset": args.dataset, "seed": seed, "overrides": "{}", "recall@10": 2 * mrr,
                 "recall@20": 3 * mrr, "mrr@20": mrr, "ndcg@10": mrr, "ndcg@20": mrr, "epochs": 7}]

    monkeypatch.setattr(tie_order, "session_orders", lambda dataset: (["a", "a", "b", "b"], [1, 1, 2, 3]))
    monkeypatch.setattr(tie_order, "run_row", fake_run_row)
    code = tie_order.main(["--dataset=hm-fashion", "--seeds=2020,2021", "--tie-seeds=0", f"--out={tmp_path}"])
    assert code == 0 and len(ran) == 4
    from recbole_tpad.compare import finished_rows

    rows = finished_rows(tmp_path / "hm-fashion-tie-order.csv")
    assert rows[("SASRec-tie_shuffle0", 2021)]["tie_order"] == "shuffle" and rows[("SASRec-tie_shuffle0", 2021)]["tie_seed"] == 0
    assert rows[("SASRec-tie_file", 2020)]["tie_order"] == "file"
    report = (tmp_path / "hm-fashion-tie-order.md").read_text()
    # runs of one order agree (std 0): any difference is beyond their noise, and there is no t-test
    assert "| SASRec | mrr@20 | 2 / 2 | 0.0300 | 0.0000 | 0.0400 | 0.0000 | 0.0100 | +33.3% | 0.0000 | shuffle higher |  |" in report
    # the report alone, from the CSV, runs nothing
    (tmp_path / "hm-fashion-tie-order.md").unlink()
    assert tie_order.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--report_only"]) == 0 and len(ran) == 4
    assert "| SASRec | mrr@20 | 2 / 2 | 0.0300 |" in (tmp_path / "hm-fashion-tie-order.md").read_text()


def test_a_resumed_run_of_other_models_keeps_the_finished_runs(tmp_path, monkeypatch):
    import bench.tie_order as tie_order
    from recbole_tpad.compare import finished_rows

    def fake_run_row(row, args, common, work_dir, out_dir, first_seed, threads):
        name, _, seed, overrides = row
        return [{"model": name, "dataset": args.dataset, "seed": seed, "overrides": "{}", "recall@10": 0.1,
                 "recall@20": 0.2, "mrr@20": 0.03, "ndcg@10": 0.03, "ndcg@20": 0.04, "epochs": 7}]

    monkeypatch.setattr(tie_order, "session_orders", lambda dataset: (["a", "a", "b", "b"], [1, 1, 2, 3]))
    monkeypatch.setattr(tie_order, "run_row", fake_run_row)
    assert tie_order.main(["--dataset=hm-fashion", "--seeds=2020", "--tie-seeds=0", f"--out={tmp_path}"]) == 0
    assert tie_order.main(["--dataset=hm-fashion", "--models=TPAD", "--seeds=2020", "--tie-seeds=0",
                           f"--out={tmp_path}", "--resume"]) == 0
    rows = finished_rows(tmp_path / "hm-fashion-tie-order.csv")
    assert {("SASRec-tie_file", 2020), ("SASRec-tie_shuffle0", 2020), ("TPAD-tie_file", 2020),
            ("TPAD-tie_shuffle0", 2020)} <= set(rows)


def test_file_order_runs_come_from_the_benchmark_rows_of_the_same_settings(tmp_path, monkeypatch):
    import bench.tie_order as tie_order
    from bench.run_benchmark import row_overrides
    from bench.session_outcomes import sessions_path
    from recbole_tpad.compare import finished_rows, write_csv

    ran = []

    def fake_run_row(row, args, common, work_dir, out_dir, first_seed, threads):
        name, _, seed, overrides = row
        ran.append((name, seed))
        return [{"model": name, "dataset": args.dataset, "seed": seed, "overrides": "{}", "recall@10": 0.1,
                 "recall@20": 0.2, "mrr@20": 0.04, "ndcg@10": 0.03, "ndcg@20": 0.04, "epochs": 7}]

    monkeypatch.setattr(tie_order, "session_orders", lambda dataset: (["a", "a", "b", "b"], [1, 1, 2, 3]))
    monkeypatch.setattr(tie_order, "run_row", fake_run_row)
    settings = row_overrides({"show_progress": False, **tie_order.every_row_settings(tie_order.parse_args(
        ["--dataset=hm-fashion"]))}, {})
    benchmark = {"dataset": "hm-fashion", "recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.03, "ndcg@20": 0.04, "epochs": 9}
    write_csv([{**benchmark, "model": "SASRec", "seed": 2020, "mrr@20": 0.0123, "overrides": settings},
               {**benchmark, "model": "SASRec", "seed": 2021, "mrr@20": 0.0456, "overrides": '{"epochs": 3}'}],
              tmp_path / "hm-fashion.csv")
    _write_ranks(tmp_path, "SASRec", 2020, [1, 0, 3], "file-sessions")
    assert tie_order.main(["--dataset=hm-fashion", "--seeds=2020,2021", "--tie-seeds=0", f"--out={tmp_path}",
                           "--file-from-benchmark"]) == 0
    # seed 2020's file-order run is the benchmark's row; seed 2021's row has other settings, so it trains
    assert ran == [("SASRec-tie_shuffle0", 2020), ("SASRec-tie_file", 2021), ("SASRec-tie_shuffle0", 2021)]
    rows = finished_rows(tmp_path / "hm-fashion-tie-order.csv")
    taken = rows[("SASRec-tie_file", 2020)]
    assert taken["mrr@20"] == 0.0123 and taken["row_from"] == "hm-fashion.csv" and taken["tie_order"] == "file"
    assert "row_from" not in rows[("SASRec-tie_file", 2021)]
    assert (sessions_path(tmp_path, "hm-fashion", "SASRec-tie_file", 2020).read_bytes()
            == sessions_path(tmp_path, "hm-fashion", "SASRec", 2020).read_bytes())
    assert "| hm-fashion.csv |" in (tmp_path / "hm-fashion-tie-order.md").read_text()


def _write_ranks(out_dir, name, seed, ranks, digest):
    import numpy as np

    from bench.session_outcomes import _save, sessions_path

    _save(sessions_path(out_dir, "hm-fashion", name, seed), rank=np.asarray(ranks, dtype=np.uint8),
          cutoff=np.int16(20), digest=np.str_(digest))


def test_models_of_one_order_are_paired_over_its_test_sessions_and_other_orders_are_not_mixed(tmp_path):
    from bench.tie_order import between_models_rows, write_tie_report

    # TPAD ranks every target first; SASRec misses every one under the file order and ranks it 2nd when shuffled
    for seed in (2020, 2021):
        _write_ranks(tmp_path, "TPAD-tie_file", seed, [1] * 30, "file-sessions")
        _write_ranks(tmp_path, "SASRec-tie_file", seed, [0] * 30, "file-sessions")
        _write_ranks(tmp_path, "TPAD-tie_shuffle0", seed, [1] * 30, "shuffled-sessions")
        _write_ranks(tmp_path, "SASRec-tie_shuffle0", seed, [2] * 30, "shuffled-sessions")
    rows = [_run(m, o, s, 0.03, t) for m in ("TPAD", "SASRec") for o, t in (("file", ""), ("shuffle0", 0))
            for s in (2020, 2021)]
    paired = {(r["order"], r["metric"]): r for r in between_models_rows(rows, tmp_path, "hm-fashion")}
    assert set(paired) == {(o, m) for o in ("file", "shuffle0") for m in ("mrr@20", "recall@20")}
    assert paired[("file", "mrr@20")]["diff"] == 1.0 and float(paired[("file", "mrr@20")]["Wilcoxon p"]) < 1e-5
    assert paired[("shuffle0", "mrr@20")]["diff"] == 0.5 and paired[("shuffle0", "recall@20")]["diff"] == 0.0
    assert paired[("shuffle0", "recall@20")]["Wilcoxon p"] == "1"  # no session differs
    assert all(r["seeds"] == "2 / 2" and r["sessions"] == 30 for r in paired.values())
    # a run whose file holds other sessions is said, not paired
    _write_ranks(tmp_path, "SASRec-tie_shuffle0", 2021, [2] * 30, "other-sessions")
    notes = [r for r in between_models_rows(rows, tmp_path, "hm-fashion") if r["order"] == "shuffle0"]
    assert len(notes) == 1 and "different test sessions" in notes[0]["note"]
    assert "## TPAD against the other models under each order" in write_tie_report(
        rows, tmp_path, "hm-fashion", "python bench/tie_order.py").read_text()
