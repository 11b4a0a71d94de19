"""Regenerate the benchmark of one dataset: every model, TPAD's ablations, cold start, cost, figures.

    python bench/run_benchmark.py --dataset=hm-fashion
    python bench/run_benchmark.py --dataset=amazon-beauty
    python bench/run_benchmark.py --dataset=hm-fashion --quick     # smoke run on a small sample
    python bench/run_benchmark.py --dataset=hm-fashion --jobs=2 --resume   # 2 rows at a time, keep finished rows
    python bench/run_benchmark.py --dataset=hm-fashion --report_only     # tables and figures from the CSV's rows

Writes ``docs/results/<dataset>.csv`` (one row per model and seed), ``docs/results/<dataset>.md``
(headline table with mean and std over seeds, TPAD's paired tests against the other headline
models, published anchors, all rows, cold start, cost; date, machine, versions and the command at
the top), the figures beside them, and each row's per-test-session outcomes under
``docs/results/sessions/<dataset>/<row>-<seed>.npz`` (bench/session_outcomes.py), which the paired
tests read. Each row runs in its own process
(bench/run_one.py), so its peak memory is its own and a crash loses that row only. ``--quick``
writes under ``results/bench-quick/`` unless ``--out`` says otherwise, and marks the tables as a
smoke run. ``--jobs=N`` runs N rows at once, each with cores/N torch threads (per-row timings
then share the machine; the Markdown says so). ``--resume`` keeps the rows of an existing
``<dataset>.csv`` that finished without error with the same config overrides (column
``overrides``) and runs only the others: use it after an interruption, not after changing the code.
It keeps them also where ``--models`` or ``--seeds`` leave them out, so that runs of subsets add up.
``--rerun`` (with ``--resume``) runs the finished rows that ``--models`` and ``--seeds`` name again, e.g.
rows made before a column or per-session file existed; the CSV keeps each old row until its new one
replaces it. A TPAD row brings its ``TPAD-no_transition`` row along, which tests the same model.
A row's fit saves its state after every validation (``train_state_file``, under
``<out>/state/<dataset>/``), so a row cut off mid-fit goes on from its last validation when run again.
Every row runs with ``DATASET_SETTINGS[dataset]`` (bench/variants.py), then ``--epochs`` and
``--set``, on top of the YAML defaults; the Markdown header lists them. ``TPAD-no_transition`` of a
seed comes from TPAD's run of that seed (its trained model tested with the transition score off,
``derived_rows``) when both are to run, not from a second training of the same weights.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import at_epoch_limit, write_report  # noqa: E402
from bench.sample import write_sample  # noqa: E402
from bench.session_outcomes import sessions_path  # noqa: E402
from bench.variants import (  # noqa: E402
    DATASET_SETTINGS,
    HEADLINE_MODELS,
    QUICK_OVERRIDES,
    STOCK_MODELS,
    TRANSITION_KEYS,
    best_other_stock,
    tpad_variants,
    variant_seeds,
)
from recbole_tpad.compare import finished_rows  # noqa: E402
from recbole_tpad.store import stable_hash  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--quick", action="store_true", help="small sample, one epoch, tiny TPAD backbone")
    parser.add_argument("--seeds", default="2020,2021,2022", help="seeds of the headline rows")
    parser.add_argument("--models", default=None, help="comma-separated subset of rows to run, seed by seed, in this order")
    parser.add_argument("--out", default=None, help="output folder (default docs/results, quick: results/bench-quick)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch limit (default: overall.yaml's)")
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds allowed per row")
    parser.add_argument("--jobs", type=int, default=1, help="rows run at once (each gets cores/jobs threads)")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of an existing <dataset>.csv")
    parser.add_argument("--rerun", action="store_true",
                        help="with --resume: run the finished rows --models/--seeds name again, each replacing its old row")
    parser.add_argument("--report_only", action="store_true",
                        help="run nothing: rebuild the tables and figures from the finished rows of <dataset>.csv")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (YAML value) for every row, e.g. --set enable_amp=True")
    return parser.parse_args(argv)


def benchmark_rows(dataset, quick, seeds, has_images, best_other=None):
    """(row name, model, seed, overrides) for every row of the benchmark; ``best_other`` (a stock model)
    runs with every seed, beside the headline models."""
    rows = []
    for model in STOCK_MODELS + ["KDSR", "TPAD"]:
        for seed in seeds if model in HEADLINE_MODELS or model == best_other else seeds[:1]:
            rows.append((model, model, seed, {}))
    for name, overrides in tpad_variants(has_images).items():
        for seed in variant_seeds(name, seeds):
            rows.append((f"TPAD-{name}", "TPAD", seed, overrides))
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.rerun and not args.resume:
        raise SystemExit("--rerun replaces rows of an existing CSV: use it with --resume")
    run_seeds = [int(s) for s in args.seeds.split(",")]  # the seeds this run trains
    out_dir = Path(args.out or (REPO / ("results/bench-quick" if args.quick else "docs/results")))
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"bench-{args.dataset}-"))
    common = {"show_progress": False, **every_row_settings(args)}
    data_path = common.get("data_path")  # --set data_path=DIR: the folder that holds <dataset>/
    if args.quick:
        run_seeds = run_seeds[:1]
        data_path = write_sample(args.dataset, work_dir / "data", n_sessions=150)
        common.update(QUICK_OVERRIDES, data_path=str(data_path))
    from recbole_tpad.utils import resolve_data_path

    dataset_dir = Path(resolve_data_path(args.dataset, data_path)) / args.dataset
    has_images = (dataset_dir / "images").is_dir()
    csv_path = out_dir / f"{args.dataset}.csv"
    earlier = finished_rows(csv_path) if args.resume or args.report_only else {}
    seeds = benchmark_seeds(run_seeds, earlier)
    best_other = best_other_stock(earlier.values(), seeds[0])
    rows = benchmark_rows(args.dataset, args.quick, seeds, has_images, best_other)
    order = [(name, seed) for name, _, seed, _ in rows]
    wanted_overrides = {(name, seed): row_overrides(common, overrides) for name, _, seed, overrides in rows}
    rows = [row for row in rows if row[2] in run_seeds]
    if args.models:  # the rows named, seed by seed, in the order named (the table keeps the benchmark's order)
        wanted = args.models.split(",")
        if args.rerun and "TPAD" in wanted and "TPAD-no_transition" not in wanted:
            wanted.append("TPAD-no_transition")  # its row tests TPAD's model (derived_rows): made again with it
        # seed-major, so that an interrupted run has every named model of its first seeds (paired tests)
        rows = sorted((row for row in rows if row[0] in wanted), key=lambda row: (run_seeds.index(row[2]), wanted.index(row[0])))

    # --resume keeps every finished row of the CSV, also those outside --models and --seeds, so subsets add up
    finished = reusable_rows(csv_path, wanted_overrides, log=True) if args.resume or args.report_only else {}
    order = with_other_seeds(order, finished)
    epoch_limit = row_defaults(args.dataset, common)["epochs"]
    for key in [] if args.report_only else [(r[0], r[2]) for r in rows if (r[0], r[2]) in finished]:
        # it trains (on, or again); the CSV keeps its row until then
        if below_epoch_limit(finished[key], epoch_limit):
            print(f"[bench] {key[0]} seed={key[1]}: trained to its epoch limit {finished[key]['epoch_limit']}, "
                  f"trains on to {epoch_limit}", flush=True)
            del finished[key]
        elif args.rerun:
            print(f"[bench] {key[0]} seed={key[1]}: runs again (--rerun); its CSV row stays until then", flush=True)
            del finished[key]
    results = {key: finished[key] for key in order if key in finished}
    for name, seed in results:
        print(f"[bench] {name} seed={seed}: kept from the existing CSV (--resume)", flush=True)
    todo = [] if args.report_only else [row for row in rows if (row[0], row[2]) not in results]
    derived = derived_rows(todo, common)
    todo = [row for row in todo if (row[0], row[2]) not in {(d[0], d[2]) for d in derived.values()}]
    threads = max(1, (os.cpu_count() or 1) // max(args.jobs, 1))
    header = run_header(args, common)
    if not args.quick:
        header["best other stock model"] = (
            f"{best_other}, every seed (the best first-seed test MRR@20 of the stock models outside "
            f"{', '.join(sorted(HEADLINE_MODELS))})" if best_other
            else "not known yet: run again with --resume once the first seed's stock rows are in")

    ran = set()  # rows this run finished: the CSV has the latest of every other row

    def report():  # after each row, so an interrupted run keeps a table of what finished
        # rows that another --resume run of this dataset finished (or ran again) meanwhile are merged, not dropped
        meanwhile = reusable_rows(csv_path, wanted_overrides) if args.resume else {}
        order[:] = with_other_seeds(order, meanwhile)
        for key, row in meanwhile.items():
            if key in order and (key not in ran or results[key].get("error")):
                results[key] = row
        ordered = [results[key] for key in order if key in results]
        write_report(ordered, out_dir, args.dataset, header=with_missing_rows(header, order, results), smoke=args.quick,
                     epoch_limit=epoch_limit, best_other=best_other)
        return ordered

    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = [pool.submit(run_row, row, args, common, work_dir, out_dir, seeds[0], threads,
                               derived.get((row[0], row[2]))) for row in todo]
        for future in as_completed(futures):
            for row in future.result():
                results[(row["model"], row["seed"])] = row
                ran.add((row["model"], row["seed"]))
                print(f"[bench] {row['model']} seed={row['seed']}: "
                      + (row.get("error") or f"recall@20={row['recall@20']:.4f} mrr@20={row['mrr@20']:.4f}"), flush=True)
            report()
    # with --resume and nothing left to run, this rebuilds the report from the CSV
    results = report() if results else []
    failed = [row["model"] for row in results if row.get("error")]
    print(f"[bench] report: {out_dir / args.dataset}.md; failed rows: {failed or 'none'}")
    print(f"bench: {len(results) - len(failed)} passed, {len(failed)} failed")
    # A smoke run exists to catch a broken harness: any failed row fails it.
    return 1 if args.quick and failed else 0


def reusable_rows(csv_path, wanted_overrides, log=False):
    """Finished rows of an existing CSV, less those made with other overrides than this run's."""
    finished = finished_rows(csv_path)
    for key, row in list(finished.items()):  # also rows outside --models: a table never mixes settings
        if key in wanted_overrides and row.get("overrides") != wanted_overrides[key]:
            if log:
                print(f"[bench] {key[0]} seed={key[1]}: not kept, its CSV row was made with overrides "
                      f"{row.get('overrides', '(not recorded)')}, not {wanted_overrides[key]}", flush=True)
            del finished[key]
    return finished


def benchmark_seeds(run_seeds, finished):
    """The seeds of the whole benchmark, in ascending order: those this run trains (``--seeds``) and those
    of the ``finished`` rows it keeps. A run of one seed (``--seeds=2022 --resume``) rewrites the table of
    every seed, and the first seed (the rows that run once, the best other stock model) stays the smallest,
    whichever seeds a run names."""
    return sorted(set(run_seeds) | {seed for _, seed in finished})


def with_other_seeds(order, finished):
    """``order`` (``(row, seed)`` keys) with the ``finished`` rows of its row names under seeds it does not
    run, each after the last key of its name: a --resume run with fewer --seeds than the CSV holds keeps
    the other seeds' rows instead of dropping them from the CSV it rewrites."""
    order = list(order)
    for key in finished:
        names = [name for name, _ in order]
        if key not in order and key[0] in names:
            order.insert(len(names) - names[::-1].index(key[0]), key)
    return order


def below_epoch_limit(row, epoch_limit):
    """Whether ``row`` trained up to an epoch limit lower than ``epoch_limit`` (its ``epoch_limit`` column):
    a run under ``epoch_limit`` trains it on, from its train state where run_one kept one."""
    return bool(row.get("epoch_limit")) and at_epoch_limit(row, None) and row["epoch_limit"] < epoch_limit


def derived_rows(todo, common):
    """``{(TPAD row, seed): TPAD-no_transition row}`` for the rows of ``todo`` that TPAD's run of the same
    seed also gives: under ``transition_fusion: validation`` the term is off while TPAD trains, so its
    trained model tested with the term off is the row ``transition_score: False`` would train
    (bench/run_one.py, ``write_without_transition``). Not where the benchmark's settings change how the
    term or stage 2 runs: then every row trains on its own."""
    if TRANSITION_KEYS & set(common):
        return {}
    wanted = {(row[0], row[2]): row for row in todo}
    return {("TPAD", seed): wanted[("TPAD-no_transition", seed)]
            for name, _, seed, _ in todo if name == "TPAD" and ("TPAD-no_transition", seed) in wanted}


def run_row(row, args, common, work_dir, out_dir, first_seed, threads, derived=None):
    """Run one row in its own process (bench/run_one.py): ``[its result, or its error and log]``, and
    with ``derived`` (a row that run also gives, ``derived_rows``) that row's result after it."""
    name, model, seed, overrides = row
    result_file = work_dir / f"{name}-{seed}.json"
    # ID and view embeddings before / after distillation, for the t-SNE figure
    embeddings = out_dir / f"{args.dataset}-{name}-embeddings.npz" if name in ("TPAD", "TPAD-no_distill") and seed == first_seed else None
    command = [
        sys.executable, str(REPO / "bench" / "run_one.py"), f"--model={model}", f"--dataset={args.dataset}",
        f"--seed={seed}", f"--overrides={json.dumps({**common, **overrides})}", f"--out={result_file}",
        f"--sessions={sessions_path(out_dir, args.dataset, name, seed)}",
        f"--train_state={train_state_path(out_dir, args.dataset, name, seed, row_overrides(common, overrides))}",
    ] + ([f"--embeddings={embeddings}"] if embeddings else [])
    if derived:
        derived_file = work_dir / f"{derived[0]}-{seed}.json"
        command.append(f"--without_transition={derived_file},{sessions_path(out_dir, args.dataset, derived[0], seed)}")
    print(f"[bench] {name} seed={seed}", flush=True)
    log_file = work_dir / f"{name}-{seed}.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if args.jobs > 1 else None
    with open(log_file, "w") as log:
        try:
            code = subprocess.run(command, cwd=work_dir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    result = {"model": name, "dataset": args.dataset, "seed": seed, "overrides": row_overrides(common, overrides)}
    if code == 0 and result_file.is_file():
        result.update(json.loads(result_file.read_text()))
    else:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        result["error"] = f"exit {code}: {tail[0][:200]} (log: {log_file})"
    if not derived:
        return [result]
    other = {"model": derived[0], "dataset": args.dataset, "seed": seed, "overrides": row_overrides(common, derived[3])}
    if "error" not in result and derived_file.is_file():
        other.update(json.loads(derived_file.read_text()))
    else:  # an error row is not kept: a --resume run then trains this row on its own
        other["error"] = f"not derived from {name} seed {seed}: " + result.get("error", "its model did not pick the scale")
    return [result, other]


def train_state_path(out_dir, dataset, name, seed, overrides):
    """Where a row's fit keeps its state (``train_state_file``), so that a row cut off by the end of a
    session goes on after its last validation when ``--resume`` runs it again; one file per overrides."""
    return out_dir / "state" / dataset / f"{name}-{seed}-{stable_hash(overrides, length=8)}.pth"


def every_row_settings(args):
    """Config overrides of every row: the dataset's benchmark settings, then --epochs, then --set."""
    import yaml

    settings = dict(DATASET_SETTINGS.get(args.dataset, {}))
    if args.epochs:
        settings["epochs"] = args.epochs
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got '{item}'")
        settings[key] = yaml.safe_load(value)
    return settings


def row_overrides(common, overrides):
    """What a row computes with beyond the YAML defaults, as canonical JSON (display and data-path keys aside)."""
    merged = {key: value for key, value in {**common, **overrides}.items() if key not in ("show_progress", "data_path")}
    return json.dumps(merged, sort_keys=True)


def with_missing_rows(header, order, results):
    """The run header plus, while the table is partial, the rows it does not have yet."""
    missing = [f"{name} (seed {seed})" for name, seed in order if (name, seed) not in results]
    return {**header, "missing rows": ", ".join(missing)} if missing else header


def run_header(args, common):
    import recbole
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, GPU: {gpu}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, recbole {recbole.__version__}, transformers {transformers.__version__}",
        "command": "python bench/run_benchmark.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "every row": settings_line(args.dataset, common),
        **({"parallel rows": f"{args.jobs} at once, {max(1, (os.cpu_count() or 1) // args.jobs)} torch thread(s) each: "
                             "per-row times share the machine"} if args.jobs > 1 else {}),
    }


def row_defaults(dataset, common):
    """The training settings every row of the dataset runs with: overall.yaml, the dataset's YAML, then ``common``."""
    import yaml

    from recbole_tpad.utils import PROPERTIES_DIR

    overall = yaml.safe_load((PROPERTIES_DIR / "overall.yaml").read_text())
    dataset_yaml = PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"
    if dataset_yaml.is_file():
        overall.update(yaml.safe_load(dataset_yaml.read_text()) or {})
    return {**overall, **common}


def settings_line(dataset, common):
    """The epoch limit and any setting that overrides the YAML defaults for every row, in words."""
    settings = row_defaults(dataset, common)
    epochs, stopping = settings["epochs"], settings["stopping_step"]
    extra = {key: value for key, value in common.items() if key not in ("show_progress", "data_path", "epochs")}
    return (f"at most {epochs} epochs (a row made under a lower limit records it in `epoch_limit`), early "
            f"stopping when {stopping + 1} evaluations in a row stay below the best valid "
            f"{settings['valid_metric']} (`stopping_step: {stopping}`)" + (f"; on top of the YAML defaults: {json.dumps(extra, sort_keys=True)}" if extra else ""))


if __name__ == "__main__":
    sys.exit(main())
