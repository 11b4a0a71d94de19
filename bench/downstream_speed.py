"""Training cost per epoch and full-ranking evaluation time: TPAD / KDSR against their stock session encoders.

    python bench/downstream_speed.py --dataset=hm-fashion [--epochs=2] [--threads=1] [--view_dim=576] [--one_batch] [--amp]
        [--set session_length=20 ...]

Frozen item views are random arrays of the size the offline backbone gives (``--view_dim``): the
cost of the downstream model does not depend on their values. Each row: seconds per training
epoch (median of ``--epochs``; with ``--one_batch``: seconds of forward+backward of one batch) and seconds for one full-ranking evaluation of the valid split.
``--amp`` sets RecBole's ``enable_amp`` (bf16 autocast on a CPU) for every row; without it every row
runs in float32. ``--set key=value`` overrides a config key of every row (YAML value).
"""

import argparse
import statistics
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="hm-fashion")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--view_dim", type=int, default=576)
    parser.add_argument("--only", default=None, help="comma-separated row names to run")
    parser.add_argument("--one_batch", action="store_true", help="time forward+backward of one training batch instead of epochs")
    parser.add_argument("--amp", action="store_true", help="RecBole's enable_amp: autocast (bf16 on a CPU) in training")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every row")
    args = parser.parse_args()

    import torch
    import yaml

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_tpad import compat
    from recbole_tpad.features import ItemViews
    from recbole_tpad.model.item_views import attach_item_views
    from recbole_tpad.quick_start import load_config
    from recbole_tpad.utils import get_model, get_trainer

    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    torch.set_num_threads(args.threads)
    rows = [("GRU4Rec", {}), ("SASRec", {}), ("SRGNN", {})]
    for session_encoder in ("GRU4Rec", "SASRec", "SRGNN"):
        rows += [
            ("TPAD", {"session_encoder": session_encoder, "shared_encoder": True}),
            ("TPAD", {"session_encoder": session_encoder, "shared_encoder": False}),
            ("TPAD", {"session_encoder": session_encoder, "views": ["id"]}),
            ("KDSR", {"session_encoder": session_encoder}),
        ]
    base = {"show_progress": False, "state": "WARNING", "checkpoint_dir": "saved-bench", "enable_amp": args.amp}
    base.update({key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)})
    config = load_config("SASRec", args.dataset, config_dict=base)
    train, valid, _ = data_preparation(config, create_dataset(config))
    # the views' cost, not their values, matters here: random views, where every model built on `train` reads them
    n_items = train._dataset.item_num
    rng = np.random.default_rng(0)
    views = {v: rng.normal(size=(n_items, args.view_dim)).astype(np.float32) for v in ("text", "image", "fused")}
    attach_item_views(train._dataset, ItemViews(views, np.ones(n_items, bool), manifest={}, folder=None))
    print("| model | session encoder | encoder kind | s/epoch | eval s | params |\n|---|---|---|---|---|---|")
    for name, overrides in rows:
        kind = "id" if overrides.get("views") == ["id"] else "shared" if overrides.get("shared_encoder", True) else "per-view"
        label = f"{name}-{overrides.get('session_encoder', name)}-{kind}"
        if args.only and label not in args.only.split(","):
            continue
        config = load_config(name, args.dataset, config_dict={**base, **overrides})
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(name)(config, train._dataset)
        trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
        seconds = []
        if args.one_batch:
            batch = next(iter(train))
            for _ in range(args.epochs):
                start = time.perf_counter()
                with torch.autocast(device_type="cpu", enabled=bool(config["enable_amp"])):
                    losses = model.calculate_loss(batch)
                (sum(losses) if isinstance(losses, tuple) else losses).backward()
                seconds.append(time.perf_counter() - start)
        for epoch in range(0 if args.one_batch else args.epochs):
            start = time.perf_counter()
            trainer._train_epoch(train, epoch)
            seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        trainer.evaluate(valid, load_best_model=False)
        eval_seconds = time.perf_counter() - start
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        encoder = kind if name == "TPAD" else "-"
        print(f"| {name} | {overrides.get('session_encoder', name)} | {encoder} | {statistics.median(seconds):.2f} | "
              f"{eval_seconds:.2f} | {params} |", flush=True)


if __name__ == "__main__":
    main()
