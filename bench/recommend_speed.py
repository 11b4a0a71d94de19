"""Latency and throughput of recommendations from saved checkpoints, on this machine.

    python bench/recommend_speed.py --dataset=hm-fashion --model_files=saved/TPAD-....pth,saved/SASRec-....pth

For each checkpoint: load it (:func:`recbole_tpad.recommend.load_recommender`), warm up, then time
``recommend(sessions, topk=20)`` per request at batch 1 (``--requests`` sessions, one per request)
and at batch 256 (``--batches`` requests of 256 sessions). Sessions are the dataset's own (every
session's items but the last, oldest first, cycled). Reports sessions/s and the p50 / p99 wall
milliseconds per request; ``--threads`` torch threads (default 1).
"""

import argparse
import sys
import time
from itertools import cycle, islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.new_items import read_sessions  # noqa: E402


def time_requests(recommender, requests, topk):
    """Wall seconds of each ``recommend`` call."""
    seconds = []
    for sessions in requests:
        start = time.perf_counter()
        recommender.recommend(sessions, topk=topk, batch_size=len(sessions))
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def measure(model_file, sessions, requests=200, batches=8, topk=20, warmup=5, item_file=None):
    import logging

    from recbole_tpad.recommend import load_recommender

    start = time.perf_counter()
    recommender = load_recommender(model_file, device="cpu")
    load_s = time.perf_counter() - start
    if item_file and hasattr(recommender.model, "add_items"):  # the same catalogue as a model trained on every item
        recommender.add_items(item_file)
    logging.getLogger().setLevel(logging.ERROR)  # unknown-token warnings are not what is timed
    stream = cycle(sessions)
    time_requests(recommender, [list(islice(stream, 1)) for _ in range(warmup)], topk)
    rows = []
    for batch, count in ((1, requests), (256, batches)):
        seconds = time_requests(recommender, [list(islice(stream, batch)) for _ in range(count)], topk)
        rows.append({"model": recommender.config["model"], "batch": batch, "requests": count,
                     "sessions_per_s": round(float(batch * count / seconds.sum()), 1),
                     "p50_ms": round(1000 * float(np.percentile(seconds, 50)), 2),
                     "p99_ms": round(1000 * float(np.percentile(seconds, 99)), 2),
                     "items": recommender.n_items, "load_s": round(load_s, 2)})
    return rows


def main(argv=None):
    import torch

    from recbole_tpad import compat
    from recbole_tpad.quick_start import load_config
    from recbole_tpad.utils import resolve_data_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="whose sessions to send")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--model_files", required=True, help="comma-separated checkpoints saved by run_recbole_tpad")
    parser.add_argument("--requests", type=int, default=200, help="requests at batch 1")
    parser.add_argument("--batches", type=int, default=8, help="requests at batch 256")
    parser.add_argument("--topk", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--item_file", default=None, help="items to add first to models that can (TPAD), as --item_file of recommend")
    args = parser.parse_args(argv)

    compat.apply()
    torch.set_num_threads(args.threads)
    folder = Path(resolve_data_path(args.dataset, args.data_path))
    fields = load_config("SASRec", args.dataset, config_dict={"data_path": str(folder)})
    sessions = read_sessions(folder / args.dataset / f"{args.dataset}.inter", fields["USER_ID_FIELD"],
                             fields["ITEM_ID_FIELD"], fields["TIME_FIELD"])
    sessions = [items[:-1] for items in sessions.values() if len(items) >= 2]
    rows = [row for model_file in args.model_files.split(",")
            for row in measure(model_file, sessions, args.requests, args.batches, args.topk, item_file=args.item_file)]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"torch threads: {args.threads}; topk {args.topk}")


if __name__ == "__main__":
    main()
