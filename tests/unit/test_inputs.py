"""Image decoding and review checks, on images made with Pillow."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.inputs import (
    MNIST_CENTRE,
    PNG_SIGNATURE,
    ImageError,
    _plain_greyscale_png,
    check_reviews,
    decode_digit,
    framed_like_mnist,
)
from tests.support.drawn_digits import (
    draw,
    fill_frame,
    in_a_corner,
    on_transparent,
    png,
    small_off_centre,
    thick_strokes,
)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def stroke(size: int = 28, ink: int = 255, background: int = 0) -> np.ndarray:
    """A thick vertical bar, a crude '1', off-centre."""
    pixels = np.full((size, size), background, dtype=np.uint8)
    pixels[size // 5 : size * 4 // 5, size // 6 : size // 6 + max(2, size // 8)] = ink
    return pixels


def framed_seven() -> np.ndarray:
    """A 28x28 '7' framed like MNIST: drawn large, then framed by decode_digit itself."""
    drawn = draw(7, pen=20, ink=255, paper=0)
    return decode_digit(encode(Image.fromarray(drawn))).astype(np.uint8)


def test_mnist_framed_image_is_used_as_it_is() -> None:
    pixels = framed_seven()
    assert framed_like_mnist(pixels)
    out = decode_digit(encode(Image.fromarray(pixels)))
    assert out.dtype == np.float32
    assert out.shape == (28, 28)
    np.testing.assert_array_equal(out, pixels)


def test_light_background_is_inverted() -> None:
    pixels = framed_seven()
    out = decode_digit(encode(Image.fromarray(255 - pixels)))
    np.testing.assert_array_equal(out, pixels)


def assert_framed_like_mnist(out: np.ndarray) -> None:
    """Ink box 19-20 pixels on its longer side, centre of mass at MNIST's, strongest ink 255."""
    ink = out > 32
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20)
    ys, xs = np.indices(out.shape)
    total = out.sum()
    assert abs((ys * out).sum() / total - MNIST_CENTRE) <= 0.5
    assert abs((xs * out).sum() / total - MNIST_CENTRE) <= 0.5
    assert out.max() == 255
    assert framed_like_mnist(out.astype(np.uint8))


def test_large_image_is_fitted_in_20x20_and_centred_by_mass() -> None:
    assert_framed_like_mnist(decode_digit(encode(Image.fromarray(stroke(size=280)))))


def test_transparent_drawing_is_composited_on_white_then_inverted() -> None:
    rgba = np.zeros((56, 56, 4), dtype=np.uint8)  # fully transparent...
    rgba[10:46, 25:31] = (0, 0, 0, 255)  # ...with an opaque black stroke
    out = decode_digit(encode(Image.fromarray(rgba, "RGBA")))
    assert out.max() > 200  # the stroke became ink
    assert out[0, 0] == 0  # the transparent background became MNIST's black


# ---- digits as people draw them: framed as MNIST's were ------------------------------------


def white_on_black(digit: int, size: tuple[int, int], box, pen: float) -> np.ndarray:
    return draw(digit, size, box, pen, ink=255, paper=0)


PEOPLES_28X28 = {
    "fills the frame": white_on_black(3, (28, 28), (0.04, 0.03, 0.96, 0.97), 2.5),
    "touches an edge": white_on_black(2, (28, 28), (0.3, 0.0, 0.9, 0.7), 2.0),
    "top left corner": white_on_black(5, (28, 28), (0.02, 0.02, 0.5, 0.6), 1.8),
    "small, off-centre": white_on_black(4, (28, 28), (0.55, 0.5, 0.9, 0.9), 1.2),
    "thick strokes": white_on_black(8, (28, 28), (0.15, 0.1, 0.85, 0.9), 6.0),
    "thin strokes": white_on_black(9, (28, 28), (0.2, 0.1, 0.8, 0.9), 0.7),
}


@pytest.mark.parametrize("pixels", PEOPLES_28X28.values(), ids=PEOPLES_28X28.keys())
def test_28x28_digit_not_framed_like_mnist_is_framed(pixels: np.ndarray) -> None:
    assert not framed_like_mnist(pixels)
    out = decode_digit(png(pixels))
    assert_framed_like_mnist(out)


CANVASES = {
    "black on white, 280x280": lambda: png(draw(6, pen=18)),
    "black on white RGB, 640x480, thin pen": lambda: png(
        np.stack([draw(6, (640, 480), pen=3)] * 3, axis=-1)
    ),
    "white on transparent, 300x200": lambda: png(
        on_transparent(draw(6, (300, 200), pen=14, ink=255, paper=0)), "RGBA"
    ),
    "black on transparent, 90x37": lambda: png(
        on_transparent(draw(6, (90, 37), (0.4, 0.05, 0.6, 0.95), pen=3, ink=255, paper=0), 0),
        "RGBA",
    ),
    "white on black, 1000x800, thick pen, in a corner": lambda: png(
        draw(6, (1000, 800), (0.05, 0.05, 0.3, 0.4), pen=40, ink=255, paper=0)
    ),
}


@pytest.mark.parametrize("make", CANVASES.values(), ids=CANVASES.keys())
def test_canvas_drawings_of_any_size_and_colour_are_framed(make) -> None:
    out = decode_digit(make())
    assert_framed_like_mnist(out)
    assert out[0, 0] == 0  # MNIST's black background
    assert out[-1, -1] == 0


def test_white_on_transparent_decodes_as_black_on_white_does() -> None:
    """The two ways a canvas exports one drawing give the same digit."""
    drawing = draw(2, (300, 200), pen=14, ink=255, paper=0)
    white_on_transparent = decode_digit(png(on_transparent(drawing, 255), "RGBA"))
    black_on_white = decode_digit(png(255 - drawing))
    assert np.abs(white_on_transparent - black_on_white).max() <= 2


def test_light_ink_with_transparent_corners_is_not_taken_for_a_canvas() -> None:
    """An opaque photo of a digit on paper with transparent round corners stays on white."""
    paper = draw(1, (100, 100), pen=10)  # black on white
    rgba = np.stack([paper] * 3 + [np.full_like(paper, 255)], axis=-1)
    rgba[:5, :5, 3] = rgba[:5, -5:, 3] = rgba[-5:, :5, 3] = rgba[-5:, -5:, 3] = 0
    out = decode_digit(png(rgba, "RGBA"))
    np.testing.assert_allclose(out, decode_digit(png(paper)), atol=2)


@pytest.mark.parametrize("digit", range(10))
def test_framing_a_framed_digit_changes_nothing(digit: int) -> None:
    once = decode_digit(png(draw(digit, (200, 320), pen=12)))
    twice = decode_digit(png(once.astype(np.uint8)))
    np.testing.assert_array_equal(once, twice)


def test_mnist_images_count_as_framed(mnist) -> None:
    """The rule keeps MNIST's own files as they are: every test image, and all training images
    but one (59653, a '0' only 14 pixels tall)."""
    (x_train, _), (x_test, _) = mnist
    assert [i for i, pixels in enumerate(x_test) if not framed_like_mnist(pixels)] == []
    assert [i for i, pixels in enumerate(x_train) if not framed_like_mnist(pixels)] == [59653]


def test_mnist_digits_reframed_as_people_frame_them_are_not_framed(mnist) -> None:
    """These re-framings move nearly every digit off MNIST's frame (thinner strokes do not: a
    thin-stroked digit of MNIST's size and place is framed like MNIST, and is used as it is)."""
    (_, _), (x_test, _) = mnist
    makers = {
        "fill": fill_frame, "corner": in_a_corner, "small": small_off_centre,
        "thick": thick_strokes,
    }  # fmt: skip
    for name, make in makers.items():
        still_framed = np.mean([framed_like_mnist(make(x, i)) for i, x in enumerate(x_test[:500])])
        assert still_framed < 0.05, name


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(Image.fromarray(framed_seven()).convert("RGB"), "JPEG"),
        lambda: encode(Image.fromarray(framed_seven()).convert("CMYK"), "JPEG"),
        lambda: encode(Image.fromarray(framed_seven()), "BMP"),
        lambda: encode(Image.fromarray(framed_seven()), "TIFF"),
        lambda: encode(Image.fromarray(framed_seven()), "WEBP", lossless=True),
        lambda: encode(Image.fromarray(framed_seven()).convert("P"), "GIF"),
        lambda: encode(Image.fromarray(framed_seven().astype(np.uint16) * 257)),
        lambda: encode(Image.fromarray(framed_seven()).convert("RGB").convert("YCbCr"), "TIFF"),
        lambda: encode(lab(Image.fromarray(framed_seven())), "TIFF"),
    ],
    ids=["jpeg", "cmyk-jpeg", "bmp", "tiff", "webp", "gif", "png-16bit", "ycbcr-tiff", "lab-tiff"],
)
def test_common_formats_decode_to_the_same_digit(make) -> None:
    out = decode_digit(make())
    assert out.shape == (28, 28)
    expected = decode_digit(encode(Image.fromarray(framed_seven())))
    assert np.abs(out - expected).mean() < 6


def lab(lightness: Image.Image) -> Image.Image:
    """CIELab with neutral colour: Pillow converts LAB to no other mode."""
    neutral = Image.new("L", lightness.size, 128)
    return Image.merge("LAB", (lightness, neutral, neutral))


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"]
MODES += ["I", "F", "I;16", "I;16B"]


def saved_in_every_format(mode: str) -> list[bytes]:
    image = Image.fromarray(stroke(ink=200, background=30)).convert("RGB")
    image = lab(image.convert("L")) if mode == "LAB" else image.convert(mode)
    files = []
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"):
        with contextlib.suppress(OSError, ValueError, KeyError):  # a format without this mode
            files.append(encode(image, fmt))
    return files


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_pillow_writes_decodes_or_is_refused_as_a_bad_image(mode: str) -> None:
    """A file a client can make never raises anything but ImageError (a 400, not a 500)."""
    files = saved_in_every_format(mode)
    assert files, f"no format holds {mode}"
    for data in files:
        try:
            out = decode_digit(data)
        except ImageError:
            continue
        assert out.shape == (28, 28)
        assert out.dtype == np.float32


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.fromarray(stroke()), Image.fromarray(np.zeros((28, 28), np.uint8))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_digit(data).max() > 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image", "not an image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n", "supported format"),
        (encode(Image.new("L", (28, 28)), "PPM"), "supported format"),
        (np.random.default_rng(0).bytes(4096), "not an image"),
        (
            encode(
                Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200), np.uint8))
            )[:3000],
            "truncated",
        ),
    ],
    ids=["empty", "pdf", "eps", "ppm", "random", "truncated"],
)
def test_bad_files_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as raised:
        decode_digit(data)
    assert not raised.value.too_large


def test_oversized_image_is_rejected_from_its_header() -> None:
    data = encode(Image.new("L", (5000, 10)))
    with pytest.raises(ImageError) as raised:
        decode_digit(data, max_side=4096)
    assert raised.value.too_large


def test_one_pixel_and_blank_images_decode() -> None:
    assert decode_digit(encode(Image.new("L", (1, 1), 255))).shape == (28, 28)
    assert decode_digit(encode(Image.new("L", (50, 50), 0))).max() == 0


def test_review_checks() -> None:
    assert check_reviews(["good", "bad film 😀\x01"], 100) is None
    assert "reviews[1] is empty" in check_reviews(["ok", " \n\t"], 100)
    assert "at most 5" in check_reviews(["123456"], 5)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    """A photo taken sideways says so in its EXIF orientation; the digit is turned upright."""
    pixels = framed_seven()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored picture must turn 90 degrees clockwise
    sideways = Image.fromarray(np.rot90(pixels))  # stored turned a quarter anticlockwise
    lossless = {"JPEG": {"quality": 100}, "WEBP": {"lossless": True}}.get(fmt, {})
    out = decode_digit(encode(sideways, fmt, exif=exif, **lossless))
    without_exif = decode_digit(encode(sideways, fmt, **lossless))
    assert np.abs(out - pixels).mean() < 8
    assert np.abs(without_exif - pixels).mean() > 20


# ---- the fast path for plain 8-bit greyscale PNGs ------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(
    pixels: np.ndarray,
    filters: tuple[int, ...] = (0,),
    idat_parts: int = 1,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    depth: int = 8,
    colour: int = 0,
    interlace: int = 0,
) -> bytes:
    """An 8-bit greyscale PNG whose rows use the given filter types in turn (PNG spec 9.2)."""
    height, width = pixels.shape
    raw = bytearray()
    above = np.zeros(width, dtype=np.int32)
    for y in range(height):
        kind = filters[y % len(filters)]
        row = pixels[y].astype(np.int32)
        left = np.concatenate([[0], row[:-1]])
        upper_left = np.concatenate([[0], above[:-1]])
        if kind == 0:
            predicted = np.zeros_like(row)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = above
        elif kind == 3:
            predicted = (left + above) // 2
        else:
            estimate = left + above - upper_left
            pa, pb, pc = abs(estimate - left), abs(estimate - above), abs(estimate - upper_left)
            predicted = np.where(
                (pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left)
            )
        raw.append(kind)
        raw += ((row - predicted) % 256).astype(np.uint8).tobytes()
        above = row
    compressed = zlib.compress(bytes(raw))
    step = -(-len(compressed) // idat_parts)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + b"".join(png_chunk(kind, data) for kind, data in extra)
        + b"".join(
            png_chunk(b"IDAT", compressed[i : i + step]) for i in range(0, len(compressed), step)
        )
        + png_chunk(b"IEND", b"")
    )


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (4, 3, 2, 1, 0)])
def test_plain_png_fast_path_decodes_every_filter_as_pillow_does(filters: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(sum(filters)).integers(0, 256, (28, 31), dtype=np.uint8)
    data = handmade_png(pixels, filters, idat_parts=3, extra=((b"gAMA", b"\0\0\xb1\x8f"),))
    fast = _plain_greyscale_png(data, 4096)
    assert fast is not None
    assert np.array_equal(fast, pixels)
    assert np.array_equal(fast, pillow_pixels(data))


def test_plain_png_fast_path_takes_mnist_pngs_as_pillow_writes_them(mnist) -> None:
    (_, _), (x_test, _) = mnist
    for pixels in x_test[:300]:
        fast = _plain_greyscale_png(encode(Image.fromarray(pixels)), 4096)
        assert fast is not None
        assert np.array_equal(fast, pixels)


def short_ihdr(data: bytes) -> bytes:
    """The IHDR chunk declared 12 bytes long, with a CRC that matches."""
    return PNG_SIGNATURE + png_chunk(b"IHDR", data[16:28]) + data[33:]


def split_idat(data: bytes) -> bytes:
    """A tEXt chunk between two IDAT chunks, which the PNG spec forbids."""
    second = data.index(b"IDAT", data.index(b"IDAT") + 4) - 4
    return data[:second] + png_chunk(b"tEXt", b"Comment\0between") + data[second:]


def corrupt_crc(data: bytes) -> bytes:
    return data[:29] + bytes([data[29] ^ 0xFF]) + data[30:]  # IHDR's CRC


@pytest.mark.parametrize(
    "data",
    [
        handmade_png(stroke(), extra=((b"tRNS", b"\0\0"),)),  # a transparent grey level
        handmade_png(stroke(), extra=((b"eXIf", b"MM\0*\0\0\0\x08\0\0"),)),  # may turn it
        handmade_png(stroke(), extra=((b"zzZz", b"private"),)),  # a chunk we do not know
        handmade_png(stroke(), interlace=1),
        encode(Image.fromarray(stroke().astype(np.uint16) * 257)),
        encode(Image.fromarray(stroke()).convert("RGB")),
        encode(Image.fromarray(stroke()).convert("P")),
        encode(Image.fromarray(stroke()).convert("1")),
        encode(Image.fromarray(stroke()), "JPEG"),
        corrupt_crc(handmade_png(stroke())),
        handmade_png(stroke())[:-12],  # no IEND
        handmade_png(stroke())[:60],  # cut inside the IDAT chunk
        handmade_png(stroke(), extra=((b"IHDR", b"\0" * 13),)),  # a second IHDR
        short_ihdr(handmade_png(stroke())),
        split_idat(handmade_png(stroke(), idat_parts=2)),
    ],
    ids=[
        "tRNS", "eXIf", "unknown-chunk", "interlaced", "16-bit", "RGB", "palette", "1-bit",
        "JPEG", "bad-CRC", "no-IEND", "truncated", "two-IHDR", "12-byte-IHDR", "split-IDAT",
    ],
)  # fmt: skip
def test_other_files_are_left_to_pillow(data: bytes) -> None:
    assert _plain_greyscale_png(data, 4096) is None


def test_a_transparent_grey_level_is_composited_on_white() -> None:
    """tRNS makes the ink's grey level transparent: composited on white, the ink turns white."""
    pixels = np.where(framed_seven() > 100, 200, 0).astype(np.uint8)
    assert framed_like_mnist(pixels)  # so that it is used as it is, contrast and all
    with_trns = handmade_png(pixels, extra=((b"tRNS", b"\0\xc8"),))  # 200 is transparent
    assert decode_digit(handmade_png(pixels)).max() == 200
    assert decode_digit(with_trns).max() == 255


def test_fast_path_keeps_the_size_limit_and_the_bad_data_errors() -> None:
    with pytest.raises(ImageError) as raised:
        decode_digit(handmade_png(np.zeros((10, 5000), np.uint8)), max_side=4096)
    assert raised.value.too_large
    broken = handmade_png(stroke())
    body_at = broken.index(b"IDAT") + 4
    broken = broken[:body_at] + b"\x00" * 8 + broken[body_at + 8 :]  # zlib header destroyed
    with pytest.raises(ImageError, match=r"corrupt|truncated|not an image"):
        decode_digit(broken)
