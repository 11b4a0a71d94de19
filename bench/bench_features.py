"""Item-encoding speed of a feature backbone vs. its FLOP bound.

    python bench/bench_features.py --dataset=amazon-beauty --sample=512
    python bench/bench_features.py --dataset=hm-fashion --sample=256 --dtype=fp32
    python bench/bench_features.py --dataset=amazon-beauty --full      # whole catalogue, via the cache
    python bench/bench_features.py --rates --threads=1                  # bf16 and fp32 matmul rates only

FLOP bound: the forward pass costs about 2 x (non-embedding LLM params) FLOPs per token (text +
visual tokens, padding included, as run), plus the image encoder per image; divided by the
matmul rate measured on this machine at the same dtype just before the run. items/s measured
over the encode loop only (model loading excluded; item files read beforehand).
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recbole_tpad import compat  # noqa: E402

EFFICIENTNET_LITE0_FLOPS = 2 * 0.385e9  # 385 M multiply-adds at 224x224 (EfficientNet-Lite0 model card)
# bf16 matmul rate of SmolLM2's layer shapes on 2 threads of the development CPU (AMX) when nothing else
# runs; the measured rate of a run shared with other work is lower, so its bound is too. Both are given.
IDLE_BF16_GFLOPS = 860.0


def matmul_rate(dtype, n=1024, m=576, k=1536, repeats=20):
    """GFLOP/s of a [n, m] x [m, k] matmul (the shapes of a SmolLM2 layer) at ``dtype``."""
    import torch

    a = torch.randn(n, m, dtype=dtype)
    b = torch.randn(m, k, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n * m * k * repeats / (time.perf_counter() - start) / 1e9


def print_rates(runs=5):
    """This CPU's bf16 and fp32 matmul rates at SmolLM2's layer shapes, measured in turn (the median of
    ``runs`` each), and the precision ``feature_dtype: auto`` picks here (recbole_tpad/precision.py)."""
    import statistics

    import torch

    from recbole_tpad.precision import native_bf16, resolve_dtype

    rates = {"bf16": [], "fp32": []}
    for _ in range(runs):
        rates["bf16"].append(matmul_rate(torch.bfloat16, repeats=3))
        rates["fp32"].append(matmul_rate(torch.float32, repeats=3))
    bf16, fp32 = (statistics.median(rates[name]) for name in ("bf16", "fp32"))
    print(json.dumps({"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                      "native_bf16": native_bf16("cpu"), "bf16_gflops": round(bf16, 1), "fp32_gflops": round(fp32, 1),
                      "bf16_over_fp32": round(bf16 / fp32, 3), "auto_picks": resolve_dtype("auto", "cpu")}))


def subset(items, rows):
    from recbole_tpad.features.items import ItemTable

    table = ItemTable([items.records[0]] + [items.records[r] for r in rows], items.text_fields, items.folder,
                      items.max_pixels)
    return table


def count_tokens(backbone, items, batch_size):
    """Tokens the encode loop runs (padding included), and how many images it encodes."""
    from recbole_tpad.features.encode import bucketed_batches, item_prompts

    prompts = item_prompts(backbone, items)
    lengths = [len(x) for x in backbone.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    suffix = len(backbone._suffix_ids)
    has_image = [r.image_path is not None for r in items.records]
    visual = getattr(backbone, "num_visual_tokens", 0) if getattr(backbone, "image_encoder", None) else 0
    tokens = images = 0
    for rows in bucketed_batches(lengths, has_image, batch_size):
        width = max(min(lengths[r], backbone.settings.max_length) + suffix + (visual if has_image[r] else 0)
                    for r in rows)
        tokens += width * len(rows)
        images += sum(has_image[r] for r in rows)
    return tokens, images


def idle_bound(bound, n_items, rate, dtype):
    """Items/s at the idle machine's bf16 rate (``IDLE_BF16_GFLOPS``), beside ``flop_bound``'s at the
    measured ``rate``; empty for fp32 runs (the idle figure is a bf16 one)."""
    if dtype != "bf16":
        return {}
    return {"idle_bound_items_per_s": round(n_items / (bound["seconds"] * rate / IDLE_BF16_GFLOPS), 1),
            "idle_gflops": IDLE_BF16_GFLOPS}


def flop_bound(backbone, items, batch_size, rate):
    """Seconds the encode loop of ``items`` would take at ``rate`` GFLOP/s: tokens, images, LLM params, seconds."""
    tokens, images = count_tokens(backbone, items, batch_size)
    params = sum(p.numel() for n_, p in backbone.model.named_parameters() if "embed_tokens" not in n_)
    flops = 2 * params * tokens
    if images and getattr(backbone, "image_encoder", None) is not None:
        flops += EFFICIENTNET_LITE0_FLOPS * images
    return {"tokens": tokens, "images": images, "params": params, "seconds": flops / (rate * 1e9)}


def main():
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="dataset whose items are encoded (not with --rates)")
    parser.add_argument("--rates", action="store_true", help="print this CPU's bf16 and fp32 matmul rates (median "
                        "of 5, alternating) and the feature_dtype 'auto' picks here, encode nothing")
    parser.add_argument("--sample", type=int, default=512, help="items to encode (fixed seed); 0 = all")
    parser.add_argument("--full", action="store_true", help="time a full extraction through get_item_views")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--backbone", default="smollm2-efficientnet")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    args = parser.parse_args()
    if not args.rates and not args.dataset:
        parser.error("--dataset is needed to encode items (or give --rates)")

    import torch
    from recbole.data import create_dataset

    from recbole_tpad.features.build import build_backbone
    from recbole_tpad.features.cache import get_item_views
    from recbole_tpad.features.config import FeaturesConfig
    from recbole_tpad.features.items import load_items
    from recbole_tpad.quick_start import load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rates:
        print_rates()
        return
    overrides = {"feature_backbone": args.backbone, "feature_dtype": args.dtype,
                 "feature_batch_size": args.batch_size, "state": "WARNING"}
    config = load_config("SASRec", args.dataset, config_dict=overrides)
    dataset = create_dataset(config)
    settings = FeaturesConfig.from_config(config)
    start = time.perf_counter()
    backbone = build_backbone(settings)
    load_seconds = time.perf_counter() - start
    rate = matmul_rate(torch.bfloat16 if settings.dtype == "bf16" else torch.float32)
    items = load_items(config, dataset, settings)
    n_all = len(items) - 1
    if args.full:
        start = time.perf_counter()
        views = get_item_views(config, dataset, settings, backbone=backbone, cache_tag=f"bench-{time.time()}")
        seconds = time.perf_counter() - start
        table = items
        result_extra = {"folder": str(views.folder)}
    else:
        rows = list(range(1, len(items)))
        if args.sample and args.sample < n_all:
            rows = sorted(random.Random(0).sample(rows, args.sample))
        table = subset(items, rows)
        start = time.perf_counter()
        backbone.encode_items(table, progress=True)
        seconds = time.perf_counter() - start
        result_extra = {}
    n = len(table) - 1
    bound = flop_bound(backbone, table, args.batch_size, rate)
    result = dict(
        dataset=args.dataset, backbone=args.backbone, dtype=settings.dtype, items=n, of_items=n_all, images=bound["images"],
        full=args.full, batch_size=args.batch_size, threads=torch.get_num_threads(), seconds=round(seconds, 2),
        items_per_s=round(n / seconds, 2), tokens=bound["tokens"], tokens_per_item=round(bound["tokens"] / n, 1),
        llm_params_non_embedding=bound["params"], matmul_gflops=round(rate, 1),
        flop_bound_seconds=round(bound["seconds"], 2), flop_bound_items_per_s=round(n / bound["seconds"], 1),
        fraction_of_bound=round(bound["seconds"] / seconds, 3),
        **idle_bound(bound, n, rate, settings.dtype),
        model_load_seconds=round(load_seconds, 2), load_avg=os.getloadavg()[0], **result_extra,
    )
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
