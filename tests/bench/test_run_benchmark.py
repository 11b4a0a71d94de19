"""The benchmark harness keeps finished rows on --resume and runs rows in parallel with --jobs."""

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import run_benchmark  # noqa: E402


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "dataset", "seed", "recall@20", "mrr@20", "epochs", "settings", "overrides",
                                               "error"])
        writer.writeheader()
        writer.writerows(rows)


def _fake_rows(monkeypatch, meanwhile=None):
    """Rows that 'finish' at once with recall@20 0.1 (``meanwhile()`` runs first, as another run's work):
    the names run, in order, and each report's rows by model."""
    ran, reports = [], []

    def fake_run_row(row, args, *rest):
        if meanwhile:
            meanwhile()
        ran.append(row[0])
        return [{"model": row[0], "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05}]

    monkeypatch.setattr(run_benchmark, "run_row", fake_run_row)
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append({r["model"]: r for r in rows}))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    return ran, reports


def test_finished_rows_keeps_rows_without_error_and_parses_numbers(tmp_path):
    path = tmp_path / "hm-fashion.csv"
    _write_csv(path, [
        {"model": "GRU4Rec", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.0245", "mrr@20": "0.0031", "epochs": "12",
         "settings": "123e45678901"},
        {"model": "SASRec", "dataset": "hm-fashion", "seed": "2020", "error": "exit 1: boom"},
    ])
    kept = run_benchmark.finished_rows(path)
    assert list(kept) == [("GRU4Rec", 2020)]
    row = kept[("GRU4Rec", 2020)]
    assert row["recall@20"] == 0.0245 and row["epochs"] == 12 and "error" not in row
    assert row["settings"] == "123e45678901"  # a fingerprint stays text even when it reads as a float
    assert run_benchmark.finished_rows(tmp_path / "missing.csv") == {}


def test_resume_runs_only_missing_rows_and_keeps_the_rest(tmp_path, monkeypatch):
    _write_csv(tmp_path / "hm-fashion.csv", [
        {"model": "GRU4Rec", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"},
        {"model": "NARM", "dataset": "hm-fashion", "seed": "2020", "error": "exit 1: boom", "overrides": "{}"},
    ])
    ran = []

    def fake_run_row(row, args, common, work_dir, out_dir, first_seed, threads, derived):
        ran.append((row[0], row[2], threads))
        return [{"model": row[0], "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05}]

    reports = []
    monkeypatch.setattr(run_benchmark, "run_row", fake_run_row)
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append(list(rows)))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    code = run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020",
                               "--models=NARM,STAMP", "--resume", "--jobs=2"])
    assert code == 0
    assert sorted(name for name, _, _ in ran) == ["NARM", "STAMP"]  # GRU4Rec kept, the failed NARM rerun
    assert all(threads >= 1 for _, _, threads in ran)
    final = [row["model"] for row in reports[-1]]
    assert final == ["GRU4Rec", "NARM", "STAMP"]  # benchmark order, the kept row included
    assert reports[-1][0]["recall@20"] == 0.5

    ran.clear()  # one row at a time, the rows run in the order --models names them
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path / 'order'}", "--seeds=2020",
                               "--models=STAMP,GRU4Rec,NARM"]) == 0
    assert [name for name, _, _ in ran] == ["STAMP", "GRU4Rec", "NARM"]
    assert [row["model"] for row in reports[-1]] == ["GRU4Rec", "NARM", "STAMP"]

    ran.clear()  # seed by seed: every named model of the first seed before the next seed
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path / 'seeds'}", "--seeds=2020,2021",
                               "--models=SASRec,GRU4Rec"]) == 0
    assert [(name, seed) for name, seed, _ in ran] == [("SASRec", 2020), ("GRU4Rec", 2020), ("SASRec", 2021), ("GRU4Rec", 2021)]


def test_a_resume_run_with_fewer_seeds_keeps_the_other_seeds_rows(tmp_path, monkeypatch):
    _write_csv(tmp_path / "hm-fashion.csv", [
        {"model": "TPAD-no_hmie", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25",
         "overrides": '{"stage_hmie": false}'},
    ])
    reports = []
    monkeypatch.setattr(run_benchmark, "run_row", lambda row, args, *rest: [
        {"model": row[0], "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05}])
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append(list(rows)))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2021",
                               "--models=TPAD-no_hmie,TPAD-no_gen", "--resume"]) == 0
    # the seed-2020 row stays in the table (and so in the CSV), beside its model's new seed, seeds in order
    assert [(row["model"], row["seed"]) for row in reports[-1]] == [
        ("TPAD-no_gen", 2021), ("TPAD-no_hmie", 2020), ("TPAD-no_hmie", 2021)]
    assert reports[-1][1]["recall@20"] == 0.5
    order = [("A", 1), ("B", 1)]
    assert run_benchmark.with_other_seeds(order, {("A", 0): {}, ("C", 0): {}}) == [("A", 1), ("A", 0), ("B", 1)]


def test_a_run_of_a_later_seed_keeps_the_benchmarks_first_seed(tmp_path, monkeypatch):
    # the CSV holds seeds 2020 and 2021; a run of seed 2022 alone must not make 2022 the first seed: the
    # rows that run once (NARM; STAMP is the best other stock model) are not scheduled again, and the
    # table lists every seed in order
    _write_csv(tmp_path / "hm-fashion.csv", [
        {"model": model, "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": mrr, "overrides": "{}"}
        for model, mrr in [("NARM", "0.25"), ("STAMP", "0.3")]] + [
        {"model": "SASRec", "dataset": "hm-fashion", "seed": str(seed), "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"}
        for seed in (2020, 2021)])
    ran, headers = [], []
    monkeypatch.setattr(run_benchmark, "run_row", lambda row, args, *rest: ran.append((row[0], row[2])) or [
        {"model": row[0], "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05}])
    reports = []
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: (reports.append(list(rows)),
                                                                              headers.append(k["header"])))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2022",
                               "--models=SASRec,NARM", "--resume"]) == 0
    assert ran == [("SASRec", 2022)]
    assert [(row["model"], row["seed"]) for row in reports[-1]] == [
        ("NARM", 2020), ("STAMP", 2020), ("SASRec", 2020), ("SASRec", 2021), ("SASRec", 2022)]
    assert "NARM" not in headers[-1]["missing rows"] and "STAMP (seed 2022)" in headers[-1]["missing rows"]
    assert "GRU4Rec (seed 2020)" in headers[-1]["missing rows"]
    assert run_benchmark.benchmark_seeds([2022], {("A", 2021): {}, ("B", 2020): {}}) == [2020, 2021, 2022]


def test_set_data_path_reads_the_dataset_from_that_folder(tmp_path, monkeypatch):
    from recbole_tpad.utils import DatasetNotFoundError

    (tmp_path / "data" / "mini" / "images").mkdir(parents=True)  # a set with photos: image_only is a row
    (tmp_path / "data" / "mini" / "mini.inter").write_text("session_id:token\titem_id:token\ttimestamp:float\n")
    ran = []
    monkeypatch.setattr(run_benchmark, "run_row", lambda row, args, common, *a: ran.append((row[0], common["data_path"])) or [])
    monkeypatch.setattr(run_benchmark, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    args = ["--dataset=mini", f"--out={tmp_path / 'out'}", "--seeds=1", "--models=TPAD-image_only"]
    with pytest.raises(DatasetNotFoundError):
        run_benchmark.main(args)
    assert run_benchmark.main(args + [f"--set=data_path={tmp_path / 'data'}"]) == 0
    assert ran == [("TPAD-image_only", str(tmp_path / "data"))]


def test_a_resume_run_merges_rows_another_run_finished_meanwhile(tmp_path, monkeypatch):
    csv_path = tmp_path / "hm-fashion.csv"
    gru = {"model": "GRU4Rec", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"}
    _write_csv(csv_path, [gru, {"model": "STAMP", "dataset": "hm-fashion", "seed": "2020", "error": "killed", "overrides": "{}"}])

    def fake_run_row(row, args, *rest):  # meanwhile a second run finishes STAMP and rewrites the CSV
        _write_csv(csv_path, [gru, {"model": "STAMP", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.3",
                                    "mrr@20": "0.1", "overrides": "{}"}])
        return [{"model": row[0], "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05}]

    reports = []
    monkeypatch.setattr(run_benchmark, "run_row", fake_run_row)
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append(list(rows)))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020", "--models=NARM",
                               "--resume"]) == 0
    final = {row["model"]: row for row in reports[-1]}
    assert list(final) == ["GRU4Rec", "NARM", "STAMP"]
    assert final["STAMP"]["recall@20"] == 0.3  # the other run's row, not dropped


def test_a_partial_table_names_its_missing_rows():
    order = [("GRU4Rec", 2020), ("TPAD", 2020), ("TPAD", 2021)]
    header = run_benchmark.with_missing_rows({"date": "today"}, order, {("GRU4Rec", 2020): {}})
    assert header == {"date": "today", "missing rows": "TPAD (seed 2020), TPAD (seed 2021)"}
    assert run_benchmark.with_missing_rows({"date": "today"}, order[:1], {("GRU4Rec", 2020): {}}) == {"date": "today"}


def test_resume_reruns_rows_made_with_other_overrides(tmp_path, monkeypatch):
    _write_csv(tmp_path / "hm-fashion.csv", [
        {"model": "GRU4Rec", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"},
        {"model": "NARM", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25",
         "overrides": '{"enable_amp": true, "epochs": 3}'},
        {"model": "STAMP", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25"},  # not recorded
    ])
    ran, reports = [], []
    monkeypatch.setattr(run_benchmark, "run_row", lambda row, args, common, *rest: ran.append(row[0]) or [{
        "model": row[0], "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05,
        "overrides": run_benchmark.row_overrides(common, row[3])}])
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append(list(rows)))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    argv = ["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020", "--models=GRU4Rec,NARM,STAMP", "--resume"]
    assert run_benchmark.main(argv + ["--epochs=3", "--set", "enable_amp=true"]) == 0
    assert sorted(ran) == ["GRU4Rec", "STAMP"]  # NARM's row was made with these settings; the others were not
    assert {row["overrides"] for row in reports[-1]} == {'{"enable_amp": true, "epochs": 3}'}


def test_every_row_settings_layer_dataset_defaults_epochs_and_set():
    args = run_benchmark.parse_args(["--dataset=amazon-beauty", "--epochs=7", "--set", "learning_rate=0.01",
                                     "--set", "views=[id, text]"])
    settings = run_benchmark.every_row_settings(args)
    assert settings == {**run_benchmark.DATASET_SETTINGS["amazon-beauty"], "epochs": 7, "learning_rate": 0.01,
                        "views": ["id", "text"]}
    line = run_benchmark.settings_line("amazon-beauty", settings)
    assert line.startswith("at most 7 epochs (a row made under a lower limit records it in `epoch_limit`), early stopping "
                           "when 6 evaluations in a row stay below the best valid MRR@20 (`stopping_step: 5`)")
    assert '"learning_rate": 0.01' in line and '"epochs"' not in line
    assert "when 11 evaluations in a row" in run_benchmark.settings_line("hm-fashion", {})  # hm-fashion.yaml's stopping_step
    bad = run_benchmark.parse_args(["--dataset=hm-fashion", "--set", "epochs"])
    try:
        run_benchmark.every_row_settings(bad)
    except SystemExit as error:
        assert "KEY=VALUE" in str(error)
    else:
        raise AssertionError("--set without '=' must fail")


def test_report_lists_item_encoding_only_for_rows_that_encoded(tmp_path):
    from bench.report import write_report

    rows = [
        {"model": "TPAD", "dataset": "d", "seed": 2020, "recall@20": 0.1, "mrr@20": 0.05, "representation_s": 0.4},
        {"model": "TPAD", "dataset": "d", "seed": 2021, "recall@20": 0.1, "mrr@20": 0.05, "representation_s": 212.0,
         "encode_items_per_s": 57.1, "flop_bound_items_per_s": 301.5},
    ]
    write_report(rows, tmp_path, "d", header={"date": "today"})
    text = (tmp_path / "d.md").read_text()
    section = text.split("## Item encoding", 1)[1]
    assert "| TPAD | 2021 | 212.0 | 57.1 | 301.5 |" in section and "| TPAD | 2020 |" not in section


def test_encoding_speed_only_for_views_encoded_in_the_run():
    from bench.run_one import encoding_speed
    from recbole_tpad.features import ItemViews

    views = ItemViews({}, None, manifest={"seconds": 200.0}, folder=None)
    assert encoding_speed(None, None, views, {"representation_s": 3.1}) == {}  # loaded from the cache
    assert encoding_speed(None, None, views, {}) == {}  # not a TPAD run with stages
    assert encoding_speed(None, None, None, {}) == {}  # a model without item views


def test_labels_of_coincident_points_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from bench.report import label_points

    fig, ax = plt.subplots()
    ax.scatter([1, 1, 1, 5], [0.1, 0.1, 0.1, 0.5])
    label_points(ax, [(1, 0.1), (1, 0.1), (1, 0.1), (5, 0.5)], ["TPAD-no_amie", "TPAD-no_hmie", "TPAD", "SASRec"])
    fig.canvas.draw()
    boxes = [Text.get_window_extent(label) for label in ax.texts]  # the text, less the line to its point
    plt.close(fig)
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_stage_ablations_and_curve_rows_run_with_every_seed_and_make_a_curve(tmp_path):
    from bench.report import curve_comparisons, stage2_curve, write_report

    rows = run_benchmark.benchmark_rows("hm-fashion", False, [1, 2, 3], has_images=False)
    seeds = {}
    for name, _, seed, _ in rows:
        seeds.setdefault(name, []).append(seed)
    assert seeds["TPAD-no_amie"] == [1, 2, 3] and seeds["TPAD-pairs_256"] == [1, 2, 3]
    assert seeds["TPAD-id_only"] == [1]  # the other variants keep the first seed
    results = [{"model": name, "seed": seed, "recall@20": 0.1 + 0.01 * i, "mrr@20": 0.03,
                "stage2_heldout_recall@10_trained": 0.2, "stage2_amie_recall@1": 0.1 * seed}
               for i, (name, _, seed, _) in enumerate(rows) if name in ("TPAD", "TPAD-no_distill", "TPAD-pairs_256")]
    curve = stage2_curve(results, default_pairs=1024)
    assert [p["stage-2 pairs"] for p in curve] == [0, 256, 1024] and all(p["seeds"] == 3 for p in curve)
    assert curve[1]["stage2_amie_recall@1"] == "0.2000 +- 0.1000"  # AMIE's alignment, mean +- std of seeds 1-3
    compared = {(c["pairs"], c["metric"]): c for c in curve_comparisons(results, curve)}
    assert len(compared) == 6  # three points, two at a time, two metrics
    step = compared[("256 vs 0", "recall@20")]  # seeds 0.54-0.56 against 0.39-0.41: std 0.01 a side
    step_values = [[r["recall@20"] for r in results if r["model"] == m] for m in ("TPAD-pairs_256", "TPAD-no_distill")]
    assert step["diff"] == pytest.approx(statistics.mean(step_values[0]) - statistics.mean(step_values[1]))
    assert step["pooled std"] == pytest.approx(0.01) and step["by seeds"] == "beyond seed noise"
    assert compared[("1024 vs 256", "mrr@20")]["diff"] == 0 and compared[("1024 vs 256", "mrr@20")]["by seeds"] == "within seed noise"
    write_report(results, tmp_path, "hm-fashion", header={})
    text = (tmp_path / "hm-fashion.md").read_text()
    assert "Learning curve of the Transition Distillation Stage" in text and "held out" in text
    assert "| 256 vs 0 | recall@20 |" in text
    assert (tmp_path / "hm-fashion-stage2-curve.png").is_file()


def test_tpad_runs_give_the_no_transition_rows_unless_the_benchmark_changes_how_the_term_runs(tmp_path, monkeypatch):
    ran = []

    def fake_run_row(row, args, common, work_dir, out_dir, first_seed, threads, derived):
        ran.append((row[0], row[2], derived and derived[0]))
        rows = [row] + ([derived] if derived else [])
        return [{"model": r[0], "dataset": args.dataset, "seed": r[2], "recall@20": 0.1, "mrr@20": 0.05,
                 "overrides": run_benchmark.row_overrides(common, r[3])} for r in rows]

    reports = []
    monkeypatch.setattr(run_benchmark, "run_row", fake_run_row)
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append(list(rows)))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    argv = ["--dataset=hm-fashion", "--seeds=2020,2021", "--models=TPAD,TPAD-no_transition,SASRec"]
    assert run_benchmark.main(argv + [f"--out={tmp_path / 'a'}"]) == 0
    assert ran == [("TPAD", 2020, "TPAD-no_transition"), ("SASRec", 2020, None),
                   ("TPAD", 2021, "TPAD-no_transition"), ("SASRec", 2021, None)]
    assert {(r["model"], r["seed"]) for r in reports[-1]} >= {("TPAD-no_transition", 2020), ("TPAD-no_transition", 2021)}

    ran.clear()  # the term learned in training: the row without it trains on its own
    assert run_benchmark.main(argv + [f"--out={tmp_path / 'b'}", "--set", "transition_fusion=joint"]) == 0
    assert ("TPAD-no_transition", 2020, None) in ran and ("TPAD", 2020, None) in ran


def test_a_derived_row_is_an_error_when_its_tpad_run_fails(tmp_path, monkeypatch):
    def failing(command, **kwargs):
        Path(kwargs["stdout"].name).write_text("Traceback\nRuntimeError: out of memory\n")
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(run_benchmark.subprocess, "run", failing)
    args = run_benchmark.parse_args(["--dataset=hm-fashion"])
    derived = ("TPAD-no_transition", "TPAD", 2020, {"transition_score": False})
    rows = run_benchmark.run_row(("TPAD", "TPAD", 2020, {}), args, {}, tmp_path, tmp_path, 2020, 1, derived)
    assert [r["model"] for r in rows] == ["TPAD", "TPAD-no_transition"]
    assert "out of memory" in rows[0]["error"] and "not derived from TPAD seed 2020" in rows[1]["error"]
    assert rows[1]["overrides"] == '{"transition_score": false}'


def test_report_only_runs_nothing_and_rebuilds_the_tables_from_the_csv(tmp_path, monkeypatch):
    _write_csv(tmp_path / "hm-fashion.csv", [
        {"model": "GRU4Rec", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"},
        {"model": "NARM", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25",
         "overrides": '{"epochs": 3}'},  # made with other settings: not in the table
    ])
    reports = []
    monkeypatch.setattr(run_benchmark, "run_row", lambda *a, **k: pytest.fail("--report_only ran a row"))
    monkeypatch.setattr(run_benchmark, "write_report", lambda rows, *a, **k: reports.append(list(rows)))
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--report_only"]) == 0
    assert [row["model"] for row in reports[-1]] == ["GRU4Rec"]


def test_the_idle_bound_rescales_the_measured_bound_to_the_idle_rate():
    from bench.bench_features import IDLE_BF16_GFLOPS, idle_bound

    # measured at half the idle rate, the bound takes 2 s for 100 items; at the idle rate 1 s
    assert idle_bound({"seconds": 2.0}, 100, IDLE_BF16_GFLOPS / 2, "bf16") == {
        "idle_bound_items_per_s": 100.0, "idle_gflops": IDLE_BF16_GFLOPS}
    assert idle_bound({"seconds": 2.0}, 100, 150.0, "fp32") == {}


def test_report_marks_rows_at_the_epoch_limit_and_counts_each_run_once(tmp_path):
    from bench.report import headline, row_hours, write_report

    rows = [{"model": "GRU4Rec", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03, "epochs": 50, "total_s": 3600.0},
            {"model": "GRU4Rec", "seed": 2, "recall@20": 0.1, "mrr@20": 0.03, "epochs": 31, "total_s": 1800.0},
            {"model": "TPAD", "seed": 1, "recall@20": 0.2, "mrr@20": 0.04, "epochs": 12, "total_s": 7200.0},
            # TPAD-no_transition comes from TPAD's run of the seed: same seed and total_s, one run
            {"model": "TPAD-no_transition", "seed": 1, "recall@20": 0.2, "mrr@20": 0.04, "epochs": 12, "total_s": 7200.0},
            {"model": "SASRec", "seed": 1, "error": "exit 1: boom"}]
    assert {h["model"]: h["at epoch limit"] for h in headline(rows, epoch_limit=50)}["GRU4Rec"] == "1 of 2"
    assert "at epoch limit" not in headline(rows)[0]
    assert row_hours(rows) == (3.5, 3)
    write_report(rows, tmp_path, "d", header={"date": "today"}, epoch_limit=50)
    text = (tmp_path / "d.md").read_text()
    assert "- row time: 3.5 h over 3 runs" in text
    assert "| GRU4Rec | 2 | 1 of 2 |" in text and "| TPAD | 1 | 0 of 1 |" in text


def test_report_names_the_rows_that_trained_in_fp32_for_want_of_native_bf16(tmp_path):
    from bench.report import fp32_note, write_report

    asked = '{"enable_amp": true}'
    rows = [{"model": "SASRec", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03, "overrides": asked},  # before the column
            {"model": "SASRec", "seed": 2, "recall@20": 0.1, "mrr@20": 0.03, "overrides": asked,
             "cpu": "AVX512+bf16", "enable_amp": True},
            {"model": "SRGNN", "seed": 2, "recall@20": 0.1, "mrr@20": 0.03, "overrides": asked,
             "cpu": "AVX2", "enable_amp": "False"},  # as read back from the CSV
            {"model": "GRU4Rec", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03, "overrides": "{}",
             "cpu": "AVX2", "enable_amp": False}]  # never asked for it
    assert fp32_note(rows).startswith("SRGNN 2: fp32 on a CPU without native bf16 (AVX2).")
    assert fp32_note(rows[:2]) is None
    write_report(rows, tmp_path, "d", header={"date": "today"})
    assert "- precision: SRGNN 2: fp32 on a CPU without native bf16 (AVX2)." in (tmp_path / "d.md").read_text()


def test_report_names_the_rows_that_trained_on_a_gpu(tmp_path):
    from bench.report import gpu_note, write_report

    rows = [{"model": "TPAD", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03, "gpu": ""},  # on the CPU
            {"model": "TPAD", "seed": 2, "recall@20": 0.1, "mrr@20": 0.03, "gpu": "NVIDIA H200", "enable_amp": "True"},
            {"model": "STAMP", "seed": 2, "recall@20": 0.1, "mrr@20": 0.03, "gpu": "NVIDIA H200", "enable_amp": True},
            {"model": "SASRec", "seed": 2, "recall@20": 0.1, "mrr@20": 0.03, "gpu": "NVIDIA H200", "enable_amp": True,
             "amp_dtype": "bfloat16"},
            {"model": "GRU4Rec", "seed": 2, "error": "exit 1: boom", "gpu": "NVIDIA H200"},  # failed: not named
            {"model": "SASRec", "seed": 1, "recall@20": 0.1, "mrr@20": 0.03}]  # before the column
    # rows before the amp_dtype column trained in RecBole's GPU default, float16
    assert gpu_note(rows).startswith("TPAD 2, STAMP 2: on one NVIDIA H200, autocast float16; "
                                     "SASRec 2: on one NVIDIA H200, autocast bfloat16 (")
    assert gpu_note(rows[:1] + rows[-1:]) is None
    write_report(rows, tmp_path, "d", header={"date": "today"})
    assert "- GPU rows: TPAD 2, STAMP 2: on one NVIDIA H200, autocast float16;" in (tmp_path / "d.md").read_text()


def test_the_best_other_stock_model_runs_with_every_seed():
    from bench.variants import best_other_stock

    finished = [{"model": "NARM", "seed": 1, "mrr@20": 0.017}, {"model": "STAMP", "seed": 1, "mrr@20": 0.005},
                {"model": "SASRec", "seed": 1, "mrr@20": 0.05},  # a headline model: not a candidate
                {"model": "BERT4Rec", "seed": 2, "mrr@20": 0.09}]  # not the first seed
    assert best_other_stock(finished, first_seed=1) == "NARM"
    assert best_other_stock([], first_seed=1) is None
    seeds = {}
    for name, _, seed, _ in run_benchmark.benchmark_rows("hm-fashion", False, [1, 2, 3], False, best_other="NARM"):
        seeds.setdefault(name, []).append(seed)
    assert seeds["NARM"] == [1, 2, 3] and seeds["SASRec"] == [1, 2, 3] and seeds["STAMP"] == [1]


def test_each_row_keeps_its_train_state_under_the_out_dir_one_file_per_overrides(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(run_benchmark.subprocess, "run", lambda command, **kw: commands.append(command)
                        or subprocess.CompletedProcess(command, 1))
    args = run_benchmark.parse_args(["--dataset=hm-fashion"])
    for overrides in ({}, {"epochs": 3}):
        run_benchmark.run_row(("SASRec", "SASRec", 2020, overrides), args, {}, tmp_path, tmp_path / "out", 2020, 1)
    states = [arg.split("=", 1)[1] for command in commands for arg in command if arg.startswith("--train_state=")]
    assert len(states) == 2 and states[0] != states[1]
    assert all(Path(state).parent == tmp_path / "out" / "state" / "hm-fashion" for state in states)


def test_a_row_at_a_lower_epoch_limit_trains_on_and_the_report_reads_each_rows_own_limit(tmp_path, monkeypatch):
    from bench.report import headline

    rows = [{"model": "STAMP", "seed": 2020, "recall@20": 0.09, "mrr@20": 0.03, "epochs": 50, "epoch_limit": 50},
            {"model": "SRGNN", "seed": 2020, "recall@20": 0.08, "mrr@20": 0.02, "epochs": 26, "epoch_limit": 50},
            {"model": "NARM", "seed": 2020, "recall@20": 0.08, "mrr@20": 0.02, "epochs": 300, "epoch_limit": 300}]
    assert {h["model"]: h["at epoch limit"] for h in headline(rows, epoch_limit=300)} == {
        "STAMP": "1 of 1", "SRGNN": "0 of 1", "NARM": "1 of 1"}
    with open(tmp_path / "hm-fashion.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "dataset", "overrides"])
        writer.writeheader()
        writer.writerows(dict(row, dataset="hm-fashion", overrides="{}") for row in rows)
    ran, reports = _fake_rows(monkeypatch)
    argv = ["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020", "--resume"]
    assert run_benchmark.main(argv + ["--models=SRGNN"]) == 0
    assert ran == [] and reports[-1]["STAMP"]["recall@20"] == 0.09  # not run: STAMP keeps its row
    assert run_benchmark.main(argv + ["--models=STAMP,SRGNN,NARM"]) == 0
    # STAMP reached its limit of 50, below this run's 300: it trains on; SRGNN stopped early and NARM's limit
    # is this run's: both kept
    assert ran == ["STAMP"] and reports[-1]["STAMP"]["recall@20"] == 0.1


def test_rerun_runs_named_finished_rows_again_and_keeps_each_old_row_until_replaced(tmp_path, monkeypatch):
    old = [{"model": name, "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"}
           for name in ("GRU4Rec", "SASRec", "KDSR")]
    _write_csv(tmp_path / "hm-fashion.csv", old)
    ran, reports = _fake_rows(monkeypatch)
    argv = ["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020", "--models=SASRec,KDSR"]
    with pytest.raises(SystemExit, match="--resume"):
        run_benchmark.main(argv + ["--rerun"])
    assert run_benchmark.main(argv + ["--resume", "--rerun"]) == 0
    assert ran == ["SASRec", "KDSR"]  # GRU4Rec, not named, is kept
    # after the first row, the second still has its old row in the table; in the end both are new
    assert [reports[0][name]["recall@20"] for name in ("GRU4Rec", "SASRec", "KDSR")] == [0.5, 0.1, 0.5]
    assert [reports[-1][name]["recall@20"] for name in ("GRU4Rec", "SASRec", "KDSR")] == [0.5, 0.1, 0.1]


def test_rerunning_tpad_makes_its_transition_score_off_row_again_from_the_new_model(tmp_path, monkeypatch):
    _write_csv(tmp_path / "hm-fashion.csv", [
        {"model": name, "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"}
        for name in ("TPAD", "TPAD-no_transition")])
    derived = []
    monkeypatch.setattr(run_benchmark, "run_row", lambda row, args, *rest: derived.append((row[0], rest[-1] and rest[-1][0])) or [
        {"model": name, "dataset": args.dataset, "seed": row[2], "recall@20": 0.1, "mrr@20": 0.05}
        for name in [row[0]] + ([rest[-1][0]] if rest[-1] else [])])
    monkeypatch.setattr(run_benchmark, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(run_benchmark, "run_header", lambda args, common: {})
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020", "--models=TPAD",
                               "--resume", "--rerun"]) == 0
    assert derived == [("TPAD", "TPAD-no_transition")]  # one run, which gives both rows


def test_a_row_another_run_replaced_meanwhile_replaces_the_kept_one(tmp_path, monkeypatch):
    csv_path = tmp_path / "hm-fashion.csv"
    gru = {"model": "GRU4Rec", "dataset": "hm-fashion", "seed": "2020", "recall@20": "0.5", "mrr@20": "0.25", "overrides": "{}"}
    _write_csv(csv_path, [gru])
    # meanwhile a --rerun run replaces GRU4Rec's row
    _, reports = _fake_rows(monkeypatch, meanwhile=lambda: _write_csv(csv_path, [dict(gru, **{"recall@20": "0.4"})]))
    assert run_benchmark.main(["--dataset=hm-fashion", f"--out={tmp_path}", "--seeds=2020", "--models=NARM",
                               "--resume"]) == 0
    assert reports[-1]["GRU4Rec"]["recall@20"] == 0.4 and reports[-1]["NARM"]["recall@20"] == 0.1
