"""Speed of TPAD's stages against the bf16 FLOP bound of the work they do.

    python bench/bench_stages.py --dataset=amazon-beauty --items=512 --sessions=512

Runs, with the configured backbone (default: the offline SmolLM2) and the YAML stage settings:
the item states of ``--items`` items (then of every item, or read from the stage cache), stage 1
on ``--items`` items, stage 2 on ``--sessions`` training
pairs (its feature-bank initialisation and held-out figures timed apart), and the representation
generation of every item, in a temporary stage cache. Extra ``--key=value`` arguments are config
overrides.

FLOP bound: every pass is counted as it runs (padded tokens x 2 x the parameters of the layers it
goes through; backward through the frozen top layers costs one more forward, as only input
gradients and the small LoRA weights need one; the LM head 2 x vocabulary x hidden per answer
token, twice with backward), divided by the matmul rate of SmolLM2's layer shapes in the stages'
precision (bf16, or fp32 where ``feature_dtype: auto`` resolves to it), measured here before the
stages run (``matmul_gflops``) and, for bf16, beside it the idle-machine rate ``--idle_gflops``
(about 860 GFLOP/s on 2 threads of the AMX CPU). Prints one JSON line (and writes --out).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_features import IDLE_BF16_GFLOPS, matmul_rate, subset  # noqa: E402
from recbole_tpad import compat  # noqa: E402


class FlopCounter:
    """Counts the FLOPs of a backbone's top-layer passes, lower-layer passes and LM-head losses."""

    def __init__(self, backbone):
        import torch

        self.backbone = backbone
        decoder = backbone._decoder()
        self.layer_params = sum(p.numel() for n, p in decoder.layers[0].named_parameters()
                                if p.dim() == 2 and "lora_" not in n)  # the matmul weights of one layer
        self.head = backbone._lm_head().weight.numel()
        self.flops = 0.0
        upper, lower, token_loss = backbone.upper, backbone.lower_states, backbone.token_loss

        def counted_upper(states, attention_mask, position_ids, top_layers):
            passes = 2 if torch.is_grad_enabled() else 1
            self.flops += passes * 2 * self.layer_params * top_layers * states.shape[0] * states.shape[1]
            return upper(states, attention_mask, position_ids, top_layers)

        def counted_lower(inputs, top_layers):
            tokens = inputs["input_ids"].numel()
            self.flops += 2 * self.layer_params * (backbone.num_layers - top_layers) * tokens
            return lower(inputs, top_layers)

        def counted_loss(hidden, labels):
            passes = 2 if torch.is_grad_enabled() else 1
            self.flops += passes * 2 * self.head * int((labels[:, 1:] != -100).sum())
            return token_loss(hidden, labels)

        backbone.upper, backbone.lower_states, backbone.token_loss = counted_upper, counted_lower, counted_loss

    def take(self):
        flops, self.flops = self.flops, 0.0
        return flops


def config_overrides(arguments):
    """``{key: value}`` of ``--key=value`` arguments, each value read as RecBole reads a YAML value
    (``tiny-llama`` a string, ``1e-3`` a number, ``[1, 2]`` a list)."""
    import yaml

    from recbole_tpad.settings import yaml_loader

    overrides = {}
    for item in arguments:
        key, _, value = item.lstrip("-").partition("=")
        overrides[key] = yaml.load(value, Loader=yaml_loader()) if value else value
    return overrides


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--sessions", type=int, default=512)
    parser.add_argument("--idle_gflops", type=float, default=IDLE_BF16_GFLOPS)
    parser.add_argument("--out", default=None)
    args, rest = parser.parse_known_args()
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    overrides = config_overrides(rest)

    import numpy as np
    import torch
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.features import FeaturesConfig
    from recbole_tpad.quick_start import load_config
    from recbole_tpad.stages.item_states import compute_item_states, encode_item_views
    from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE, KnowledgeAcquisition
    from recbole_tpad.stages.loop import train_stage
    from recbole_tpad.stages.pipeline import StagePipeline
    from recbole_tpad.stages.session_prompts import training_sessions
    from recbole_tpad.stages.stage_cache import StageStore
    from recbole_tpad.stages.transition_distillation import TransitionDistillation, heldout_pairs

    tmp = Path(tempfile.mkdtemp(prefix="bench_stages_"))
    config = load_config("TPAD", args.dataset, config_dict=dict(
        overrides, show_progress=False, stage_checkpoint_steps=0, stage1_items_per_epoch=args.items,
        stage2_sessions_per_epoch=args.sessions, stage1_epochs=1, stage2_epochs=1))
    # the rate of the precision the stages run in (feature_dtype: auto is fp32 on a CPU without native bf16)
    bf16 = FeaturesConfig.from_config(config).dtype == "bf16"
    rate = matmul_rate(torch.bfloat16 if bf16 else torch.float32)
    idle = args.idle_gflops if bf16 else None  # the idle figure is a bf16 one
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    pipeline = StagePipeline(config, dataset, train._dataset, show_progress=False)
    s = pipeline.settings
    result = {"dataset": args.dataset, "torch_threads": torch.get_num_threads(), "dtype": pipeline.features.dtype,
              "lora_layers": s.lora_layers, "matmul_gflops": round(rate, 1), "idle_gflops": idle}
    clock = time.perf_counter()
    backbone, items = pipeline._backbone_and_items()
    result["load_s"] = time.perf_counter() - clock
    counter = FlopCounter(backbone)

    def record(name, seconds, count, unit):
        flops = counter.take()
        result[name] = {"seconds": round(seconds, 2), unit: count, f"{unit}_per_s": round(count / seconds, 2),
                        "gflop": round(flops / 1e9, 1), "gflops_per_s": round(flops / 1e9 / seconds, 1),
                        "of_measured_bound": round(flops / 1e9 / seconds / rate, 3)}
        if idle:
            result[name]["of_idle_bound"] = round(flops / 1e9 / seconds / idle, 3)

    rows = np.random.default_rng(0).choice(np.arange(1, len(items)), size=min(args.items, len(items) - 1), replace=False)
    clock = time.perf_counter()
    compute_item_states(backbone, subset(items, rows), s.lora_layers, s, pipeline.features.batch_size, False)
    record("item_states", time.perf_counter() - clock, len(rows), "items")
    states = pipeline._item_states(backbone, items)  # every item (read from the stage cache when there)
    counter.take()

    stage1 = KnowledgeAcquisition(backbone, states, s, heldout=[], seed=pipeline.seed)
    clock = time.perf_counter()
    train_stage(stage1, StageStore(tmp, "knowledge", {}), s.stage1_learning_rate, s.grad_clip, 0, False)
    record("stage1", time.perf_counter() - clock, sum(len(rows) for _, rows in stage1.schedule()), "items")

    sessions = training_sessions(train._dataset)
    stage2 = TransitionDistillation(backbone, states, sessions, s, heldout_pairs(sessions, s.stage2_heldout_pairs,
                                                                               pipeline.seed), pipeline.seed)
    clock = time.perf_counter()
    stage2._prepare()  # as the first step would: the bank (every item's untrained T feature), the head's fit
    record("stage2_prepare", time.perf_counter() - clock, len(states) - 1, "items")
    evaluate, stage2.evaluate = stage2.evaluate, None  # timed apart below
    clock = time.perf_counter()
    train_stage(stage2, StageStore(tmp, "distillation", {}), s.stage2_learning_rate, s.grad_clip, 0, False)
    record("stage2", time.perf_counter() - clock, sum(len(rows) for _, rows in stage2.schedule()), "pairs")
    clock = time.perf_counter()
    figures = evaluate()
    record("stage2_heldout", time.perf_counter() - clock, figures.get("heldout_pairs", 0), "pairs")
    result["stage2_heldout"]["figures"] = figures

    clock = time.perf_counter()
    encode_item_views(backbone, states, KNOWLEDGE, pipeline.features.batch_size, show_progress=False)
    record("encode", time.perf_counter() - clock, len(states) - 1, "items")

    line = json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()})
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
