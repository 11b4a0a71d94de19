"""bf16 only where the hardware computes it natively: ``feature_dtype: auto`` and ``enable_amp``."""

import logging

import pytest
import torch

from recbole_tpad import precision
from recbole_tpad.features.config import FeaturesConfig


@pytest.mark.parametrize("native", [True, False])
def test_auto_feature_dtype_follows_the_hardware_and_explicit_values_stay(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert FeaturesConfig.from_config({}).dtype == ("bf16" if native else "fp32")  # auto is the default
    assert FeaturesConfig.from_config({"feature_dtype": "bf16"}).dtype == "bf16"
    assert FeaturesConfig.from_config({"feature_dtype": "fp32"}).dtype == "fp32"


def test_this_machine_is_read_without_error():
    assert isinstance(precision.native_bf16("cpu"), bool)
    assert precision.native_bf16("meta") is False  # no device but the CPU and CUDA is taken to have it
    assert precision.resolve_dtype("auto", "cpu") in ("bf16", "fp32")


@pytest.mark.parametrize("native, device, amp, expected, dtype", [
    (False, "cpu", True, False, ""),   # bf16 autocast would crawl: off
    (True, "cpu", True, True, "bfloat16"),
    (False, "cpu", False, False, ""),
    (False, "cuda", True, True, "float16"),   # a GPU without native bf16: RecBole's float16, untouched
    (True, "cuda", True, True, "bfloat16"),   # native bf16 on the GPU: bf16 autocast, as on the CPU
])
def test_enable_amp_fits_the_hardware(monkeypatch, caplog, native, device, amp, expected, dtype):
    monkeypatch.setattr(precision, "native_bf16", lambda d: native)
    before = torch.get_autocast_dtype("cuda")
    config = {"enable_amp": amp, "device": torch.device(device)}
    try:
        with caplog.at_level(logging.WARNING):
            precision.fit_amp_to_hardware(config)
        assert config["enable_amp"] is expected
        assert ("enable_amp=True is off" in caplog.text) == (amp and not expected)
        assert precision.amp_dtype(config) == dtype
        with torch.autocast(device_type=torch.device(device).type, enabled=False) as autocast:  # RecBole's call
            assert autocast.fast_dtype == getattr(torch, dtype or ("bfloat16" if device == "cpu" else "float16"))
    finally:
        torch.set_autocast_dtype("cuda", before)  # process-wide: leave it as found
