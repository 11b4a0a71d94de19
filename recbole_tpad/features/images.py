"""Open one item image safely: EXIF rotation, RGB, alpha on white, and a pixel limit.

A problem never raises: :func:`open_image` returns ``(image, None)`` or ``(None, kind)`` where
``kind`` names what went wrong, so the caller can make the item text-only and count it.
"""

import warnings

import numpy as np
from PIL import Image, ImageOps

# Problem kinds, in the order the log lists them.
IMAGE_PROBLEMS = (
    "image_missing",      # the file does not exist
    "image_outside",      # the path escapes the dataset folder
    "image_empty",        # zero bytes
    "image_truncated",    # the file ends early
    "image_too_large",    # more pixels than feature_image_max_pixels (decompression bomb)
    "image_unreadable",   # not an image Pillow can decode
)


def to_rgb(image):
    """RGB copy of any Pillow image: palette, grey, 16-bit, CMYK; alpha composited on white."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) if array.size else 0.0
        if peak > 255.0:
            array = array * (255.0 / peak)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def open_image(path, max_pixels):
    """Return ``(rgb_image, None)`` or ``(None, problem_kind)``; never raises for a bad file."""
    try:
        if path.stat().st_size == 0:
            return None, "image_empty"
    except FileNotFoundError:
        return None, "image_missing"
    except OSError:
        return None, "image_unreadable"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return None, "image_too_large"
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "image_too_large"
    except OSError as error:
        if "truncated" in str(error).lower():
            return None, "image_truncated"
        return None, "image_unreadable"
    except (ValueError, SyntaxError, Image.UnidentifiedImageError, EOFError, IndexError, TypeError):
        return None, "image_unreadable"
