"""Does the Transfer-MLLM learn transitions? Stage 2's held-out next-item figures along training.

    python bench/stage2_learning.py --dataset=amazon-beauty --pairs=3200 --every=800
    python bench/stage2_learning.py --pairs=3200 --stage2_amie_weight=0 --stage2_hmie_weight=0 \
        --stage2_gen_k_weight=0 --stage2_gen_t_weight=0          # L_next alone
    python bench/stage2_learning.py --pairs=3200 --stage2_head_epochs=0   # no head fit first

Runs TPAD's stage 2 (``TransitionDistillation``, the YAML settings plus ``--key=value`` overrides)
from an untrained adapter T on ``--pairs`` training pairs (batches of ``stage2_batch_size``, the
stage's own schedule and AdamW at ``stage2_learning_rate``), and every ``--every`` pairs ranks
every item for ``--eval_pairs`` held-out pairs (whole sessions the stage never trains on) by T's
session state through the transition head against the fixed target space (the untrained T's item
features). Point 0 is the untrained T (centred cosines, no head) and point 0 ``head`` the head
fitted on every training pair before T's first step. The first point also gives the mean cosine of
2,000 items' untrained T features (why the scores are centred). Prints one JSON line per point,
beside the popularity ranking; ``--out`` writes them as CSV.
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_stages import config_overrides  # noqa: E402
from recbole_tpad import compat  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--pairs", type=int, default=6400)
    parser.add_argument("--every", type=int, default=800)
    parser.add_argument("--eval_pairs", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args, rest = parser.parse_known_args()
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    overrides = config_overrides(rest)

    import numpy as np
    import torch
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.quick_start import load_config
    from recbole_tpad.stages.pipeline import StagePipeline
    from recbole_tpad.stages.session_prompts import training_sessions
    from recbole_tpad.stages.transition_distillation import (TRANSFER, TransitionDistillation, heldout_pairs,
                                                             rank_figures, ranks_of)

    config = load_config("TPAD", args.dataset, config_dict=dict(overrides, show_progress=False))
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    pipeline = StagePipeline(config, dataset, train._dataset, show_progress=False)
    s = pipeline.settings
    backbone, items = pipeline._backbone_and_items()
    states = pipeline._item_states(backbone, items)
    sessions = training_sessions(train._dataset)
    stage = TransitionDistillation(backbone, states, sessions, s, heldout_pairs(sessions, s.stage2_heldout_pairs,
                                                                             pipeline.seed), pipeline.seed)
    rows = stage.heldout[: args.eval_pairs]
    counts = torch.bincount(sessions.target[torch.as_tensor(stage.train_rows)], minlength=len(states)).float()
    counts[0] = float("-inf")
    popular = rank_figures(ranks_of(counts.unsqueeze(0).expand(len(rows), -1),
                                    sessions.target[torch.as_tensor(rows)]).float())
    parameters = list(stage.parameters_to_train())
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=s.stage2_learning_rate, weight_decay=0.0)
    rng = np.random.default_rng(pipeline.seed)
    points, sums, clock = [], {}, time.perf_counter()

    def point(pairs, what, mapped=True):
        stage.eval()
        figures = stage.next_item_figures(None if what == "untrained" else TRANSFER, rows, mapped)
        stage.train()
        line = {"pairs": pairs, "T": what, **figures, "popularity_recall@10": popular["recall@10"],
                "popularity_mrr": popular["mrr"], "seconds": round(time.perf_counter() - clock, 1),
                **{k: round(v / max(1, sums.get("_n", 1)), 4) for k, v in sums.items() if k != "_n"}}
        print(json.dumps(line), flush=True)
        points.append(line)
        sums.clear()

    stage._prepare()  # the bank (every item's untrained T feature) and the head's fit
    sample = torch.nn.functional.normalize(stage.bank[1:2001], dim=-1)
    sums["bank_mean_cosine"] = float((sample @ sample.t()).mean())  # why L_next centres its cosines
    point(0, "untrained", mapped=False)
    point(0, "head")
    stage.train()
    steps = args.pairs // s.stage2_batch_size
    for step in range(1, steps + 1):
        batch = stage.train_rows[rng.choice(len(stage.train_rows), s.stage2_batch_size, replace=False)]
        optimizer.zero_grad(set_to_none=True)
        loss, parts = stage.training_loss(batch, step)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, s.grad_clip)
        optimizer.step()
        for key, value in dict(parts, loss=loss.item(), _n=1).items():
            sums[key] = sums.get(key, 0.0) + value
        if (step * s.stage2_batch_size) % args.every < s.stage2_batch_size or step == steps:
            point(step * s.stage2_batch_size, "trained")
    if args.out:
        keys = sorted({k for p in points for k in p}, key=lambda k: (k not in points[0], k))
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(points)


if __name__ == "__main__":
    main()
