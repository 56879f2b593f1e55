"""ml.imaging: every file becomes an upright RGB picture, or a clear ImageError."""

import io

import numpy as np
import pytest
from PIL import Image

from ml import CorruptImage, ImageTooLarge, UnsupportedImage, inspect_image, load_rgb
from tests.images import image_bytes, quadrants

# Pillow's transpose that a viewer applies for each EXIF orientation value.
ORIENTATION_TRANSFORMS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


def corner_colors(image: Image.Image) -> tuple:
    w, h = image.size
    return tuple(image.getpixel(point) for point in ((2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_shown_upright(orientation):
    upright = quadrants()
    stored = upright
    if orientation in ORIENTATION_TRANSFORMS:
        transform = ORIENTATION_TRANSFORMS[orientation]
        stored = upright.transpose(INVERSE.get(transform, transform))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif)

    loaded = load_rgb(io.BytesIO(buffer.getvalue()))

    # Whatever the stored layout, the picture comes out as the camera saw it.
    assert corner_colors(loaded) == corner_colors(upright)


def test_malformed_exif_does_not_cost_the_picture():
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    data = io.BytesIO()
    quadrants().save(data, format="JPEG", exif=exif)
    loaded = load_rgb(io.BytesIO(data.getvalue()))
    assert loaded.size == (64, 64)


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    loaded = load_rgb(io.BytesIO(image_bytes_of(rgba)))
    assert loaded.mode == "RGB"
    # Fully transparent is white, never black; opaque pixels keep their colour.
    assert loaded.getpixel((5, 5)) == (255, 255, 255)
    assert loaded.getpixel((0, 0)) == (255, 0, 0)


def test_palette_with_transparency_is_composited_on_white():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    palette.putpixel((1, 1), 1)
    data = io.BytesIO()
    palette.save(data, format="GIF", transparency=0)
    loaded = load_rgb(io.BytesIO(data.getvalue()))
    assert loaded.getpixel((5, 5)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (10, 200, 10)


@pytest.mark.parametrize("mode,color", [("1", 1), ("L", 128), ("LA", (128, 255)), ("CMYK", (0, 255, 255, 0))])
def test_other_modes_become_rgb(mode, color):
    fmt = "JPEG" if mode == "CMYK" else ("PNG" if mode != "1" else "BMP")
    loaded = load_rgb(io.BytesIO(image_bytes(mode, color=color, fmt=fmt)))
    assert loaded.mode == "RGB"
    r, g, b = loaded.getpixel((10, 10))
    if mode == "CMYK":
        # Cyan 0, magenta and yellow full: red.
        assert r > 200 and g < 60 and b < 60
    else:
        assert r == g == b


def test_16_bit_grey_is_scaled_not_clipped():
    # A 16-bit ramp from 0 to 65535: clipping would make most of it white.
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(1, 256).repeat(4, axis=0)
    data = io.BytesIO()
    Image.fromarray(ramp).save(data, format="PNG")
    loaded = np.asarray(load_rgb(io.BytesIO(data.getvalue())))[..., 0]
    assert loaded[0, 0] == 0
    assert loaded[0, 255] == 255
    assert 120 <= loaded[0, 128] <= 135  # the middle stays in the middle


def test_float_image_is_scaled():
    values = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    data = io.BytesIO()
    Image.fromarray(values).save(data, format="TIFF")
    loaded = np.asarray(load_rgb(io.BytesIO(data.getvalue())))[..., 0]
    assert loaded.min() == 0 and loaded.max() == 255


def test_multi_frame_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    assert inspect_image(io.BytesIO(data.getvalue())).frames == 2
    r, g, b = load_rgb(io.BytesIO(data.getvalue())).getpixel((8, 8))
    assert r > 200 and b < 50


def test_pixel_limit_is_checked_from_the_header():
    data = image_bytes(size=(300, 200), fmt="PNG")
    with pytest.raises(ImageTooLarge, match="300x200"):
        inspect_image(io.BytesIO(data), max_pixels=50_000)
    assert inspect_image(io.BytesIO(data), max_pixels=60_000).width == 300


@pytest.mark.parametrize(
    "data,error",
    [
        (b"", UnsupportedImage),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><text>hi</text></svg>", UnsupportedImage),
        (b"%PDF-1.4 not an image", UnsupportedImage),
    ],
)
def test_non_images_are_unsupported(data, error):
    with pytest.raises(error, match="not an image"):
        inspect_image(io.BytesIO(data))


def test_truncated_jpeg_is_corrupt_with_a_clear_reason():
    data = image_bytes(size=(256, 256), fmt="JPEG", quality=95)
    # The header is intact, so it passes inspection; decoding then fails.
    truncated = data[: len(data) // 2]
    assert inspect_image(io.BytesIO(truncated)).format == "JPEG"
    with pytest.raises(CorruptImage, match="truncated"):
        load_rgb(io.BytesIO(truncated))


def test_draft_mode_keeps_enough_pixels_for_the_model():
    data = image_bytes(size=(2000, 1500), fmt="JPEG")
    loaded = load_rgb(io.BytesIO(data), min_size=(256, 256))
    # Decoded at reduced scale, but the shorter side never drops below 256.
    assert min(loaded.size) >= 256
    assert loaded.size[0] < 2000


def image_bytes_of(image: Image.Image, fmt: str = "PNG") -> bytes:
    data = io.BytesIO()
    image.save(data, format=fmt)
    return data.getvalue()
