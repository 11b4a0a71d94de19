"""One process against N data-parallel processes (1 thread each) for TPAD on the first sessions of a dataset.

    python bench/distributed_scaling.py --dataset=amazon-beauty --sessions=60 --nproc=1,2 [--out=docs/results/distributed_scaling.md]

Each row is one run of the runner from empty caches (``run_recbole_tpad``, offline default backbone)
on the dataset's first ``--sessions`` sessions (their items only), with the stages at a small size
(``STAGE_SIZE``) and one downstream epoch: wall seconds of the item states (item encoding below the
LoRA layers), stage 1, stage 2, the stage-3 representation (item encoding through the top layers),
one downstream training epoch, and the peak resident memory of each rank; then the largest
difference between the stage weights (adapters, projector, alignment heads) of N processes and of
one. ``--nproc=1`` is a plain single process; N > 1 is ``recbole_tpad.distributed.launch`` (gloo
on the CPU). The machine's load average before each row is in the table: on a shared machine,
other processes take cores from the ranks.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

STAGE_SIZE = {"stage1_items_per_epoch": 64, "stage1_batch_size": 8, "stage1_heldout_items": 16,
              "stage2_sessions_per_epoch": 64, "stage2_batch_size": 8, "stage2_heldout_pairs": 16}
STEPS = ("item_states_s", "stage1_s", "stage2_s", "representation_s")


def subsample(source, target, sessions):
    """The first ``sessions`` sessions of ``source/<name>.inter`` and their items, as atomic files in ``target``."""
    name = source.name
    target.mkdir(parents=True, exist_ok=True)
    kept, items = set(), set()
    with open(source / f"{name}.inter", encoding="utf-8") as f, open(target / f"{name}.inter", "w", encoding="utf-8") as out:
        out.write(f.readline())
        for line in f:
            session, item = line.split("\t")[:2]
            if session not in kept and len(kept) >= sessions:
                continue
            kept.add(session)
            items.add(item)
            out.write(line)
    with open(source / f"{name}.item", encoding="utf-8") as f, open(target / f"{name}.item", "w", encoding="utf-8") as out:
        out.write(f.readline())
        out.writelines(line for line in f if line.split("\t", 1)[0] in items)
    return len(kept), len(items)


def one_run(dataset, config_dict):
    """One rank's run; returns its timings and every rank's peak memory (rank 0's result is kept)."""
    import resource

    import torch

    from recbole_tpad.distributed import all_gather_object
    from recbole_tpad.quick_start import run_recbole_tpad

    torch.set_num_threads(1)
    start = time.perf_counter()
    run = run_recbole_tpad("TPAD", dataset, config_dict=config_dict)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**{k: run["view_info"].get(k) for k in STEPS}, "epoch_s": round(run["epoch_seconds"][0], 1),
            "total_s": round(time.perf_counter() - start, 1), "peak_mib_per_rank": [round(m) for m in all_gather_object(peak_mib)],
            "test_mrr@20": run["test_result"]["mrr@20"]}


def stage_weights(root):
    """``stage/file -> tensors`` of every safetensors file of the stage results under ``root``."""
    from safetensors.torch import load_file

    return {f"{path.parent.parent.name.split('-')[0]}/{path.parent.name}/{path.name}"
            if path.parent.name.startswith("adapter") else f"{path.parent.name.split('-')[0]}/{path.name}": load_file(str(path))
            for path in sorted(root.glob("*-*/**/*.safetensors")) if not path.name.startswith("item_states")}


def difference(a, b):
    return (f"{max((a[k].float() - b[k].float()).abs().max().item() for k in a):.4g} "
            f"({max(a[k].float().abs().max().item() for k in a):.3g})")


def measure(nproc, dataset, config_dict):
    import multiprocessing

    from recbole_tpad.distributed import launch, launch_keys

    if nproc == 1:  # a plain process of its own, so that its peak memory is its own
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(one_run, (dataset, config_dict))
    return launch(one_run, (dataset,), dict(config_dict, **launch_keys(nproc, {})), nproc)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--out", default=None, help="Markdown table to write (printed in any case)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from recbole_tpad.utils import resolve_data_path

    source = Path(resolve_data_path(args.dataset)) / args.dataset
    rows, adapters = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions, items = subsample(source, Path(tmp) / "data" / args.dataset, args.sessions)
        for nproc in [int(n) for n in args.nproc.split(",")]:
            work = Path(tmp) / f"nproc{nproc}"
            config_dict = dict(STAGE_SIZE, data_path=str(Path(tmp) / "data"), feature_cache_dir=str(work / "cache"),
                               checkpoint_dir=str(work / "saved"), epochs=1, show_progress=False, state="WARNING",
                               feature_threads=1)
            load = os.getloadavg()[0]
            rows.append({"nproc": nproc, "load_1min_before": round(load, 2), **measure(nproc, args.dataset, config_dict)})
            adapters[nproc] = stage_weights(work / "cache" / "stages" / args.dataset)
            print(rows[-1], flush=True)
    base = rows[0]
    lines = [f"{args.dataset}, first {sessions} sessions ({items} items), TPAD from empty caches, 1 thread per process, "
             f"stages {STAGE_SIZE}, one downstream epoch", "",
             "| nproc | load before | item states s | stage 1 s | stage 2 s | representation s | downstream epoch s | total s | speed-up (total) | peak MiB per rank |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['nproc']} | {row['load_1min_before']} | " + " | ".join(str(row[k]) for k in STEPS) +
                     f" | {row['epoch_s']} | {row['total_s']} | {base['total_s'] / row['total_s']:.2f} | "
                     f"{', '.join(map(str, row['peak_mib_per_rank']))} |")
    first = min(adapters)
    for nproc in sorted(adapters)[1:]:
        lines += ["", f"Largest weight difference after the stages, {nproc} processes against {first} (largest weight in brackets):"]
        lines += [f"- {name}: {difference(adapters[first][name], adapters[nproc][name])}" for name in sorted(adapters[first])]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
