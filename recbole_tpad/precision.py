"""Which float precision the hardware computes fast: bf16 where it is native, float32 elsewhere.

A bf16 matmul is fast only on hardware built for it: GPUs from Ampere on, and CPUs with AMX or
AVX512-BF16 (about 6x float32 on AMX). Elsewhere (an AVX2-only CPU, many laptops) PyTorch runs it
through a slow fallback, 50x or more slower than float32 on an AVX2 AMD EPYC (1 thread: 0.7 against
38 GFLOP/s at SmolLM2's layer shapes, `python bench/bench_features.py --rates --threads=1`).
``feature_dtype: auto`` and RecBole's ``enable_amp`` therefore ask this module before they use bf16.
"""

from logging import getLogger

import torch


def native_bf16(device):
    """True where ``device`` (a ``torch.device`` or its name) computes bf16 matmuls natively."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    # private but stable since torch 2.1; a torch without them is taken as without native bf16
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and check() for check in checks)


def resolve_dtype(dtype, device):
    """``'bf16'`` or ``'fp32'`` for a ``feature_dtype`` value: ``'auto'`` picks by :func:`native_bf16`."""
    if dtype != "auto":
        return dtype
    return "bf16" if native_bf16(device) else "fp32"


def fit_amp_to_hardware(config):
    """Fit RecBole's ``enable_amp`` to the hardware: bf16 autocast where bf16 is native, off elsewhere on a CPU.

    RecBole's autocast takes the device's default dtype: bf16 on a CPU, float16 on a GPU. On a CPU
    without native bf16 it would make training many times slower, not faster: it is turned off, with a
    warning. On a GPU with native bf16 (Ampere on) the default becomes bf16, as on the CPU: under float16
    autocast GRU4Rec's training loss rose from its 8th epoch on an H200 (docs/results.md; the cause was not
    traced), and bf16 is what every CPU row trains in. An older GPU keeps float16 with ``enable_scaler``.
    """
    if not config["enable_amp"]:
        return
    device = torch.device(config["device"])
    if device.type == "cpu" and not native_bf16("cpu"):
        config["enable_amp"] = False
        getLogger().warning("enable_amp=True is off for this run: this CPU has no native bf16 (AMX or "
                            "AVX512-BF16), where bf16 autocast is many times slower than float32.")
    elif device.type == "cuda" and native_bf16(device):
        torch.set_autocast_dtype("cuda", torch.bfloat16)  # RecBole's torch.autocast names no dtype
        getLogger().info("enable_amp: bf16 autocast on this GPU (native bf16).")


def amp_dtype(config):
    """The dtype RecBole's autocast trains in under ``config`` (after :func:`fit_amp_to_hardware`), or ''
    without autocast: what a result row records beside ``enable_amp``."""
    if not config["enable_amp"]:
        return ""
    return str(torch.get_autocast_dtype(torch.device(config["device"]).type)).removeprefix("torch.")
