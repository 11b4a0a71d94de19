"""Paired test of trained checkpoints on the same test sessions: the first against each other one.

    RECBOLE_TPAD_CACHE=<the runs' cache> python bench/paired_checkpoints.py \
        --model_files=saved/TPAD-<a>.pth,saved/TPAD-<b>.pth --names=TPAD,TPAD-no_transition

Each checkpoint is rebuilt from the config saved in it (its dataset, split, tie order and seed; TPAD
and KDSR read their frozen views from the cache, so point ``RECBOLE_TPAD_CACHE`` at the one they were
trained with) and tested by RecBole's evaluator as ``run_recbole_tpad`` tests it, keeping the
per-session ranks (``rec.topk``). The first checkpoint is compared with each other one by
``bench/significance.py`` (Wilcoxon signed-rank and a paired bootstrap over the test sessions);
two checkpoints pair only when their test sessions and targets are the same (equal digests).

One seed per checkpoint: this tests the difference across the test sessions, not across seeds.
Prints a Markdown table; ``--out`` also writes it as CSV.
"""

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.session_outcomes import ranks_from_topk, session_outcomes, split_digest  # noqa: E402
from bench.significance import METRICS, paired_comparison  # noqa: E402


def checkpoint_outcomes(model_file):
    """``(metrics, digest, per-session outcomes)`` of the checkpoint ``model_file`` on its test split."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_tpad import compat
    from recbole_tpad.data.tie_order import apply_tie_order
    from recbole_tpad.model.item_views import prepare_item_views
    from recbole_tpad.model_defaults import build_model
    from recbole_tpad.quick_start import evaluate_with_topk
    from recbole_tpad.utils import get_model, get_trainer

    compat.apply()
    config = torch.load(model_file, map_location="cpu", weights_only=False)["config"]
    config["device"] = torch.device("cpu")
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    apply_tie_order(config, dataset)
    train_data, _, test_data = data_preparation(config, dataset)
    prepare_item_views(config, train_data)
    model = build_model(get_model(config["model"]), config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    metrics, topk, _ = evaluate_with_topk(trainer, test_data, load_best_model=True, model_file=str(model_file),
                                          show_progress=False)
    return dict(metrics), split_digest(test_data._dataset), session_outcomes(ranks_from_topk(topk.numpy()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_files", required=True, help="comma-separated checkpoints; the first is compared with each other")
    parser.add_argument("--names", default=None, help="comma-separated row names (default: the file names)")
    parser.add_argument("--out", default=None, help="CSV file of the comparisons")
    args = parser.parse_args(argv)
    files = args.model_files.split(",")
    names = args.names.split(",") if args.names else [Path(f).stem for f in files]
    if len(names) != len(files) or len(files) < 2:
        parser.error("give at least two --model_files and, with --names, one name per file")
    results = [checkpoint_outcomes(f) for f in files]
    rows = []
    for name, (metrics, digest, outcomes) in zip(names[1:], results[1:]):
        if digest != results[0][1]:
            raise SystemExit(f"{name} was tested on other sessions than {names[0]} (digests {digest}, {results[0][1]})")
        for metric in METRICS:
            row = paired_comparison(results[0][2][metric], outcomes[metric])
            rows.append({"model": names[0], "baseline": name, "metric": metric, **row})
    print(f"| {names[0]} against | metric | {names[0]} | baseline | difference | 95% interval | Wilcoxon p | sessions |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['baseline']} | {r['metric']} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} ({r['rel_%']:+.1f}%) "
              f"| [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p']:.2g} | {r['n']} |")
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
