"""Native MLLMs through ``AutoModelForImageTextToText``: Qwen2-VL / Qwen2.5-VL, LLaVA, SmolVLM, Idefics3.

The processors of these models also hold a video processor, whose module imports torchvision
(not installed here). We build each processor from its tokenizer and the Pillow-only image
processor (``*ImageProcessorPil``) through a subclass without the video slot.
NOTE: SmolVLM/Idefics3 run without image splitting (one global image per item), so an image
costs ``image_seq_len`` tokens, not up to 17 times that.
"""

import importlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from recbole_tpad.errors import ConfigError
from recbole_tpad.features.backbone import Backbone

# model_type -> (module, processor class, Pillow image processor class, text before the prompt)
ARCHITECTURES = {
    "qwen2_vl": ("qwen2_vl", "Qwen2VLProcessor", "Qwen2VLImageProcessorPil", "<|vision_start|><|image_pad|><|vision_end|>"),
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLProcessor", "Qwen2VLImageProcessorPil", "<|vision_start|><|image_pad|><|vision_end|>"),
    "llava": ("llava", "LlavaProcessor", "LlavaImageProcessorPil", "<image>\n"),
    "idefics3": ("idefics3", "Idefics3Processor", "Idefics3ImageProcessorPil", "<image>"),
    "smolvlm": ("smolvlm", "SmolVLMProcessor", "SmolVLMImageProcessorPil", "<image>"),
}
_IMAGE_PROCESSOR_MODULE = {"qwen2_5_vl": "qwen2_vl"}


def _no_video(*args, **kwargs):
    raise RuntimeError("video input is not supported by recbole_tpad's MLLM processors")


def processor_without_video(model_type, image_processor, tokenizer, extra):
    """The model's processor class, minus its video processor (which would import torchvision)."""
    module, processor_name, _, _ = ARCHITECTURES[model_type]
    base = getattr(importlib.import_module(f"transformers.models.{module}.processing_{module}"), processor_name)

    processor_module = importlib.import_module(base.__module__)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # SmolVLM's __init__ insists on `num2words`, used only to word video prompts; with no video
        # slot it is never called, so a stand-in passes the check for the duration of __init__.
        saved = getattr(processor_module, "num2words", False)
        if saved is None:
            processor_module.num2words = _no_video
        try:
            base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        finally:
            if saved is None:
                processor_module.num2words = None

    takes_video = "video_processor" in base.__init__.__code__.co_varnames[: base.__init__.__code__.co_argcount]
    cls = type(f"{processor_name}NoVideo", (base,), {"__init__": __init__}) if takes_video else base
    return cls(image_processor=image_processor, tokenizer=tokenizer, **extra)


def load_native(folder, settings):
    """Model, processor and model_type of the MLLM in ``folder``."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    model_type = config.model_type
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"feature_mllm_path: model_type '{model_type}' is not supported; supported: {', '.join(ARCHITECTURES)}."
        )
    module, _, image_processor_name, _ = ARCHITECTURES[model_type]
    ip_module = _IMAGE_PROCESSOR_MODULE.get(model_type, module)
    image_processor_cls = getattr(
        importlib.import_module(f"transformers.models.{ip_module}.image_processing_pil_{ip_module}"), image_processor_name
    )
    overrides = {}
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        saved = image_processor_cls.from_pretrained(folder)
        max_pixels = min(settings.mllm_max_pixels, getattr(saved, "max_pixels", None) or settings.mllm_max_pixels)
        overrides = {"max_pixels": max_pixels, "min_pixels": min(getattr(saved, "min_pixels", 3136), max_pixels)}
    elif model_type in ("idefics3", "smolvlm"):
        overrides = {"do_image_splitting": False}
    image_processor = image_processor_cls.from_pretrained(folder, **overrides)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    extra = {}
    processor_config = folder / "processor_config.json"
    if processor_config.is_file():
        extra = {k: v for k, v in json.loads(processor_config.read_text()).items()
                 if k not in ("processor_class", "auto_map")}
    processor = processor_without_video(model_type, image_processor, tokenizer, extra)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    return model, processor, model_type


class NativeBackbone(Backbone):
    kind = "mllm"

    def __init__(self, settings, model, processor, model_type, source):
        super().__init__(settings, model, processor.tokenizer, source)
        self.processor = processor
        self.model_type = model_type
        self.image_prefix = ARCHITECTURES[model_type][3]
        config = model.config
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = config.image_token_index
        self._per_sample_pixels = model_type in ("idefics3", "smolvlm")

    @classmethod
    def from_folder(cls, settings, folder, source):
        model, processor, model_type = load_native(folder, settings)
        return cls(settings, model, processor, model_type, source)

    @property
    def hidden_size(self):
        return self.model.config.get_text_config().hidden_size

    def describe(self):
        return dict(super().describe(), model_type=self.model_type)

    def _lora_excluded(self):
        return r"(?!.*(language_model|text_model)\.).*"  # the vision tower's attention has the same names

    def _encode_one(self, prompt_ids, image):
        if image is None:
            return list(prompt_ids), [False] * len(prompt_ids), None
        encoded = self.processor(text=[self.image_prefix], images=[image], return_tensors="pt")
        prefix = encoded["input_ids"][0].tolist()
        extras = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
        visual = [t == self.image_token_id for t in prefix]
        return prefix + list(prompt_ids), visual + [False] * len(prompt_ids), extras

    def _collate_extras(self, extras, has_image):
        present = [e for e in extras if e]
        if not present:
            return {}
        batch = {}
        for key in present[0]:
            tensors = [e[key] for e in present]
            if self._per_sample_pixels:
                # [1, n, C, H, W] / [1, n, H, W] per sample: pad to the largest, zeros for text-only rows
                shape = [max(t.shape[d] for t in tensors) for d in range(tensors[0].dim())]
                rows = []
                for e in extras:
                    t = e[key] if e else torch.zeros([1] + shape[1:], dtype=tensors[0].dtype)
                    pad = []
                    for d in reversed(range(1, t.dim())):
                        pad += [0, shape[d] - t.shape[d]]
                    rows.append(F.pad(t, pad))
                batch[key] = torch.cat(rows)
            else:
                batch[key] = torch.cat(tensors)  # Qwen2-VL patches / LLaVA images, in prompt order
        return batch

    def _run(self, inputs):
        skip = ("labels", "visual_mask", "text_mask", "summary_index", "has_image")
        kwargs = {k: v for k, v in inputs.items() if k not in skip}
        if self.model_type in ("qwen2_vl", "qwen2_5_vl"):
            kwargs["mm_token_type_ids"] = inputs["visual_mask"].long()  # 1 = image token, for M-RoPE
        out = self.model.model(**kwargs)
        return out.last_hidden_state
