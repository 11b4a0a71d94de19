"""Test and development support: tiny random-weight backbones, not models to train.

The ``feature_backbone`` kinds ``tiny-llama``, ``tiny-qwen2-vl``, ``tiny-llava``, ``tiny-smolvlm``
and ``tiny-idefics3`` (the test suite, ``bench/run_benchmark.py --quick``) are hand-written
configs with seeded random weights. Each is a normal HF folder written once under
``<feature_cache_dir>/models/`` and then loaded through the same code as a real checkpoint.
"""

import torch

from recbole_tpad.features.sources import model_folder
from recbole_tpad.testing import tiny_llm, tiny_mllm

TINY_VERSION = 2  # bump when a tiny config changes: new folder, new cache keys
BUILDERS = {"tiny-llama": tiny_llm.build_tiny_llama, **tiny_mllm.BUILDERS}


def tiny_folder(kind, cache_root):
    """The folder of tiny build ``kind``, built on first use."""
    if kind not in BUILDERS:
        raise ValueError(f"No tiny build '{kind}'; known: {sorted(BUILDERS)}.")
    generator_state = torch.random.get_rng_state()
    try:
        return model_folder(cache_root, kind, {"version": TINY_VERSION}, BUILDERS[kind])
    finally:
        torch.random.set_rng_state(generator_state)
