"""Wall time of TPAD's stages on a sample, and the projection to the configured defaults.

    python bench/bench_stages.py --dataset=amazon-beauty --items=32 --sessions=16 --encode=256

Runs stage 1 on ``--items`` items, stage 2 on ``--sessions`` training pairs and the item encoding
(adapter K) on ``--encode`` items with the configured backbone (default: the offline SmolLM2 +
EfficientNet-Lite0), in a temporary stage cache, then projects the full run's stage times from the
per-row costs: stage-1 items and stage-2 sessions from the YAML defaults, every item for encoding.
Extra ``--key=value`` arguments are config overrides. Prints one JSON line (and writes --out).
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_tpad import compat  # noqa: E402


def main():
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--encode", type=int, default=256)
    parser.add_argument("--out", default=None)
    args, rest = parser.parse_known_args()
    overrides = {}
    for item in rest:
        key, _, value = item.lstrip("-").partition("=")
        overrides[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" and value not in ("", "-") else value

    import torch
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.quick_start import load_config
    from recbole_tpad.stages.config import StageConfig
    from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE, KnowledgeAcquisition
    from recbole_tpad.stages.loop import train_stage
    from recbole_tpad.stages.pipeline import StagePipeline
    from recbole_tpad.stages.session_prompts import training_sessions
    from recbole_tpad.stages.transition_distillation import TransitionDistillation

    tmp = tempfile.mkdtemp(prefix="bench_stages_")
    base = load_config("TPAD", args.dataset, config_dict=dict(overrides, show_progress=False))
    defaults = StageConfig.from_config(base)
    config = load_config("TPAD", args.dataset, config_dict=dict(
        overrides, show_progress=False, stage_cache_dir=tmp, stage_checkpoint_steps=0,
        stage1_items_per_epoch=args.items, stage2_sessions_per_epoch=args.sessions, stage1_epochs=1, stage2_epochs=1))
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    pipeline = StagePipeline(config, dataset, train._dataset, show_progress=False)
    s = pipeline.settings
    result = {"dataset": args.dataset, "torch_threads": torch.get_num_threads(),
              "backbone": pipeline.features.backbone, "dtype": pipeline.features.dtype}
    clock = time.perf_counter()
    backbone, items = pipeline._backbone_and_items()
    result["load_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    train_stage(KnowledgeAcquisition(backbone, items, s, pipeline.seed), pipeline.store1, s.stage1_learning_rate,
                s.grad_clip, 0, False)
    result["stage1_s"], result["stage1_items"] = time.perf_counter() - clock, args.items
    clock = time.perf_counter()
    stage2 = TransitionDistillation(backbone, items, training_sessions(train._dataset), s, pipeline.seed)
    train_stage(stage2, pipeline.store2, s.stage2_learning_rate, s.grad_clip, 0, False)
    result["stage2_s"], result["stage2_sessions"] = time.perf_counter() - clock, args.sessions
    sample = dataclasses.replace(items, records=items.records[: args.encode + 1])
    clock = time.perf_counter()
    backbone.encode_items(sample, adapter=KNOWLEDGE, progress=False)
    result["encode_s"], result["encode_items"] = time.perf_counter() - clock, args.encode

    n_items = len(items.records) - 1
    n_pairs = len(training_sessions(train._dataset))
    full1 = (defaults.stage1_items_per_epoch or n_items) * defaults.stage1_epochs
    full2 = (defaults.stage2_sessions_per_epoch or n_pairs) * defaults.stage2_epochs
    result["projected_s"] = {
        "stage1": result["stage1_s"] / args.items * full1,
        "stage2": result["stage2_s"] / args.sessions * full2,
        "encode_all_items": result["encode_s"] / args.encode * n_items,
    }
    result["projected_s"]["total_stages"] = result["load_s"] + sum(result["projected_s"].values())
    result["projected_s"] = {k: round(v, 1) for k, v in result["projected_s"].items()}
    line = json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()})
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
