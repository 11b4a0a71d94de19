"""New items without retraining: withhold items from training entirely, add them back, rank them.

    python bench/new_items.py --dataset=hm-fashion                          # TPAD, KDSR, SASRec; 10% of the items
    python bench/new_items.py --dataset=hm-fashion --sample=150 --epochs=1 --set feature_backbone=tiny-llama \
        --set feature_image_encoder=tiny --set stage1_items_per_epoch=16 --set stage2_sessions_per_epoch=16   # smoke run

Protocol (docs/recommend.md):

1. Pick ``--fraction`` of the items that occur in the dataset's ``.inter`` file (seeded).
2. Write ``<work_dir>/<dataset>/``: the ``.inter`` file without any interaction of those items, the
   ``.item`` file without their rows, every photo; and ``<dataset>.all.item``, every item's row.
3. Train each model there with ``run_recbole_tpad`` (the dataset's YAML and the defaults, then
   ``--epochs`` and ``--set``): the withheld items are neither trained on nor encoded.
4. Load its checkpoint with :func:`recbole_tpad.recommend.load_recommender` and add the withheld
   items from ``<dataset>.all.item`` (TPAD encodes them with its Knowledge-MLLM, KDSR with the
   frozen base backbone; a model that cannot score new items keeps its trained items).
5. Rank every item it knows for each session of the *original* dataset: the session's items but
   the last, oldest first, as the input (withheld items in it are new items too, or skipped
   tokens), the last as the target. Recall@K and MRR@K over the sessions whose target is a
   withheld item (``new``) and over the others (``seen``); a target the model does not know
   counts as a miss.

Writes ``--results_file`` (default ``results/new-items-<dataset>.csv``) and prints a Markdown table.
"""

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cold_start import metrics_from_ranks  # noqa: E402
from recbole_tpad.data.atomic_file import AtomicFile  # noqa: E402
from recbole_tpad.utils import resolve_data_path  # noqa: E402

TOPK = (10, 20)


def read_sessions(inter_file, uid, iid, time_field):
    """``{session: [item, ...]}`` in time order (ties keep file order), sessions in file order."""
    reader = AtomicFile(inter_file)
    u, i, t = (reader.columns.index(name) for name in (uid, iid, time_field))
    sessions = {}
    for _, fields in reader.rows():
        sessions.setdefault(fields[u], []).append((float(fields[t] or 0), fields[i]))
    return {s: [item for _, item in sorted(rows, key=lambda row: row[0])] for s, rows in sessions.items()}


def _copy_without(source, target, column, drop):
    """Copy an atomic file, leaving out the rows whose ``column`` is in ``drop``; return the rows left out."""
    reader = AtomicFile(source)
    index = reader.columns.index(column)
    skip = {line for line, fields in reader.rows() if fields[index] in drop}
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
        dst.writelines(text for number, text in enumerate(src, start=1) if number not in skip)
    return len(skip)


def withhold_items(source, dataset, out_root, fraction, seed, uid, iid, time_field):
    """Write the training dataset without ``fraction`` of the items under ``out_root/dataset``; return the withheld tokens."""
    source, target = Path(source), Path(out_root) / dataset
    sessions = read_sessions(source / f"{dataset}.inter", uid, iid, time_field)
    items = sorted({item for session in sessions.values() for item in session})
    rng = np.random.default_rng(seed)
    withheld = set(rng.choice(items, size=max(1, round(fraction * len(items))), replace=False).tolist())
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    _copy_without(source / f"{dataset}.inter", target / f"{dataset}.inter", iid, withheld)
    if (source / f"{dataset}.item").is_file():
        _copy_without(source / f"{dataset}.item", target / f"{dataset}.item", iid, withheld)
        shutil.copyfile(source / f"{dataset}.item", target / f"{dataset}.all.item")
    if (source / "images").is_dir():
        try:  # hard links: no second copy of the photos where the file system allows
            shutil.copytree(source / "images", target / "images", copy_function=os.link)
        except OSError:
            shutil.rmtree(target / "images", ignore_errors=True)
            shutil.copytree(source / "images", target / "images")
    return withheld, sessions


def rank_targets(recommender, sessions, batch_size=256):
    """1-based rank of each ``(input tokens, target token)`` among every item the recommender knows (inf: unknown)."""
    inputs = [items[:-1] for items in sessions]
    targets = [recommender.token_ids.get(items[-1]) for items in sessions]
    ids, _ = recommender.session_item_ids(inputs)
    ranks = np.full(len(sessions), np.inf)
    rows = [r for r in range(len(sessions)) if ids[r] and targets[r]]
    for start in range(0, len(rows), batch_size):
        batch = rows[start: start + batch_size]
        scores = recommender.scores([ids[r] for r in batch])
        target_scores = scores[range(len(batch)), [targets[r] for r in batch]]
        ranks[batch] = ((scores > target_scores[:, None]).sum(1) + 1).cpu().numpy()
    return ranks


def evaluate(model_file, all_item_file, sessions, withheld):
    """Rows for ``new`` and ``seen`` targets of one trained model."""
    from recbole_tpad.errors import ConfigError
    from recbole_tpad.recommend import load_recommender

    recommender = load_recommender(model_file, device="cpu")
    start = time.perf_counter()
    try:
        added = len(recommender.add_items(all_item_file))
        note = ""
    except ConfigError:
        added, note = 0, "cannot score new items"  # its ConfigError says why
    add_s = time.perf_counter() - start
    sessions = [items for items in sessions.values() if len(items) >= 2]
    ranks = rank_targets(recommender, sessions)
    new = np.array([items[-1] in withheld for items in sessions])
    rows = []
    for name, keep in (("new", new), ("seen", ~new)):
        row = {"model": recommender.config["model"], "targets": name, "sessions": int(keep.sum()),
               "items_added": added, "add_items_s": round(add_s, 1), "note": note if name == "new" else ""}
        row.update({k: round(v, 4) for k, v in metrics_from_ranks(ranks[keep], TOPK).items() if k.split("@")[0] in ("recall", "mrr")})
        rows.append(row)
    return rows


def markdown(rows):
    columns = ["model", "targets", "sessions", "recall@20", "mrr@20", "recall@10", "mrr@10", "items_added", "add_items_s", "note"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def run(dataset, models, fraction=0.1, seed=2020, work_dir="results/new-items", data_path=None, sample=None,
        overrides=None, results_file=None):
    from recbole_tpad import compat
    from recbole_tpad.quick_start import load_config, run_recbole_tpad

    compat.apply()
    work_dir = Path(work_dir).resolve()
    source = Path(resolve_data_path(dataset, data_path)) / dataset
    if sample:
        from bench.sample import write_sample

        source = write_sample(dataset, work_dir / "sample", sample, source_root=source.parent) / dataset
    fields = load_config("SASRec", dataset, config_dict=dict(overrides or {}, data_path=str(source.parent)))
    withheld, sessions = withhold_items(source, dataset, work_dir / "data", fraction, seed,
                                        fields["USER_ID_FIELD"], fields["ITEM_ID_FIELD"], fields["TIME_FIELD"])
    print(f"withheld {len(withheld)} items of {dataset}; training data in {work_dir / 'data' / dataset}")
    rows = []
    results_file = Path(results_file or f"results/new-items-{dataset}.csv")
    for model in models:
        config_dict = dict(overrides or {}, data_path=str(work_dir / "data"), seed=seed,
                           checkpoint_dir=str(work_dir / "saved"))
        start = time.perf_counter()
        checkpoint = run_recbole_tpad(model, dataset, config_dict=config_dict)["trainer"].saved_model_file
        train_s = round(time.perf_counter() - start, 1)  # the run's model, data and trainer are freed here
        for row in evaluate(checkpoint, work_dir / "data" / dataset / f"{dataset}.all.item", sessions, withheld):
            rows.append(dict(row, dataset=dataset, fraction=fraction, seed=seed, train_s=train_s, checkpoint=checkpoint))
        results_file.parent.mkdir(parents=True, exist_ok=True)
        with open(results_file, "w", newline="", encoding="utf-8") as f:  # after each model: a crash keeps the rest
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(markdown(rows))
    print(f"results written to {results_file}")
    return rows


def main(argv=None):
    from recbole_tpad.__main__ import parse_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", default="TPAD,KDSR,SASRec")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the items withheld (default 0.1)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--sample", type=int, default=None, help="first N sessions only (bench/sample.py)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    parser.add_argument("--work_dir", default="results/new-items")
    parser.add_argument("--results_file", default=None)
    args = parser.parse_args(argv)
    overrides = parse_overrides([f"--{item}" for item in args.set])
    if args.epochs:
        overrides["epochs"] = args.epochs
    run(args.dataset, [m.strip() for m in args.models.split(",") if m.strip()], args.fraction, args.seed,
        args.work_dir, args.data_path, args.sample, overrides, args.results_file)


if __name__ == "__main__":
    main()
