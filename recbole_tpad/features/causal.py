"""A text LLM made multimodal LLaVA-style: frozen image encoder -> trainable projector -> m prefix tokens.

NOTE: the encoder's last feature map is average-pooled to an ``a x b = m`` grid (spatial order
kept) before a two-layer MLP projector (LLaVA-1.5's), so one image costs m LLM positions.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.features.backbone import Backbone
from recbole_tpad.features.image_encoders import square_pad_resize


def grid_shape(m):
    """The most square ``(a, b)`` with ``a * b == m``."""
    a = int(math.isqrt(m))
    while m % a:
        a -= 1
    return a, m // a


class Projector(nn.Module):
    """LLaVA-1.5 projector: Linear -> GELU -> Linear, from encoder channels to the LLM's width."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, features):  # [N, m, C] -> [N, m, H]
        return self.net(features)


class CausalBackbone(Backbone):
    kind = "causal"

    def __init__(self, settings, model, tokenizer, source, image_encoder=None):
        super().__init__(settings, model, tokenizer, source)
        self.image_encoder = image_encoder
        self.num_visual_tokens = settings.num_visual_tokens
        self._projector = None
        if image_encoder is not None:
            for parameter in image_encoder.parameters():
                parameter.requires_grad_(False)
            image_encoder.eval()
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(0)  # the same untrained projector for the same config
            self._projector = Projector(image_encoder.out_channels, self.hidden_size)
            torch.random.set_rng_state(generator_state)

    def train(self, mode=True):
        super().train(mode)
        if self.image_encoder is not None:  # frozen: training a stage must not move its batch-norm statistics
            self.image_encoder.eval()
        return self

    @property
    def hidden_size(self):
        return self.model.config.hidden_size

    @property
    def projector(self):
        return self._projector

    def describe(self):
        info = super().describe()
        info["image_encoder"] = self.image_encoder.name if self.image_encoder is not None else None
        info["num_visual_tokens"] = self.num_visual_tokens if self.image_encoder is not None else 0
        return info

    def _encode_one(self, prompt_ids, image):
        if image is None or self.image_encoder is None:
            return list(prompt_ids), [False] * len(prompt_ids), None
        m = self.num_visual_tokens
        placeholder = self.tokenizer.pad_token_id
        return [placeholder] * m + list(prompt_ids), [True] * m + [False] * len(prompt_ids), image

    def shrink_image(self, image):
        if image is None or self.image_encoder is None:
            return image
        return square_pad_resize(image, self.image_encoder.image_size)

    @torch.no_grad()
    def encode_images(self, images):
        """Frozen encoder features pooled to the visual token grid: ``[N, m, C]``."""
        pixels = self.image_encoder.preprocess(images).to(self.device)
        with self.autocast():
            grid = self.image_encoder(pixels)  # [N, C, h, w]
        pooled = F.adaptive_avg_pool2d(grid.float(), grid_shape(self.num_visual_tokens))  # [N, C, a, b]
        return pooled.flatten(2).transpose(1, 2).contiguous()  # [N, m, C]

    def _collate_extras(self, extras, has_image):
        images = [image for image in extras if image is not None]
        if not images:
            return {}
        return {"image_features": self.encode_images(images)}

    def _run(self, inputs):
        embed = self.model.get_input_embeddings()
        embeds = embed(inputs["input_ids"])  # [B, T, H]
        if "image_features" in inputs:
            prefix = self._projector(inputs["image_features"].to(embeds.dtype))  # [N, m, H]
            mask = inputs["visual_mask"].unsqueeze(-1)
            embeds = embeds.masked_scatter(mask, prefix.to(embeds.dtype).reshape(-1))
        out = self.model.model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
        return out.last_hidden_state
