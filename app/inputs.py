"""Turn users' uploads and texts into model inputs, and reject what cannot be one.

Images become 28x28 float32 arrays of 0-255 ink on black, made the way MNIST was made. The
steps, in order:

1. Greyscale. Transparent parts are laid on a backdrop first: white, unless the image's border
   is mostly transparent (a drawing exported from a canvas), where the backdrop is the opposite
   of the ink's colour, so that white-on-transparent and black-on-transparent both show.
2. Polarity. An image whose border is mostly light (a dark digit on paper) is inverted.
3. Framing. An image that is already framed like MNIST is used as it is; any other is framed
   as MNIST was made.

**Framed like MNIST**: 28x28, and its ink (pixels above ``INK_THRESHOLD``) has a bounding box
whose longer side is within ``FRAMED_SIDES`` and a centre of mass within
``FRAMED_CENTRE_TOLERANCE`` of ``MNIST_CENTRE`` on both axes. MNIST's own images pass (how many,
and how the rule was chosen: docs/api.md, "How a digit is framed"); a digit that fills the
frame, touches an edge, sits off-centre, is small, or has strokes thick enough to widen its box
does not.

**Framing**: crop to the ink; scale to fit ``DIGIT_BOX`` x ``DIGIT_BOX``, keeping the aspect
ratio; stretch the contrast so that the strongest ink is 255, as in MNIST (a thin pen on a large
canvas leaves only faint grey once scaled down); place the centre of mass at ``MNIST_CENTRE``,
where MNIST's are, which is not the frame's middle. A digit framed here counts as framed like
MNIST, so sending it again gives it back unchanged (the tests check both).

Pillow, NumPy; nothing of HTTP or TensorFlow.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import anyio
import numpy as np
from PIL import Image, ImageChops, ImageOps, ImageStat, UnidentifiedImageError

MNIST_SIZE = 28
DIGIT_BOX = 20  # MNIST's digits were scaled to fit this box...
MNIST_CENTRE = 14.0  # ...and moved so that their centre of mass is at this row and column
INK_THRESHOLD = 32  # grey levels above this count as ink when finding the digit's box
FRAMED_SIDES = (18, 20)  # longest side of an MNIST digit's ink box, at INK_THRESHOLD
FRAMED_CENTRE_TOLERANCE = 1.0  # pixels between a framed digit's centre of mass and MNIST_CENTRE
# A row of ones and a row of positions: _MOMENTS @ image @ _MOMENTS.T is the ink's total, and
# its sums weighted by column and by row.
_MOMENTS = np.stack([np.ones(MNIST_SIZE), np.arange(MNIST_SIZE)]).astype(np.float32)

# Images this small decode faster on the event loop than a hand-off to a thread costs
# (docs/performance.md). The file size alone says little: a PNG of one colour is tiny
# whatever its declared size, and its decode time grows with the pixels.
INLINE_DECODE_BYTES = 64 * 1024
INLINE_DECODE_PIXELS = 128 * 128

# Larger images decode in worker threads, at most this many at once: a decode holds up to ~16
# bytes per pixel (256 MB for 4096x4096 RGBA) for a moment, and more threads than cores would
# not decode any faster. Callers pass DECODE_LIMITER to anyio.to_thread.run_sync.
DECODE_THREADS = max(2, os.cpu_count() or 2)
DECODE_LIMITER = anyio.CapacityLimiter(DECODE_THREADS)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The formats the API documents; Pillow would otherwise try every plugin it has (EPS runs
# Ghostscript where it is installed). JPEG includes the MPO files of phone cameras.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


class ImageError(ValueError):
    """The upload is not a usable image; ``too_large`` tells a size problem from a bad file."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def decode_digit(data: bytes, max_side: int = 4096) -> np.ndarray:
    """Image file bytes -> (28, 28) float32 pixels, 0 = background, 255 = ink."""
    grey = _plain_greyscale_png(data, max_side)
    if grey is None:
        image = _open(data, max_side)
        try:
            grey = _to_greyscale(image)
        except Exception as exc:  # whatever Pillow raises on a file a client made up
            raise ImageError(
                f"the {image.mode} image cannot be turned into greyscale: {exc}"
            ) from exc
    if _has_light_background(grey):
        grey = 255 - grey
    pixels = grey.astype(np.float32)
    if framed_like_mnist(pixels):
        return pixels
    return _center_like_mnist(grey).astype(np.float32)


def framed_like_mnist(pixels: np.ndarray) -> bool:
    """Whether a light-on-dark image is framed as MNIST's are (see the module docstring).

    It runs on every 28x28 upload, right after its decode, where each NumPy call costs far more
    than its arithmetic: so the fewest calls. One matrix product gives the ink's total and its
    first moments (the centre of mass); the first and last ink pixels in row-major and in
    column-major order give the box.
    """
    if pixels.shape != (MNIST_SIZE, MNIST_SIZE):
        return False
    (total, col_moment), (row_moment, _) = (_MOMENTS @ pixels @ _MOMENTS.T).tolist()
    if total <= 0:
        return False
    if abs(row_moment / total - MNIST_CENTRE) > FRAMED_CENTRE_TOLERANCE:
        return False
    if abs(col_moment / total - MNIST_CENTRE) > FRAMED_CENTRE_TOLERANCE:
        return False
    ink = pixels > INK_THRESHOLD
    by_row = ink.tobytes()  # one byte per pixel, 1 for ink: bytes.find is cheaper than NumPy's
    first = by_row.find(1)
    if first < 0:
        return False
    by_column = ink.T.tobytes()
    height = by_row.rfind(1) // MNIST_SIZE - first // MNIST_SIZE + 1
    width = by_column.rfind(1) // MNIST_SIZE - by_column.find(1) // MNIST_SIZE + 1
    return bool(FRAMED_SIDES[0] <= max(height, width) <= FRAMED_SIDES[1])


def decodes_quickly(data: bytes) -> bool:
    """Whether the file is small and its header declares a small image (nothing is decoded)."""
    if len(data) > INLINE_DECODE_BYTES:
        return False
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        # A PNG's first chunk declares its size: no need for Pillow's header parsing.
        width, height = struct.unpack(">II", data[16:24])
        return bool(width * height <= INLINE_DECODE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            width, height = Image.open(io.BytesIO(data), formats=FORMATS).size
    except Exception:  # not an image, or a declared bomb: decode_digit refuses it at once
        return True
    return width * height <= INLINE_DECODE_PIXELS


# Chunks that leave an 8-bit greyscale PNG's pixels as they are. Any other (tRNS transparency,
# eXIf orientation, APNG frames, ...) sends the file through Image.open.
_PLAIN_CHUNKS = frozenset({b"IDAT", b"IEND", b"gAMA", b"sRGB", b"pHYs", b"tEXt", b"tIME"})


def _plain_greyscale_png(data: bytes, max_side: int) -> np.ndarray | None:
    """The pixels of an 8-bit greyscale, non-interlaced PNG, or None for any other file.

    MNIST-style uploads are such PNGs. ``Image.open`` finds their format, parses their chunks
    and prepares the decode in Python, costing more than the decode itself for a 28x28 image
    (docs/performance.md); here the chunks are read with ``struct`` and the pixels decoded by the same Pillow decoder
    (``Image.frombytes(..., "zip")``). Anything unusual, a failed CRC or a decoding error
    returns None: ``Image.open`` then decodes the file, or says what is wrong with it.
    """
    if not data.startswith(PNG_SIGNATURE) or data[8:16] != b"\0\0\0\rIHDR" or len(data) < 33:
        return None  # not a PNG, or its first chunk is not a 13-byte IHDR
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    if (depth, colour, compression, filtering, interlace) != (8, 0, 0, 0, 0):
        return None
    if not (0 < width <= max_side and 0 < height <= max_side):
        return None
    if width * height > (Image.MAX_IMAGE_PIXELS or width * height):
        return None
    idat: list[bytes] = []
    previous = b""
    position = 8
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        end = position + 8 + length
        if end + 4 > len(data):
            return None
        if kind == b"IHDR":
            if position != 8:
                return None
        elif kind not in _PLAIN_CHUNKS:
            return None
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[position + 4 : end]) != crc:
            return None
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            if idat and previous != b"IDAT":
                return None  # IDAT chunks must follow one another
            idat.append(data[position + 8 : end])
        previous = kind
        position = end + 4
    else:
        return None  # no IEND
    if not idat:
        return None
    try:
        image = Image.frombytes("L", (width, height), b"".join(idat), "zip", "L")
    except (ValueError, OSError):
        return None
    return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(height, width)


def _open(data: bytes, max_side: int) -> Image.Image:
    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if max(width, height) > max_side:
                raise ImageError(
                    f"the image is {width}x{height}; at most {max_side}x{max_side} is accepted",
                    too_large=True,
                )
            image.load()  # the first frame of an animation: Pillow opens there
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode: {exc}", too_large=True) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"the file is not an image in a supported format ({', '.join(FORMATS)})"
        ) from exc
    except Exception as exc:  # OSError, SyntaxError, ...: whatever a plugin raises on bad data
        raise ImageError(f"the image is truncated or corrupt: {exc}") from exc
    if width < 1 or height < 1:
        raise ImageError("the image has no pixels")
    return image


def _to_greyscale(image: Image.Image) -> np.ndarray:
    """8-bit greyscale; transparent parts composited on white, 16-bit scaled down."""
    # A PNG turns only by an eXIf chunk; looking for an orientation costs more than the decode
    # of a 28x28 image, so plain PNGs skip it.
    if image.format != "PNG" or "exif" in image.info:
        ImageOps.exif_transpose(image, in_place=True)  # the image is ours: no copy
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        return np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8)
    if image.mode == "F":
        floats = np.asarray(image, dtype=np.float32)
        return np.asarray(np.clip(floats, 0, 255), dtype=np.uint8)
    if image.mode == "LAB":  # TIFF's CIELab: Pillow converts it to nothing, L is the lightness
        return np.asarray(image.getchannel("L"), dtype=np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        level = _backdrop_level(rgba)
        backdrop = Image.new("RGBA", rgba.size, (level, level, level, 255))
        image = Image.alpha_composite(backdrop, rgba)
    if image.mode != "L":  # convert() to the same mode would only copy
        image = image.convert("L")
    return np.asarray(image, dtype=np.uint8)


def _backdrop_level(rgba: Image.Image) -> int:
    """The grey level to lay a transparent image on: white, or black under light ink.

    An image whose border is mostly opaque (a photo, a scan, a screenshot with round corners)
    goes on white, and its own border decides the polarity. One whose border is mostly
    transparent is a drawing on nothing: what is opaque is the ink, and it goes on whichever of
    black and white it is not, so that a white stroke on a transparent canvas does not vanish.
    """
    alpha = np.asarray(rgba.getchannel("A"))
    border = np.concatenate([alpha[0], alpha[-1], alpha[1:-1, 0], alpha[1:-1, -1]])
    if 2 * np.count_nonzero(border < 128) <= border.size:
        return 255
    opacity = ImageStat.Stat(rgba.getchannel("A")).sum[0]
    if opacity == 0:
        return 255
    # The ink's mean lightness, each pixel weighted by its opacity (lightness * alpha / 255).
    weighted = ImageChops.multiply(rgba.convert("L"), rgba.getchannel("A"))
    ink_lightness = 255 * ImageStat.Stat(weighted).sum[0] / opacity
    return 0 if ink_lightness > 127 else 255


def _has_light_background(grey: np.ndarray) -> bool:
    """Most border pixels light: a dark digit on paper, to be inverted to MNIST's polarity."""
    light = grey > 127
    height, width = light.shape
    border = 2 * (height + width) - 4 if height > 1 and width > 1 else height * width
    light_on_border = np.count_nonzero(light) - np.count_nonzero(light[1:-1, 1:-1])
    return bool(2 * light_on_border > border)


def _center_like_mnist(grey: np.ndarray) -> np.ndarray:
    """Frame a light-on-dark digit as MNIST's were (the steps are in the module docstring)."""
    box = _ink_box(grey)
    if box is None:  # blank image: nothing to centre
        return np.asarray(Image.fromarray(grey).resize((MNIST_SIZE, MNIST_SIZE)), dtype=np.uint8)
    top, bottom, left, right = box
    digit = Image.fromarray(grey[top:bottom, left:right])
    small = np.asarray(_fit(digit, DIGIT_BOX), dtype=np.float64)
    height, width = small.shape
    peak = small.max()
    if peak > 0:
        small *= 255.0 / peak
    cy, cx = _centre_of_mass(small)
    if np.isnan(cy):
        cy, cx = (height - 1) / 2, (width - 1) / 2
    top = min(max(round(MNIST_CENTRE - cy), 0), MNIST_SIZE - height)
    left = min(max(round(MNIST_CENTRE - cx), 0), MNIST_SIZE - width)
    frame = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float64)
    frame[top : top + height, left : left + width] = small
    return np.clip(frame, 0, 255).round().astype(np.uint8)


def _ink_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the pixels above ``INK_THRESHOLD``, ends excluded."""
    ink = grey > INK_THRESHOLD
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _fit(digit: Image.Image, side: int) -> Image.Image:
    """Scaled so that its longer side is ``side``, keeping the aspect ratio."""
    scale = side / max(digit.size)
    size = (max(1, round(digit.width * scale)), max(1, round(digit.height * scale)))
    return digit.resize(size, Image.Resampling.LANCZOS)


def _centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    """(row, column) of the pixels' centre of mass; NaN for an image with no ink at all."""
    total = pixels.sum()
    if total <= 0:
        return float("nan"), float("nan")
    rows = pixels.sum(axis=1) @ np.arange(pixels.shape[0])
    cols = pixels.sum(axis=0) @ np.arange(pixels.shape[1])
    return float(rows / total), float(cols / total)


def check_reviews(reviews: list[str], max_chars: int) -> str | None:
    """The first problem with the reviews, or None when every one can go to the model."""
    for index, review in enumerate(reviews):
        if not review.strip():
            return f"reviews[{index}] is empty or only whitespace"
        if len(review) > max_chars:
            return (
                f"reviews[{index}] has {len(review)} characters; at most {max_chars} are accepted"
            )
        if not review.isascii():
            # JSON's "\ud800" escapes give lone surrogates, which TensorFlow cannot encode:
            # they would fail the model call of every request batched with this one.
            try:
                review.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"reviews[{index}] is not valid text: {exc.reason} at character {exc.start}"
    return None
