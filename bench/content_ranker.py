"""A reference without training: rank every item by the cosine of its frozen view with the session's last item.

    python bench/content_ranker.py --dataset=hm-fashion [--model=TPAD] [--views=text,image,fused]

Same data, split and full ranking as every model (RecBole's test loader). ``--model=TPAD``
scores TPAD's distilled item views (the stages are run or read from their cache); ``--model=KDSR``
the base backbone's. The last item itself is scored like any other (a repeat purchase counts).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole.data import create_dataset, data_preparation  # noqa: E402

from recbole_tpad import compat  # noqa: E402
from recbole_tpad.model.item_views import prepare_item_views  # noqa: E402
from recbole_tpad.quick_start import load_config  # noqa: E402


def ranks_of_targets(scores, targets):
    """1-based rank of each target among all candidates (ties count against the target)."""
    target_scores = scores.gather(1, targets.unsqueeze(1))
    return (scores >= target_scores).sum(1)


def main():
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="hm-fashion")
    parser.add_argument("--model", default="TPAD", help="whose item views: TPAD (distilled) or KDSR (base)")
    parser.add_argument("--views", default="text", help="comma-separated views, each ranked on its own")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()

    config = load_config(args.model, args.dataset, config_dict={"show_progress": False, "state": "WARNING"})
    train, _, test = data_preparation(config, create_dataset(config))
    views = prepare_item_views(config, train)[0].views  # stage 2 learns from the training split only
    item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    print(f"{args.dataset}, {args.model} views, test sessions ranked over all items, k={args.k}\n")
    print(f"| view | recall@{args.k} | MRR@{args.k} |\n|---|---|---|")
    for name in args.views.split(","):
        vectors = torch.nn.functional.normalize(torch.as_tensor(np.asarray(views[name], dtype=np.float32)), dim=1)
        hits, reciprocal, sessions = 0.0, 0.0, 0
        for interaction, _, _, positive_i in test:
            item_seq, lengths = interaction[item_seq_field], interaction[config["ITEM_LIST_LENGTH_FIELD"]]
            last = item_seq[torch.arange(len(lengths)), lengths - 1]
            scores = vectors[last] @ vectors.T
            scores[:, 0] = -float("inf")  # padding item
            rank = ranks_of_targets(scores, positive_i)
            hits += (rank <= args.k).sum().item()
            reciprocal += torch.where(rank <= args.k, 1.0 / rank, torch.zeros_like(rank, dtype=torch.float)).sum().item()
            sessions += len(rank)
        print(f"| {name} | {hits / sessions:.4f} | {reciprocal / sessions:.4f} |")


if __name__ == "__main__":
    main()
