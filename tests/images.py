"""Small images made on the fly, for tests of modes, orientation and limits."""

from __future__ import annotations

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def image_bytes(mode: str = "RGB", size=(64, 48), color=(200, 30, 30), fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def quadrants(size: int = 64) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (size, size))
    half = size // 2
    for box, color in (
        ((0, 0, half, half), (255, 0, 0)),
        ((half, 0, size, half), (0, 255, 0)),
        ((0, half, half, size), (0, 0, 255)),
        ((half, half, size, size), (255, 255, 255)),
    ):
        image.paste(color, box)
    return image
