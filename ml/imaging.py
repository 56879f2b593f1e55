"""Decode untrusted image bytes into upright RGB pictures.

Everything that touches a user's file before the model goes through here, so
the rules live in one place: the type comes from the bytes (never the name),
the pixel count is checked from the header before any pixel is decoded, EXIF
orientation is honoured, multi-frame files give their first frame, and every
Pillow mode becomes RGB the way a person would see it.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

# Raster formats we decode. Pillow can open more (EPS runs Ghostscript, some
# formats only parse headers); these are the ones cameras and browsers produce.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"})

DEFAULT_MAX_PIXELS = 64_000_000

# Our own header check (ImageTooLarge) runs first with a clearer message; this
# keeps Pillow's bomb guard as a second line for code paths that skip it.
Image.MAX_IMAGE_PIXELS = None
# A truncated file must fail loudly rather than decode as half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_WHITE = (255, 255, 255)

# Said of a file no supported format recognises, whether read whole or by its first bytes.
NOT_AN_IMAGE = "not an image Pillow can read (the contents, not the name, decide)"


# What Pillow raises on malformed data besides its own errors: its parsers
# index, unpack and divide by whatever a file declares. Each is the file's
# fault, so it fails that file alone.
_MALFORMED = (OSError, SyntaxError, ValueError, IndexError, TypeError, KeyError, EOFError, ArithmeticError, struct.error)


class ImageError(ValueError):
    """A file that cannot be classified; the message is safe to show its owner."""


class UnsupportedImage(ImageError):
    """Not a raster image in a format we decode."""


class ImageTooLarge(ImageError):
    """The header declares more pixels than the configured limit."""


class CorruptImage(ImageError):
    """Recognised as an image, but its pixels cannot be decoded."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    frames: int


def _open(source: str | BinaryIO) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns on oversized headers; we report those ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            _ignore_corrupt_exif_warnings()
            image = Image.open(source)
    except UnidentifiedImageError:
        raise UnsupportedImage(NOT_AN_IMAGE) from None
    except _MALFORMED as exc:
        raise CorruptImage(f"unreadable image header: {_describe(exc)}") from None
    if image.format not in SUPPORTED_FORMATS:
        image.close()
        raise UnsupportedImage(
            f"{image.format} images are not supported (use {', '.join(sorted(SUPPORTED_FORMATS))})"
        )
    return image


def _ignore_corrupt_exif_warnings() -> None:
    # Pillow warns and skips metadata it cannot parse; the pixels are fine.
    warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image header gives an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height / 1e6:.0f} megapixels, "
            f"over the limit of {max_pixels / 1e6:.0f} megapixels"
        )


def could_be_supported_image(head: bytes) -> bool:
    """Whether a file starting with these bytes (16 are enough) may be one of SUPPORTED_FORMATS.

    Pillow's own signature checks, so a False here is what inspect_image
    would conclude from the whole file; lets a caller skip unpacking junk.
    """
    Image.init()
    for image_format in SUPPORTED_FORMATS:
        factory_and_accept = Image.OPEN.get(image_format)
        if factory_and_accept is None:  # MPO is opened through the JPEG plugin
            continue
        accept = factory_and_accept[1]
        if accept is None or accept(head[:16]):
            return True
    return False


def inspect_image(source: str | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read only the header: format, size and frame count, or raise ImageError."""
    with _open(source) as image:
        _check_pixels(image, max_pixels)
        try:
            frames = getattr(image, "n_frames", 1)  # GIF and TIFF walk their frames' headers for this
        except _MALFORMED as exc:
            raise CorruptImage(f"unreadable image header: {_describe(exc)}") from None
        return ImageInfo(format=image.format, width=image.width, height=image.height, frames=frames)


def load_rgb(
    source: str | BinaryIO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode the first frame as an upright RGB image, or raise ImageError.

    min_size lets a JPEG decode at 1/2, 1/4 or 1/8 scale (Pillow's draft mode)
    when that still leaves at least this many pixels in each direction, which
    saves most of the decode time on camera-sized photos.
    """
    with _open(source) as image:
        _check_pixels(image, max_pixels)
        if min_size and image.format in ("JPEG", "MPO"):
            image.draft(None, _draft_request(image.size, min_size))
        try:
            image.seek(0)
            image.load()
        except (*_MALFORMED, Image.DecompressionBombError) as exc:
            raise CorruptImage(f"cannot decode image data: {_describe(exc)}") from None
        upright = _apply_exif_orientation(image)
        try:
            return to_rgb(upright)
        except _MALFORMED as exc:
            raise CorruptImage(f"cannot convert the image to RGB: {_describe(exc)}") from None


def _draft_request(size: tuple[int, int], min_size: tuple[int, int]) -> tuple[int, int]:
    # Draft mode keeps both sides at or above the request. Scale the request to
    # the image's aspect ratio so the shorter side is the one that binds.
    width, height = size
    scale = max(min_size[0] / width, min_size[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _describe(exc: Exception) -> str:
    text = str(exc)
    if "truncated" in text or "broken data stream" in text or "image file is truncated" in text:
        return "the file is truncated (part of it is missing)"
    return text or type(exc).__name__


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        with warnings.catch_warnings():
            _ignore_corrupt_exif_warnings()
            return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF must never cost the picture
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Turn any Pillow mode into 8-bit RGB as it would be displayed.

    Transparent pixels are composited on white (a transparent logo is drawn on
    a light page, not on black); 16-bit and float images are scaled into
    0..255 rather than clipped; CIELAB and HSV are converted by colour, not
    channel by channel. CMYK uses Pillow's conversion, which undoes the
    inverted channels of Adobe (Photoshop) JPEGs; embedded ICC profiles are
    not applied.
    """
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _scaled_to_rgb(image)
    if mode in _PREMULTIPLIED:
        # Pillow converts these only to their straight-alpha twins.
        image = image.convert(_PREMULTIPLIED[mode])
        mode = image.mode
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    if mode == "LAB":
        return ImageCms.applyTransform(image, _lab_to_srgb())
    if mode == "HSV":
        return _hsv_to_rgb(image)
    return image.convert("RGB")


_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}


def _has_alpha(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA"):
        return True
    # A palette, grey or RGB PNG can mark one colour (or palette entries) transparent.
    return image.mode in ("P", "L", "RGB", "1") and "transparency" in image.info


@functools.cache
def _lab_to_srgb() -> ImageCms.ImageCmsTransform:
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")


def _hsv_to_rgb(image: Image.Image) -> Image.Image:
    hsv = np.asarray(image, dtype=np.float64) / 255.0
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    sector = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.stack([np.choose(sector, [c[channel] for c in choices]) for channel in range(3)], axis=-1)
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")


def _scaled_to_rgb(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    elif image.mode == "I" and pixels.size and pixels.min() >= 0 and pixels.max() <= 65535:
        # 16-bit PNGs open as mode I; treat them as the 16-bit data they are.
        low, high = 0.0, 65535.0 if pixels.max() > 255 else 255.0
    elif image.mode == "F" and pixels.size and np.nanmin(pixels) >= 0 and np.nanmax(pixels) <= 1:
        low, high = 0.0, 1.0
    else:
        finite = pixels[np.isfinite(pixels)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = high - low or 1.0
    # NaN shows as the darkest value, infinities as the ends of the range.
    pixels = np.nan_to_num(pixels, nan=low, posinf=high, neginf=low)
    scaled = np.clip((pixels - low) * (255.0 / span), 0, 255)
    gray = Image.fromarray(np.round(scaled).astype(np.uint8))
    return gray.convert("RGB")


def make_thumbnail(image: Image.Image, size: int = 256, quality: int = 85) -> bytes:
    """A JPEG no larger than size x size, for galleries."""
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
