"""Tiny random builds of the native MLLMs (Qwen2-VL, LLaVA, SmolVLM, Idefics3), for tests.

Hand-written configs: a 2-layer, 64-wide Llama/Qwen2 text model, a 2-layer vision tower, and
image processor settings that make 4 visual tokens per image (LLaVA, SmolVLM, Idefics3) or a
few (Qwen2-VL, 56x56 to 112x112 pixels).
"""

import json

import torch

from recbole_tpad.testing.tiny_llm import tiny_tokenizer

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14)


def _text(tokenizer, **extra):
    return dict(TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, **extra)


def _save(folder, model, tokenizer, image_processor, processor_config):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=1))


def _ids(tokenizer, *tokens):
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def build_qwen2_vl(folder):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = tiny_tokenizer()
    image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    text = _text(tokenizer, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0})
    vision = dict(depth=2, embed_dim=32, hidden_size=TEXT["hidden_size"], num_heads=2, mlp_ratio=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=image, video_token_id=video,
                           vision_start_token_id=start, vision_end_token_id=end, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2,
                                         temporal_patch_size=2)
    _save(folder, model, tokenizer, processor, {})


def build_llava(folder):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = tiny_tokenizer()
    (image,) = _ids(tokenizer, "<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**VISION, image_size=28), text_config=LlamaConfig(**_text(tokenizer)),
        image_token_index=image, vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    _save(folder, model, tokenizer, processor,
          {"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1})


def _build_idefics(folder, config_name, model_name, processor_module, processor_name):
    import importlib

    import transformers

    tokenizer = tiny_tokenizer()
    (image,) = _ids(tokenizer, "<image>")
    config = getattr(transformers, config_name)(
        vision_config=dict(VISION, image_size=56), text_config=dict(_text(tokenizer), model_type="llama"),
        scale_factor=2, image_token_id=image, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config)
    module = importlib.import_module(f"transformers.models.{processor_module}.image_processing_pil_{processor_module}")
    processor = getattr(module, processor_name)(
        do_image_splitting=False, size={"longest_edge": 56}, max_image_size={"longest_edge": 56}
    )
    _save(folder, model, tokenizer, processor, {"image_seq_len": 4})


def build_idefics3(folder):
    _build_idefics(folder, "Idefics3Config", "Idefics3ForConditionalGeneration", "idefics3", "Idefics3ImageProcessorPil")


def build_smolvlm(folder):
    _build_idefics(folder, "SmolVLMConfig", "SmolVLMForConditionalGeneration", "smolvlm", "SmolVLMImageProcessorPil")


BUILDERS = {
    "tiny-qwen2-vl": build_qwen2_vl,
    "tiny-llava": build_llava,
    "tiny-idefics3": build_idefics3,
    "tiny-smolvlm": build_smolvlm,
}
