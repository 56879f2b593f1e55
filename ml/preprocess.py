"""Turn a decoded picture into the model's input: resize, centre crop, pixels.

Pixels stay uint8 (H, W, 3) here; the conversion to normalised floats happens
once per batch in ml.predict, in one vectorised step.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from PIL import Image

from ml.imaging import DEFAULT_MAX_PIXELS, load_rgb
from ml.registry import ModelSpec


def crop_and_resize(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    """Shorter side to spec.resize_size (bilinear), centre crop spec.input_size.

    Resizing only the region that survives the crop gives the same pixels as
    resize-then-crop for a fraction of the work on large photos.
    """
    width, height = image.size
    scale = spec.resize_size / min(width, height)
    crop = spec.input_size / scale  # crop side measured in source pixels
    left = (width - crop) / 2
    top = (height - crop) / 2
    pixels = image.resize(
        (spec.input_size, spec.input_size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + crop, top + crop),
    )
    return np.asarray(pixels, dtype=np.uint8)


def load_pixels(
    source: str | BinaryIO, spec: ModelSpec, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode a file and return the model-ready uint8 (H, W, 3) crop."""
    image = load_rgb(source, max_pixels=max_pixels, min_size=(spec.resize_size, spec.resize_size))
    return crop_and_resize(image, spec)
