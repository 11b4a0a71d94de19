"""GPU smoke + throughput of the feature backbones (run on a CUDA machine).

    PYTHONPATH=. python bench/bench_features_gpu.py [--config_dir=DIR]

1. Every tiny backbone kind on CUDA in bf16: prepare -> forward -> answer loss -> backward into a
   LoRA adapter; prints true/false per kind.
2. Items/s of the default architecture (SmolLM2-135M: config + tokenizer from --config_dir, the
   folder the GGUF conversion writes; weights random, which does not change the speed) with
   EfficientNet-Lite0, on 2,047 synthetic items (8-30 word titles), text-only and with 540x360
   JPEG photos, at batch sizes 64 and 256. Synthetic so it needs no dataset on the GPU machine.
"""

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:  # RecBole's trainer imports tensorboard at import time; a bare GPU box may not have it
    import torch.utils.tensorboard  # noqa: F401
except ImportError:
    stub = types.ModuleType("torch.utils.tensorboard")
    stub.SummaryWriter = object
    sys.modules["torch.utils.tensorboard"] = stub

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from recbole_tpad import compat  # noqa: E402


def smoke():
    from recbole_tpad.features.build import build_backbone
    from recbole_tpad.features.config import FeaturesConfig

    images = [Image.new("RGB", (60, 90), (200, 10, 10)), None, Image.new("RGB", (80, 40), (0, 0, 200))]
    prompts = ["Item: Red Shirt.", "Item: Hat.", "Item: Blue Scarf."]
    result = {}
    for kind in ["tiny-llama", "tiny-qwen2-vl", "tiny-llava", "tiny-smolvlm", "tiny-idefics3"]:
        backbone = build_backbone(FeaturesConfig.from_config({"feature_backbone": kind, "feature_device": "cuda", "feature_dtype": "bf16"}))
        backbone.add_adapter("K")
        backbone.set_adapter("K")
        out = backbone(backbone.prepare(prompts, images, answers=["a", "b", "c"]))
        out.loss.backward()
        ok = all(p.grad is not None for p in backbone.adapter_parameters("K")) and out.summary.is_cuda
        result[kind] = bool(ok and out.image_mask.tolist() == [True, False, True])
    return result


def throughput(config_dir, n_items=2047):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from recbole_tpad.features.causal import CausalBackbone
    from recbole_tpad.features.config import FeaturesConfig
    from recbole_tpad.features.image_encoders import build_image_encoder
    from recbole_tpad.features.items import ItemRecord, ItemTable

    tokenizer = AutoTokenizer.from_pretrained(config_dir)
    torch.manual_seed(0)
    llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    rng = np.random.default_rng(0)
    words = "Beauty Makeup Face Concealers Neutralizers Professional Eyeshadow Palette Brand Color".split()
    image_dir = Path("/tmp/bench_features_gpu_images")
    image_dir.mkdir(exist_ok=True)
    result = {}
    for with_images, batch in [(False, 64), (False, 256), (True, 64), (True, 256)]:
        settings = FeaturesConfig.from_config({"feature_device": "cuda", "feature_dtype": "bf16", "feature_batch_size": batch})
        backbone = CausalBackbone(settings, llm, tokenizer, "smollm2-architecture-random",
                                  build_image_encoder("efficientnet-lite0", 224)).to("cuda")
        records = [ItemRecord("[PAD]", {"title": ""}, None, True)]
        for i in range(n_items):
            path = None
            if with_images:
                path = image_dir / f"{i % 64}.jpg"
                if not path.exists():
                    Image.fromarray(rng.integers(0, 255, (540, 360, 3), dtype=np.uint8)).save(path)
            title = " ".join(rng.choice(words, size=int(rng.integers(8, 30))))
            records.append(ItemRecord(str(i), {"title": title, "brand": "Acme", "categories": "Beauty, Face"}, path))
        table = ItemTable(records, ["title", "brand", "categories"], image_dir, 40_000_000)
        backbone.encode_items(table, progress=False)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        backbone.encode_items(table, progress=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        result[f"images={with_images} batch={batch}"] = {"items_per_s": round(n_items / seconds, 1)}
    return result


def main():
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_dir", default=None, help="folder with SmolLM2's config.json + tokenizer")
    args = parser.parse_args()
    out = {"gpu": torch.cuda.get_device_name(0), "smoke": smoke()}
    if args.config_dir:
        out["throughput"] = throughput(args.config_dir)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
