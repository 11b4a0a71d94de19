"""How much the order of same-timestamp interactions decides: the share of ties, and models trained
and tested with the file's order and with seeded shuffles of it (``tie_order``, recbole_tpad/data/tie_order.py).

    python bench/tie_order.py --stats-only                          # the tie shares of both datasets
    python bench/tie_order.py --dataset=amazon-beauty               # SASRec, file order and shuffle 0, converged
    python bench/tie_order.py --dataset=amazon-beauty --models=SASRec,TPAD --tie-seeds=0,1 --resume
    python bench/tie_order.py --dataset=amazon-beauty --seeds=2020,2021 --file-from-benchmark --resume
    python bench/tie_order.py --dataset=amazon-beauty --epochs=3 --out=/tmp/ties   # a quick, capped check
    python bench/tie_order.py --dataset=hm-fashion --report_only    # the report from the CSV's rows, runs nothing

The statistic reads the atomic file as RecBole orders it (each session stably sorted by time):
the share of sessions of two or more items whose last two items share a timestamp (the test
target is then the file's choice among them), the same for the validation target, and the share
of sessions whose test target changes under the shuffle of each ``--tie-seeds`` seed.

Each run is one benchmark row (bench/run_one.py, in its own process) named
``<model>-tie_file`` or ``<model>-tie_shuffle<seed>``, with the dataset's benchmark settings
(bench/variants.py) and no epoch cap unless ``--epochs`` sets one; rows go to
``<out>/<dataset>-tie-order.csv`` (default ``docs/results``) and their per-session outcomes under
``<out>/sessions/<dataset>/``. ``--resume`` keeps the finished rows of that CSV made with the same settings, also those
outside ``--models`` and ``--seeds``, so that runs of subsets add up. ``--file-from-benchmark`` takes
each file-order run from ``<out>/<dataset>.csv`` (bench/run_benchmark.py's row of the same model, seed
and settings: the file's order is the benchmark's default) instead of training it again; such a row says
so in its ``row_from`` column, and its per-session file is copied.

``<out>/<dataset>-tie-order.md`` gives every run and the effect of the shuffle per model and metric
(``tie_effect_rows``); with the default ``--out`` the effect table also replaces the block between
``<!-- begin: tie-order-<dataset> -->`` and ``<!-- end: ... -->`` of docs/results.md. The shuffled runs
are tested on other targets than the file's (about 29% of amazon-beauty's, 41% of hm-fashion's test
targets change), so runs cannot be paired session by session: the effect is read across runs, the
training seeds and tie seeds together. Models run under one order share its test sessions, so the report
also pairs TPAD against each other model within each order (``between_models_rows``, bench/significance.py):
whether TPAD's lead holds on the shuffled test sets, session by session.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import _markdown, _outcomes, beyond_noise, noise_verdict, paired_cells, replace_marked_block  # noqa: E402
from bench.run_benchmark import every_row_settings, reusable_rows, row_overrides, run_row  # noqa: E402
from bench.session_outcomes import sessions_path  # noqa: E402
from bench.significance import METRICS, compare_models  # noqa: E402
from recbole_tpad.compare import finished_rows, write_csv  # noqa: E402

DATASETS = ("amazon-beauty", "hm-fashion")
EFFECT_METRICS = ("recall@10", "recall@20", "mrr@20", "ndcg@20")
RUN_COLUMNS = ["model", "tie_order", "tie_seed", "seed", "recall@10", "recall@20", "mrr@20", "ndcg@20", "epochs", "row_from"]
PAIRED_REFERENCE = "TPAD"
PAIRED_COLUMNS = ["order", "vs", "metric", "seeds", PAIRED_REFERENCE, "other", "diff", "rel %", "95% CI of diff",
                  "Wilcoxon p", "sessions", "note"]
EFFECT_COLUMNS = ["model", "metric", "runs (file / shuffle)", "file mean", "file std", "shuffle mean", "shuffle std",
                  "diff", "rel %", "pooled std", "by runs", "Welch p"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="dataset of the runs (the statistic: both datasets, or this one)")
    parser.add_argument("--stats-only", action="store_true", help="print the tie statistic, run nothing")
    parser.add_argument("--models", default="SASRec", help="comma-separated models to run with each order")
    parser.add_argument("--seeds", default="2020", help="training seeds of every run")
    parser.add_argument("--tie-seeds", default="0", help="tie_seed of each shuffled run")
    parser.add_argument("--epochs", type=int, default=None, help="epoch cap for a quick check (default: none, "
                        "early stopping as overall.yaml says)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override of every run")
    parser.add_argument("--out", default=None, help="output folder (default docs/results)")
    parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds allowed per run")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of an existing CSV")
    parser.add_argument("--file-from-benchmark", action="store_true", help="take each file-order run from the "
                        "benchmark CSV's finished row of the same model, seed and settings, where it has one")
    parser.add_argument("--report_only", action="store_true", help="write the report from the CSV's finished rows, run nothing")
    args = parser.parse_args(argv)
    if not args.stats_only and not args.dataset:
        parser.error("--dataset is needed to run models (or give --stats-only)")
    return args


def session_orders(dataset):
    """``(sessions, times)`` of every interaction of ``dataset``'s atomic file, in file order, read as
    RecBole reads it, with the session and time fields of the dataset's config."""
    from recbole_tpad.data.atomic_file import AtomicFile
    from recbole_tpad.quick_start import load_config

    config = load_config("SASRec", dataset)
    atomic = AtomicFile(Path(config["data_path"]) / f"{dataset}.inter", config["field_separator"], config["seq_separator"])
    uid, time = atomic.columns.index(config["USER_ID_FIELD"]), atomic.columns.index(config["TIME_FIELD"])
    sessions, times = [], []
    for _, fields in atomic.rows():
        sessions.append(fields[uid])
        times.append(float(fields[time]))
    return sessions, times


def tie_statistic(sessions, times, tie_seeds=(0,)):
    """Shares of sessions (two or more items) whose test / validation target ties with the item before
    it, and whose test target changes under the shuffle of each tie seed."""
    import numpy as np

    from recbole_tpad.data.tie_order import tie_permutation

    sessions, times = np.asarray(sessions), np.asarray(times, dtype=np.float64)

    def last_items(order):  # each session's items as RecBole orders them: stable by session, then time
        rows = order[np.lexsort((times[order], sessions[order]))]
        ends = np.flatnonzero(np.r_[sessions[rows][1:] != sessions[rows][:-1], True])
        return rows, ends

    rows, ends = last_items(np.arange(len(sessions)))
    starts = np.r_[0, ends[:-1] + 1]
    length = ends - starts + 1
    many, three = length >= 2, length >= 3
    t = times[rows]
    test_tie = many & (t[ends] == t[np.maximum(ends - 1, 0)])
    valid_tie = three & (t[np.maximum(ends - 1, 0)] == t[np.maximum(ends - 2, 0)])
    session_code = np.unique(sessions, return_inverse=True)[1].reshape(-1)
    _, group, size = np.unique(np.stack([session_code, times]), axis=1, return_inverse=True, return_counts=True)
    result = {"sessions": int(len(ends)), "sessions with 2+ items": int(many.sum()),
              "test target ties": float(test_tie.sum() / many.sum()),
              "valid target ties (3+ items)": float(valid_tie.sum() / max(three.sum(), 1)),
              "interactions sharing their session's timestamp": float((size[group.reshape(-1)] > 1).mean())}
    for seed in tie_seeds:
        shuffled, shuffled_ends = last_items(tie_permutation(sessions, times, seed))
        changed = rows[ends] != shuffled[shuffled_ends]  # the same sessions in the same order: sorted by session
        result[f"test target changes, tie_seed={seed}"] = float(changed[many].mean())
    return result


def tie_rows(models, seeds, tie_seeds):
    """(row name, model, seed, overrides) of each run: the file's order, then each shuffle."""
    rows = []
    for model in models:
        for seed in seeds:
            rows.append((f"{model}-tie_file", model, seed, {"tie_order": "file"}))
            rows += [(f"{model}-tie_shuffle{tie_seed}", model, seed, {"tie_order": "shuffle", "tie_seed": tie_seed})
                     for tie_seed in tie_seeds]
    return rows


def benchmark_file_runs(rows, common, out_dir, dataset):
    """``(name, seed) -> row`` of the file-order runs among ``rows`` that ``<out_dir>/<dataset>.csv`` already
    holds: the benchmark's finished row of that model and seed made with the same settings (``tie_order: file``
    is the default, so it is the same run), renamed, with ``row_from`` naming the CSV. Its per-session file
    is copied under the run's name (``recbole_tpad.atomic``), so every run has one."""
    import shutil

    from recbole_tpad.atomic import atomic_path

    benchmark = finished_rows(out_dir / f"{dataset}.csv")
    settings = row_overrides(common, {})
    taken = {}
    for name, model, seed, overrides in rows:
        row = benchmark.get((model, seed))
        if overrides["tie_order"] != "file" or row is None or row.get("overrides") != settings:
            continue
        taken[(name, seed)] = {**row, "model": name, "tie_order": "file", "tie_seed": "",
                               "overrides": row_overrides(common, overrides), "row_from": f"{dataset}.csv"}
        source = sessions_path(out_dir, dataset, model, seed)
        if source.is_file():
            with atomic_path(sessions_path(out_dir, dataset, name, seed)) as tmp:
                shutil.copyfile(source, tmp)
    return taken


def tie_effect_rows(rows):
    """Per model and metric: the file order's runs against the shuffled runs (every tie seed): means
    and stds over runs, ``diff`` = shuffle - file, the pooled std and whether the difference is beyond
    run-to-run noise (``bench.report.beyond_noise``, as the ablation table reads seed noise), and Welch's
    t-test p over the runs (``scipy.stats.ttest_ind``, unequal variances)."""
    from scipy import stats

    runs = {}
    for row in rows:
        if not row.get("error"):
            base, _, order = row["model"].partition("-tie_")
            runs.setdefault(base, {"file": [], "shuffle": []})["file" if order == "file" else "shuffle"].append(row)
    table = []
    for model, sides in runs.items():
        for metric in EFFECT_METRICS:
            file_values, shuffle_values = ([r[metric] for r in sides[side] if isinstance(r.get(metric), (int, float))]
                                           for side in ("file", "shuffle"))
            if not file_values or not shuffle_values:
                continue
            noise = beyond_noise(shuffle_values, file_values)
            diff, pooled, beyond = noise["diff"], noise["pooled"], noise["beyond"]
            verdict = noise_verdict(noise, "shuffle higher", "shuffle lower", runs="runs")
            p = stats.ttest_ind(shuffle_values, file_values, equal_var=False).pvalue if beyond is not None and pooled > 0 else None
            table.append({"model": model, "metric": metric, "runs (file / shuffle)": f"{len(file_values)} / {len(shuffle_values)}",
                          "file mean": noise["mean_b"], "file std": noise["std_b"], "shuffle mean": noise["mean_a"],
                          "shuffle std": noise["std_a"], "diff": diff,
                          "rel %": f"{100 * diff / noise['mean_b']:+.1f}%" if noise["mean_b"] else "", "pooled std": pooled,
                          "by runs": verdict, "Welch p": f"{p:.2g}" if p is not None else ""})
    return table


def between_models_rows(rows, out_dir, dataset, reference=PAIRED_REFERENCE):
    """Per order (``file``, ``shuffle<tie seed>``): ``reference`` against each other model run under it,
    paired over that order's test sessions on the seed-averaged per-session outcomes
    (``bench.significance.compare_models``: Wilcoxon p and a paired bootstrap interval); the runs of one
    order share their test set, so their per-session files pair. Orders without per-session files of
    both models are left out."""
    by_order = {}
    for row in rows:
        if not row.get("error"):
            base, _, order = row["model"].partition("-tie_")
            by_order.setdefault(order, {}).setdefault(base, []).append(row)
    table = []
    for order, by_model in by_order.items():
        ours = _outcomes(by_model.get(reference, []), out_dir, dataset)
        for model, runs in by_model.items():
            theirs = _outcomes(runs, out_dir, dataset) if model != reference and ours else []
            if not theirs:
                continue
            try:
                results = compare_models(ours, theirs)
            except ValueError as error:  # files of other test sessions: said, not paired
                table.append({"order": order, "vs": model, "note": str(error)})
                continue
            table += [{"order": order, "vs": model, **paired_cells(results[metric], metric, reference, ours, theirs)}
                      for metric in METRICS]
    return table


def write_tie_report(rows, out_dir, dataset, command):
    """``<dataset>-tie-order.md``: the effect table, TPAD paired against each other model within each order
    (``between_models_rows``) and every run; the effect table also goes into
    docs/results.md's ``tie-order-<dataset>`` block when ``out_dir`` is docs/results."""
    effect = _markdown(tie_effect_rows(rows), EFFECT_COLUMNS)
    lines = [f"# Same-day order: {dataset}", "", f"- command: `{command}`",
             "- `diff` = shuffle - file over runs (training seeds x tie seeds); `by runs`: beyond twice the pooled "
             "std of the runs or not; Welch p: two-sided t-test over the runs (bench/tie_order.py, `tie_effect_rows`)",
             "", "## Effect of the shuffle", effect, ""]
    paired = between_models_rows(rows, out_dir, dataset)
    if paired:
        lines += [f"## {PAIRED_REFERENCE} against the other models under each order: paired over that order's test sessions",
                  "Each model's per-session outcomes averaged over its runs of the order (`seeds`: "
                  f"{PAIRED_REFERENCE}'s / the other's), then paired session by session (bench/significance.py): "
                  f"`diff` = {PAIRED_REFERENCE} - other; 95% CI: paired bootstrap; p: two-sided Wilcoxon signed-rank.",
                  _markdown(paired, PAIRED_COLUMNS), ""]
    lines += ["## Every run", _markdown(rows, RUN_COLUMNS), ""]
    path = Path(out_dir) / f"{dataset}-tie-order.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    if Path(out_dir).resolve() == (REPO / "docs" / "results").resolve():
        replace_marked_block(REPO / "docs" / "results.md", f"tie-order-{dataset}", effect)
    return path


def main(argv=None):
    args = parse_args(argv)
    tie_seeds = [int(s) for s in args.tie_seeds.split(",")]
    for dataset in [args.dataset] if args.dataset else DATASETS:
        stats = tie_statistic(*session_orders(dataset), tie_seeds=tie_seeds)
        print(f"[ties] {dataset}: " + ", ".join(f"{key} {value:.1%}" if isinstance(value, float) else f"{key} {value:,}"
                                                for key, value in stats.items()), flush=True)
    if args.stats_only:
        return 0
    out_dir = Path(args.out or REPO / "docs" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{args.dataset}-tie-order.csv"
    command = "python bench/tie_order.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        report = write_tie_report(list(finished_rows(csv_path).values()), out_dir, args.dataset, command)
        print(f"[ties] {report}")
        return 0
    common = {"show_progress": False, **every_row_settings(args)}
    rows = tie_rows(args.models.split(","), [int(s) for s in args.seeds.split(",")], tie_seeds)
    wanted = {(name, seed): row_overrides(common, overrides) for name, _, seed, overrides in rows}
    results = reusable_rows(csv_path, wanted, log=True) if args.resume else {}
    if args.file_from_benchmark:
        taken = benchmark_file_runs([row for row in rows if (row[0], row[2]) not in results], common, out_dir, args.dataset)
        results.update(taken)
    # finished runs outside --models and --seeds stay in the CSV, so that runs of subsets add up
    kept = [row for key, row in results.items() if key not in wanted]
    work_dir = Path(tempfile.mkdtemp(prefix=f"ties-{args.dataset}-"))
    threads = os.cpu_count() or 1
    args.jobs = 1  # run_row reads it: one run at a time, torch's default threads

    def finished():  # this run's rows in its order, then the kept ones
        return [results[(name, seed)] for name, _, seed, _ in rows if (name, seed) in results] + kept

    report = write_tie_report(finished(), out_dir, args.dataset, command)
    for row in rows:
        if (row[0], row[2]) in results:
            source = results[(row[0], row[2])].get("row_from") or "the existing CSV (--resume)"
            print(f"[ties] {row[0]} seed={row[2]}: kept from {source}", flush=True)
            continue
        [result] = run_row(row, args, common, work_dir, out_dir, None, threads)  # no derived row: one result
        result["tie_order"] = row[3]["tie_order"]
        result["tie_seed"] = row[3].get("tie_seed", "")
        results[(row[0], row[2])] = result
        done = finished()
        write_csv(done, csv_path)
        write_tie_report(done, out_dir, args.dataset, command)
        print(f"[ties] {row[0]} seed={row[2]}: " + (result.get("error") or " ".join(
            f"{metric}={result[metric]:.4f}" for metric in ("recall@10", "recall@20", "mrr@20", "ndcg@10", "ndcg@20"))
            + f" epochs={result.get('epochs')}"), flush=True)
    failed = [name for (name, _), row in results.items() if row.get("error")]
    print(f"[ties] {csv_path}, {report}; failed runs: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
