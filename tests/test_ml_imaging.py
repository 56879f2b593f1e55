"""ml.imaging: every file becomes an upright RGB picture, or a clear ImageError."""

import io
import random

import numpy as np
import pytest
from PIL import Image

from ml import CorruptImage, ImageError, ImageTooLarge, UnsupportedImage, could_be_supported_image, inspect_image, load_rgb
from tests.conftest import EDGE_CASES, SAMPLES
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


def as_camera_stores_it(upright: Image.Image, orientation: int, **save_args) -> bytes:
    """The file a camera writes: pixels laid out so that `orientation` shows them upright."""
    stored = upright
    if orientation in ORIENTATION_TRANSFORMS:
        transform = ORIENTATION_TRANSFORMS[orientation]
        stored = upright.transpose(INVERSE.get(transform, transform))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, exif=exif, **save_args)
    return buffer.getvalue()


def corner_colors(image: Image.Image) -> tuple:
    w, h = image.size
    return tuple(image.getpixel(point) for point in ((2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_shown_upright(orientation):
    upright = quadrants()
    loaded = load_rgb(io.BytesIO(as_camera_stores_it(upright, orientation, format="PNG")))

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


SIGNATURE_CASES = sorted([*EDGE_CASES.iterdir(), *SAMPLES.glob("*.*")])


@pytest.mark.parametrize("path", SIGNATURE_CASES, ids=lambda path: path.name)
def test_the_first_bytes_rule_out_only_what_a_whole_read_would(path):
    data = path.read_bytes()
    if could_be_supported_image(data[:16]):
        return  # a whole read decides; nothing more to agree on
    with pytest.raises(UnsupportedImage, match="not an image"):
        inspect_image(io.BytesIO(data))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_the_first_bytes_of_every_supported_format_are_recognised(fmt):
    assert could_be_supported_image(image_bytes(fmt=fmt)[:16])
    assert not could_be_supported_image(b"%PDF-1.4 not an image")


# A TIFF whose directory declares no image size: Pillow raised TypeError("Missing dimensions").
TIFF_WITHOUT_DIMENSIONS = bytes.fromhex(
    "49492a00080000000a000001040001000000400000000101040001000000300000000201030003000000860000000301"
    "0300010000000100000006010300010000000200000011010400010000008c0000001501030001000000030000001601"
    "040001000000300000001701040001000000002400001c010300010000000100000098240000080008000800"
)


def mutants(data: bytes, count: int, seed: int):
    """Copies of data with a few bytes changed (mostly in the header), or cut short: damaged files."""
    rng = random.Random(seed)
    for _ in range(count):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(min(len(damaged), 160) if rng.random() < 0.7 else len(damaged))
            damaged[position] = rng.choice([0x00, 0xFF, rng.randrange(256), damaged[position] ^ 0x80])
        if rng.random() < 0.2:
            damaged = damaged[: rng.randrange(1, len(damaged))]
        yield bytes(damaged)


def animated_gif() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("P", (32, 24), color) for color in (1, 2, 3)]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the damage it skips over
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "animated GIF"])
def test_a_damaged_file_is_an_image_error_never_another_exception(fmt):
    # What a fuzzer found in Pillow's GIF and TIFF readers (IndexError,
    # TypeError) must fail the one file with a reason, not its batch.
    seed_file = animated_gif() if fmt == "animated GIF" else image_bytes(fmt=fmt, size=(40, 30))
    for number, damaged in enumerate([TIFF_WITHOUT_DIMENSIONS, *mutants(seed_file, 400, seed=len(fmt))]):
        for read in (inspect_image, load_rgb):
            try:
                read(io.BytesIO(damaged))
            except ImageError:
                pass
            except Exception as error:  # noqa: BLE001 - the assertion is that nothing else escapes
                pytest.fail(f"{fmt} mutant {number}: {read.__name__} raised {type(error).__name__}: {error}")


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


# --- Every mode, every orientation, every multi-frame format ------------------


def ramp16() -> np.ndarray:
    return np.linspace(0, 65535, 256, dtype=np.uint16).reshape(1, 256).repeat(4, axis=0)


@pytest.mark.parametrize(
    "mode,dtype,fmt",
    [
        ("I;16", "<u2", "PNG"),
        ("I;16", "<u2", "TIFF"),
        ("I;16B", ">u2", "TIFF"),
        ("I;16B", ">u2", "PNG"),
        ("I;16L", "<u2", "TIFF"),
    ],
)
def test_every_16_bit_layout_is_scaled_not_clipped(mode, dtype, fmt):
    image = Image.frombytes(mode, (256, 4), ramp16().astype(dtype).tobytes())
    data = image_bytes_of(image, fmt)
    grey = np.asarray(load_rgb(io.BytesIO(data)))[..., 0]
    # Black stays black, full scale is white, and the middle of the ramp is mid-grey.
    assert grey[0, 0] == 0 and grey[0, 255] == 255
    assert 125 <= grey[0, 128] <= 131


def test_16_bit_modes_pillow_cannot_save_are_scaled_in_memory():
    from ml.imaging import to_rgb

    native = Image.frombytes("I;16N", (256, 4), ramp16().astype("=u2").tobytes())
    grey = np.asarray(to_rgb(native))[..., 0]
    assert (grey[0, 0], grey[0, 255]) == (0, 255) and 125 <= grey[0, 128] <= 131


def test_32_bit_integer_image_is_stretched_over_its_own_range():
    from ml.imaging import to_rgb

    values = np.array([[-5000, 0, 45000, 95000]], dtype=np.int32)
    assert list(np.asarray(to_rgb(Image.fromarray(values)))[0, :, 0]) == [0, 13, 128, 255]


def test_float_image_with_nan_and_infinity_decodes_without_warnings():
    from ml.imaging import to_rgb

    values = np.array([[np.nan, np.inf, -np.inf, -1.0, 1.0, 3.0]], dtype=np.float32)
    with warnings_as_errors():
        grey = np.asarray(to_rgb(Image.fromarray(values)))[0, :, 0]
    # The finite range -1..3 spans 0..255; NaN and -inf are its bottom, +inf its top.
    assert list(grey) == [0, 255, 0, 0, 128, 255]


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_ycbcr_becomes_the_same_colour_in_rgb(fmt):
    ycbcr = Image.new("RGB", (32, 32), (200, 30, 30)).convert("YCbCr")
    data = image_bytes_of(ycbcr, fmt)
    r, g, b = load_rgb(io.BytesIO(data)).getpixel((16, 16))
    assert abs(r - 200) <= 4 and abs(g - 30) <= 4 and abs(b - 30) <= 4


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_without_an_icc_profile_becomes_rgb(fmt):
    # Cyan 0, magenta and yellow full, no black: red. Pillow's JPEG writer adds
    # an Adobe marker (inverted channels), which must be undone, not shown.
    data = image_bytes("CMYK", size=(32, 32), color=(0, 255, 255, 0), fmt=fmt)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "CMYK" and "icc_profile" not in opened.info
    r, g, b = load_rgb(io.BytesIO(data)).getpixel((16, 16))
    assert r > 240 and g < 15 and b < 15


def test_palette_with_alpha_pa_is_composited_on_white():
    from ml.imaging import to_rgb

    image = Image.new("PA", (8, 8))
    image.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762, "RGB")
    image.putpixel((1, 1), (1, 255))
    rgb = to_rgb(image)
    assert rgb.getpixel((1, 1)) == (10, 200, 10)
    assert rgb.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["La", "RGBa"])
def test_premultiplied_alpha_modes_are_composited_on_white(mode):
    from ml.imaging import to_rgb

    transparent = Image.new(mode, (4, 4))
    assert to_rgb(transparent).getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize("mode,key,opaque", [("RGB", (0, 0, 0), (255, 0, 0)), ("L", 0, 200)])
def test_png_colour_key_transparency_is_composited_on_white(mode, key, opaque):
    image = Image.new(mode, (8, 8), key)
    image.putpixel((1, 1), opaque)
    data = io.BytesIO()
    image.save(data, format="PNG", transparency=key)
    loaded = load_rgb(io.BytesIO(data.getvalue()))
    # The keyed colour is see-through, so white; the other pixel keeps its colour.
    assert loaded.getpixel((5, 5)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (opaque if mode == "RGB" else (opaque,) * 3)


def test_cielab_is_converted_by_colour_not_by_channel():
    from ml.imaging import to_rgb

    white = to_rgb(Image.new("LAB", (2, 2), (255, 128, 128))).getpixel((0, 0))
    black = to_rgb(Image.new("LAB", (2, 2), (0, 128, 128))).getpixel((0, 0))
    assert all(v >= 250 for v in white) and all(v <= 5 for v in black)


def test_hsv_is_converted_by_colour_not_by_channel():
    from ml.imaging import to_rgb

    for colour in ((10, 200, 30), (0, 0, 255), (128, 64, 200)):
        back = to_rgb(Image.new("RGB", (1, 1), colour).convert("HSV")).getpixel((0, 0))
        assert all(abs(a - b) <= 3 for a, b in zip(back, colour)), (colour, back)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP", "MPO", "PNG"])
def test_every_multi_frame_format_uses_the_first_frame(fmt):
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = io.BytesIO()
    frames[0].save(data, format=fmt, save_all=True, append_images=frames[1:], **({"lossless": True} if fmt == "WEBP" else {}))
    info = inspect_image(io.BytesIO(data.getvalue()))
    assert (info.format, info.frames) == (fmt, 3)
    r, g, b = load_rgb(io.BytesIO(data.getvalue())).getpixel((16, 16))
    assert r > 240 and g < 15 and b < 15


def nearest_quadrant_colours(image: Image.Image) -> tuple:
    """Corner colours snapped to the quadrant palette, so JPEG noise does not matter."""
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    w, h = image.size
    points = ((w // 8, h // 8), (w - w // 8, h // 8), (w // 8, h - h // 8), (w - w // 8, h - h // 8))
    return tuple(
        min(palette, key=lambda ref: sum((a - b) ** 2 for a, b in zip(image.getpixel(p), ref))) for p in points
    )


@pytest.mark.parametrize("draft", [False, True], ids=["full", "draft"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_honoured_on_jpeg(orientation, draft):
    upright = quadrants(size=640 if draft else 64)
    data = io.BytesIO(as_camera_stores_it(upright, orientation, format="JPEG", quality=95))

    loaded = load_rgb(io.BytesIO(data.getvalue()), min_size=(256, 256) if draft else None)

    # Reduced-scale decoding (draft) and rotation together still give the upright picture.
    if draft:
        assert loaded.size[0] < 640
    assert nearest_quadrant_colours(loaded) == nearest_quadrant_colours(upright)


def jpeg_with_app1(payload: bytes) -> bytes:
    """A valid JPEG with an APP1 (EXIF) segment carrying exactly this payload."""
    plain = image_bytes(size=(40, 30), fmt="JPEG")
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return plain[:2] + segment + plain[2:]


@pytest.mark.parametrize(
    "payload",
    [
        b"Exif\x00\x00garbage that is not a TIFF header",
        b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",  # first IFD offset far past the end
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01",  # IFD cut short
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x02\x00\x04\x00\x00\x00abc\x00\x00\x00\x00\x00",  # orientation as text
    ],
    ids=["not-tiff", "offset-past-end", "truncated-ifd", "orientation-as-text"],
)
def test_malformed_exif_never_crashes(payload):
    data = jpeg_with_app1(payload)
    assert inspect_image(io.BytesIO(data)).format == "JPEG"
    assert load_rgb(io.BytesIO(data)).size == (40, 30)


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc_info):
        return self._context.__exit__(*exc_info)
