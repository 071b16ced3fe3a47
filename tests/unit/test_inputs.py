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
    PNG_SIGNATURE,
    ImageError,
    _plain_greyscale_png,
    check_reviews,
    decode_digit,
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


def test_mnist_sized_image_is_used_as_it_is() -> None:
    pixels = stroke()
    out = decode_digit(encode(Image.fromarray(pixels)))
    assert out.dtype == np.float32
    assert out.shape == (28, 28)
    np.testing.assert_array_equal(out, pixels)


def test_light_background_is_inverted() -> None:
    pixels = stroke(ink=0, background=255)
    out = decode_digit(encode(Image.fromarray(pixels)))
    np.testing.assert_array_equal(out, 255 - pixels)


def test_large_image_is_fitted_in_20x20_and_centred_by_mass() -> None:
    out = decode_digit(encode(Image.fromarray(stroke(size=280))))
    rows = np.flatnonzero(out.max(axis=1) > 0)
    cols = np.flatnonzero(out.max(axis=0) > 0)
    assert rows[-1] - rows[0] + 1 <= 20
    assert cols[-1] - cols[0] + 1 <= 20
    ys, xs = np.indices(out.shape)
    total = out.sum()
    assert abs((ys * out).sum() / total - 13.5) <= 1
    assert abs((xs * out).sum() / total - 13.5) <= 1


def test_transparent_drawing_is_composited_on_white_then_inverted() -> None:
    rgba = np.zeros((56, 56, 4), dtype=np.uint8)  # fully transparent...
    rgba[10:46, 25:31] = (0, 0, 0, 255)  # ...with an opaque black stroke
    out = decode_digit(encode(Image.fromarray(rgba, "RGBA")))
    assert out.max() > 200  # the stroke became ink
    assert out[0, 0] == 0  # the transparent background became MNIST's black


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(Image.fromarray(stroke()).convert("RGB"), "JPEG"),
        lambda: encode(Image.fromarray(stroke()).convert("CMYK"), "JPEG"),
        lambda: encode(Image.fromarray(stroke()), "BMP"),
        lambda: encode(Image.fromarray(stroke()), "TIFF"),
        lambda: encode(Image.fromarray(stroke()), "WEBP", lossless=True),
        lambda: encode(Image.fromarray(stroke()).convert("P"), "GIF"),
        lambda: encode(Image.fromarray(stroke().astype(np.uint16) * 257)),
        lambda: encode(Image.fromarray(stroke()).convert("RGB").convert("YCbCr"), "TIFF"),
        lambda: encode(lab(Image.fromarray(stroke())), "TIFF"),
    ],
    ids=["jpeg", "cmyk-jpeg", "bmp", "tiff", "webp", "gif", "png-16bit", "ycbcr-tiff", "lab-tiff"],
)
def test_common_formats_decode_to_the_same_digit(make) -> None:
    out = decode_digit(make())
    assert out.shape == (28, 28)
    expected = stroke().astype(np.float32)
    assert np.abs(out - expected).mean() < 12


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
    pixels = stroke()
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
    pixels = stroke(ink=200, background=0)
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
