"""``build_backbone(config)``: the backbone ``feature_backbone`` names, on ``feature_device``."""

import logging

import torch

from recbole_tpad.errors import ConfigError
from recbole_tpad.features.config import FeaturesConfig
from recbole_tpad.features.sources import check_pretrained_source, smollm2_folder


def _settings(config):
    return config if isinstance(config, FeaturesConfig) else FeaturesConfig.from_config(config)


def _device(settings):
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        logging.getLogger().warning("feature_device asks for CUDA but none is available; using the CPU.")
        device = torch.device("cpu")
    return device


def load_causal_lm(folder, key):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{key}: could not load a causal LM from '{folder}': {error}") from error
    return model, tokenizer


def build_backbone(config):
    """Build the configured :class:`Backbone` (frozen weights; no adapters yet)."""
    from recbole_tpad.features.causal import CausalBackbone
    from recbole_tpad.features.image_encoders import build_image_encoder

    settings = _settings(config)
    kind = settings.backbone
    if kind in ("smollm2-efficientnet", "causal", "tiny-llama"):
        if kind == "tiny-llama":
            from recbole_tpad.testing import tiny_folder

            folder, key = tiny_folder(kind, settings.cache_root), "feature_backbone"
        elif settings.llm_path:
            folder, key = check_pretrained_source(settings.llm_path, "feature_llm_path"), "feature_llm_path"
        else:
            folder, key = smollm2_folder(settings.cache_root), "feature_llm_path"
        model, tokenizer = load_causal_lm(folder, key)
        encoder_name = settings.image_encoder
        if kind == "tiny-llama" and encoder_name == "efficientnet-lite0":
            encoder_name = "tiny"
        encoder = build_image_encoder(encoder_name, settings.image_size) if settings.use_images else None
        backbone = CausalBackbone(settings, model, tokenizer, settings.llm_path or kind, encoder)
    else:
        from recbole_tpad.features.native import NativeBackbone

        if kind == "mllm":
            folder = check_pretrained_source(settings.mllm_path, "feature_mllm_path")
        else:
            from recbole_tpad.testing import tiny_folder

            folder = tiny_folder(kind, settings.cache_root)
        backbone = NativeBackbone.from_folder(settings, folder, settings.mllm_path or kind)
    return backbone.to(_device(settings))
