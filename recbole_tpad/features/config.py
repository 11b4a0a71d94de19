"""Validated settings of the feature extractor, read once per run from a RecBole ``Config``.

Every key, and its default, is in ``properties/features.yaml`` (the one home of the defaults:
:func:`recbole_tpad.settings.read_keys`). Bad values fail here, early, naming the key and the
allowed values (peft-style ``__post_init__`` validation).
"""

import os
from dataclasses import dataclass, fields
from pathlib import Path

from recbole_tpad.errors import ConfigError
from recbole_tpad.precision import resolve_dtype
from recbole_tpad.settings import read_keys

CAUSAL_KINDS = ("smollm2-efficientnet", "causal", "tiny-llama")
NATIVE_KINDS = ("mllm", "tiny-qwen2-vl", "tiny-llava", "tiny-smolvlm", "tiny-idefics3")
BACKBONE_KINDS = CAUSAL_KINDS + NATIVE_KINDS
IMAGE_ENCODERS = ("efficientnet-lite0", "tiny", "none")
DTYPES = ("auto", "bf16", "fp32")


def default_cache_root():
    return Path(os.environ.get("RECBOLE_TPAD_CACHE") or Path.home() / ".cache" / "recbole_tpad")


@dataclass
class FeaturesConfig:
    # one field per ``feature_<field>`` key of properties/features.yaml, where its default is
    backbone: str
    llm_path: str | None
    mllm_path: str | None
    image_encoder: str
    num_visual_tokens: int
    image_size: int
    mllm_max_pixels: int
    use_images: bool
    device: str
    dtype: str
    cache_dir: str | None
    text_fields: list | None
    field_labels: dict
    list_fields: list
    max_field_chars: int
    summary_suffix: str
    max_length: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list
    batch_size: int
    threads: int
    image_max_pixels: int

    def __post_init__(self):
        if self.backbone not in BACKBONE_KINDS:
            raise ConfigError(
                f"feature_backbone='{self.backbone}' is not known; use one of: {', '.join(BACKBONE_KINDS)}."
            )
        if self.backbone == "mllm" and not self.mllm_path:
            raise ConfigError("feature_backbone='mllm' needs feature_mllm_path (a local folder or hub id).")
        if self.backbone == "causal" and not self.llm_path:
            raise ConfigError("feature_backbone='causal' needs feature_llm_path (a local folder or hub id).")
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ConfigError(
                f"feature_image_encoder='{self.image_encoder}' is not known; use one of: {', '.join(IMAGE_ENCODERS)}."
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"feature_dtype='{self.dtype}' is not known; use one of: {', '.join(DTYPES)}.")
        self.dtype = resolve_dtype(self.dtype, self.device)  # 'auto': bf16 where the hardware has it natively
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"feature_threads must be an integer >= 0 (0: torch's default), got {self.threads!r}.")
        for key in ("num_visual_tokens", "image_size", "mllm_max_pixels", "max_field_chars", "max_length",
                    "lora_r", "lora_alpha", "batch_size", "image_max_pixels"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"feature_{key} must be a positive integer, got {value!r}.")
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise ConfigError(f"feature_lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if self.text_fields is not None and (
            not isinstance(self.text_fields, (list, tuple)) or not all(isinstance(f, str) for f in self.text_fields)
        ):
            raise ConfigError(f"feature_text_fields must be a list of .item column names, got {self.text_fields!r}.")
        if not isinstance(self.field_labels, dict):
            raise ConfigError(f"feature_field_labels must be a dict field -> label, got {self.field_labels!r}.")
        if not isinstance(self.summary_suffix, str) or not self.summary_suffix.strip():
            raise ConfigError("feature_summary_suffix must be a non-empty string (its last token is the summary).")

    @property
    def is_native(self):
        return self.backbone in NATIVE_KINDS

    @property
    def cache_root(self):
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_root()

    @classmethod
    def from_config(cls, config):
        """Read the ``feature_*`` keys of a RecBole ``Config`` (or a plain dict: the YAML's defaults
        for the keys it lacks). ``device`` None is RecBole's ``device``; ``text_fields`` None the
        dataset's ``ITEM_TEXT_FIELDS``."""
        values = read_keys(config, [f"feature_{f.name}" for f in fields(cls)], "features.yaml")
        values = {key[len("feature_"):]: value for key, value in values.items()}
        if values["device"] is None:
            device = _get(config, "device")
            values["device"] = str(device) if device is not None else "cpu"
        if values["text_fields"] is None:
            values["text_fields"] = list(_get(config, "ITEM_TEXT_FIELDS") or [])
        return cls(**values)


def _get(config, key):
    try:
        return config[key]
    except KeyError:
        return None
