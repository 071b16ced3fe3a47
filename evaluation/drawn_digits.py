"""Digits as people make them: drawn, scribbled by many hands, or MNIST's re-framed.

``draw(digit, ...)`` draws one of ten hand-written stroke shapes with Pillow, at any size, pen
width, position and polarity, the way a drawing pad or a paint program would.
``scribble(digit, rng, size)`` draws a different hand each call: the shape's points moved a
little, slanted, turned, sometimes another way of writing the digit (a 1 with a flag and a foot,
a crossed 7, a closed 4), the pen's width and the digit's proportions drawn too, filling the
frame. ``REFRAMINGS`` turn an MNIST test image into the 28x28 images and canvases people make of
the same digit: filling the frame, in a corner, small and off-centre, thick or thin strokes,
black on white, white on transparent. Nothing here knows how ``app.inputs`` frames a digit, and
no model was trained on any of it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = 0, turn: float = 1):
    steps = 48
    return [
        (
            cx + rx * math.cos(2 * math.pi * (start + turn * i / steps)),
            cy + ry * math.sin(2 * math.pi * (start + turn * i / steps)),
        )
        for i in range(steps + 1)
    ]


# Each digit: strokes, each a polyline in a unit box (x to the right, y down).
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_ellipse(0.5, 0.5, 0.34, 0.48)],
    1: [[(0.58, 0.02), (0.44, 0.98)]],
    2: [[(0.12, 0.28), (0.22, 0.1), (0.48, 0.02), (0.74, 0.1), (0.82, 0.3), (0.7, 0.52),
         (0.12, 0.97), (0.9, 0.97)]],
    3: [[(0.15, 0.12), (0.45, 0.02), (0.75, 0.1), (0.78, 0.32), (0.42, 0.48), (0.8, 0.62),
         (0.84, 0.82), (0.55, 0.98), (0.14, 0.9)]],
    4: [[(0.62, 0.02), (0.1, 0.66), (0.9, 0.66)], [(0.64, 0.3), (0.64, 0.98)]],
    5: [[(0.85, 0.03), (0.24, 0.03), (0.18, 0.46), (0.5, 0.38), (0.8, 0.5), (0.85, 0.75),
         (0.6, 0.97), (0.15, 0.9)]],
    6: [[(0.72, 0.03), (0.42, 0.18), (0.2, 0.5), (0.18, 0.8), (0.45, 0.98), (0.76, 0.88),
         (0.8, 0.66), (0.55, 0.5), (0.28, 0.58), (0.2, 0.72)]],
    7: [[(0.1, 0.05), (0.9, 0.05), (0.42, 0.98)]],
    8: [_ellipse(0.5, 0.25, 0.27, 0.23, 0.25), _ellipse(0.5, 0.72, 0.32, 0.26, -0.25)],
    9: [_ellipse(0.48, 0.3, 0.3, 0.27, 0.0), [(0.78, 0.3), (0.74, 0.98)]],
}  # fmt: skip


# Other ways of writing some digits, drawn by scribble() one time in three.
VARIANTS: dict[int, list[list[tuple[float, float]]]] = {
    1: [[(0.25, 0.22), (0.55, 0.02), (0.55, 0.98)], [(0.3, 0.98), (0.8, 0.98)]],
    4: [[(0.6, 0.02), (0.1, 0.66), (0.9, 0.66)], [(0.6, 0.02), (0.6, 0.98)]],
    7: [[(0.1, 0.05), (0.9, 0.05), (0.42, 0.98)], [(0.3, 0.52), (0.82, 0.52)]],
    9: [_ellipse(0.5, 0.28, 0.32, 0.26, 0.0), [(0.82, 0.28), (0.6, 0.98)]],
}  # fmt: skip


def draw(
    digit: int,
    size: tuple[int, int] = (280, 280),
    box: tuple[float, float, float, float] = (0.15, 0.1, 0.85, 0.9),
    pen: float = 20,
    ink: int = 0,
    paper: int = 255,
) -> np.ndarray:
    """A greyscale image (height, width) of ``digit`` drawn with a round pen of ``pen`` pixels.

    ``box`` is where the digit goes, as fractions of the image (left, top, right, bottom), the
    pen's centre line inside it. Drawn 4x larger and reduced, so edges are anti-aliased as a
    canvas's are.
    """
    return _render(STROKES[digit], size, box, pen, ink, paper)


def mnist_like(digit: int, pen: float = 2.2) -> np.ndarray:
    """28x28, white on black, the digit about 18 pixels tall in the middle, as MNIST's digits
    are: for the tests that need a few digits, not the data set."""
    return draw(digit, (28, 28), (0.27, 0.17, 0.73, 0.83), pen=pen, ink=255, paper=0)


def _render(
    strokes: list[list[tuple[float, float]]],
    size: tuple[int, int],
    box: tuple[float, float, float, float],
    pen: float,
    ink: int,
    paper: int,
) -> np.ndarray:
    width, height = size
    factor = 4
    image = Image.new("L", (width * factor, height * factor), paper)
    pen_px = max(1, round(pen * factor))
    left, top, right, bottom = box
    canvas = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [
            (
                (left + x * (right - left)) * width * factor,
                (top + y * (bottom - top)) * height * factor,
            )
            for x, y in stroke
        ]
        canvas.line(points, fill=ink, width=pen_px, joint="curve")
        r = pen_px / 2
        for x, y in (points[0], points[-1]):
            canvas.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    reduced = image.resize((width, height), Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.uint8)


def scribble(digit: int, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    """``digit`` in a hand of its own, light on dark, filling a ``side`` x ``side`` frame.

    The frame is filled as a person filling a 28x28 editor or a small canvas would: the
    digit's height takes 80-95% of it. The pen is 6-13% of the side wide.
    """
    strokes = STROKES[digit]
    if digit in VARIANTS and rng.random() < 1 / 3:
        strokes = VARIANTS[digit]
    angle = np.radians(rng.uniform(-10, 10))
    slant = rng.uniform(-0.3, 0.15)
    cos, sin = np.cos(angle), np.sin(angle)
    moved = []
    for stroke in strokes:
        points = np.array(stroke)
        # Corners move on their own; a curve (many points) moves and stretches as a whole.
        wobble = 0.035 if len(stroke) <= 12 else 0.005
        centre = points.mean(axis=0)
        points = centre + (points - centre) * rng.uniform(0.85, 1.15, 2)
        points += rng.normal(0, 0.025, 2) + rng.normal(0, wobble, points.shape)
        x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
        x = x + slant * -y
        points = np.stack([cos * x - sin * y, sin * x + cos * y], axis=1) + 0.5
        moved.append(points)
    every = np.concatenate(moved)
    low, high = every.min(axis=0), every.max(axis=0)
    spread = np.maximum(high - low, 1e-6)
    pen = side * rng.uniform(0.06, 0.13)
    margin = pen / 2 / side
    height = rng.uniform(0.8, 0.95) - 2 * margin
    width = min(height * spread[0] / spread[1] * rng.uniform(0.8, 1.2), 1 - 2 * margin)
    left = margin + rng.random() * max(0.0, 1 - 2 * margin - width)
    top = margin + rng.random() * max(0.0, 1 - 2 * margin - height)
    unit = [[tuple((p - low) / spread) for p in points] for points in moved]
    return _render(unit, (side, side), (left, top, left + width, top + height), pen, 255, 0)


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "PNG")
    return buffer.getvalue()


def on_transparent(ink_alpha: np.ndarray, colour: int = 255) -> np.ndarray:
    """RGBA: ``colour`` everywhere, opaque where there is ink (a canvas's export)."""
    rgba = np.zeros((*ink_alpha.shape, 4), dtype=np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = ink_alpha
    return rgba


# ---- MNIST's digits, re-framed the ways people frame theirs ---------------------------------


def _crop_to_ink(pixels: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(pixels.max(axis=1) > 0)
    cols = np.flatnonzero(pixels.max(axis=0) > 0)
    return pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _scaled(pixels: np.ndarray, side: int) -> np.ndarray:
    image = Image.fromarray(pixels)
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


def _placed(pixels: np.ndarray, size: tuple[int, int], top: int, left: int) -> np.ndarray:
    frame = np.zeros(size, dtype=np.uint8)
    frame[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return frame


def fill_frame(pixels: np.ndarray, index: int) -> np.ndarray:
    """Scaled to fill 28x28 (its longer side touches both edges)."""
    digit = _scaled(_crop_to_ink(pixels), 28)
    return _placed(digit, (28, 28), (28 - digit.shape[0]) // 2, (28 - digit.shape[1]) // 2)


def in_a_corner(pixels: np.ndarray, index: int) -> np.ndarray:
    """MNIST's size, pushed into one of the four corners."""
    digit = _crop_to_ink(pixels)
    height, width = digit.shape
    corner = index % 4
    return _placed(digit, (28, 28), (28 - height) * (corner // 2), (28 - width) * (corner % 2))


def small_off_centre(pixels: np.ndarray, index: int) -> np.ndarray:
    """12 pixels tall or wide, somewhere away from the centre."""
    digit = _scaled(_crop_to_ink(pixels), 12)
    spots = [(1, 2), (15, 14), (3, 15), (14, 1)]
    top, left = spots[index % 4]
    return _placed(digit, (28, 28), top, left)


def thick_strokes(pixels: np.ndarray, index: int) -> np.ndarray:
    """Strokes a pixel wider on every side (a 3x3 max filter), still 28x28."""
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.MaxFilter(3)))


def thin_strokes(pixels: np.ndarray, index: int) -> np.ndarray:
    """Strokes narrowed by three quarters of a pixel on every side, still 28x28."""
    large = Image.fromarray(pixels).resize((112, 112), Image.Resampling.BICUBIC)
    thinner = large.filter(ImageFilter.MinFilter(7))
    return np.asarray(thinner.resize((28, 28), Image.Resampling.BOX))


def on_canvas(pixels: np.ndarray, index: int, size=(280, 280), height: int = 200) -> np.ndarray:
    """Drawn large on a canvas, somewhere on it (light on dark; the callers set the colours)."""
    digit = _scaled(_crop_to_ink(pixels), height)
    rng = np.random.default_rng(index)
    top = int(rng.integers(0, size[0] - digit.shape[0] + 1))
    left = int(rng.integers(0, size[1] - digit.shape[1] + 1))
    return _placed(digit, size, top, left)


REFRAMINGS: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "MNIST as it is": lambda pixels, i: png(pixels),
    "28x28, filling the frame": lambda pixels, i: png(fill_frame(pixels, i)),
    "28x28, in a corner": lambda pixels, i: png(in_a_corner(pixels, i)),
    "28x28, small, off-centre": lambda pixels, i: png(small_off_centre(pixels, i)),
    "28x28, thick strokes": lambda pixels, i: png(thick_strokes(pixels, i)),
    "28x28, thin strokes": lambda pixels, i: png(thin_strokes(pixels, i)),
    "28x28, filling, black on white": lambda pixels, i: png(255 - fill_frame(pixels, i)),
    "280x280 canvas, black on white": lambda pixels, i: png(255 - on_canvas(pixels, i)),
    "300x200 canvas, white on transparent": lambda pixels, i: png(
        on_transparent(on_canvas(pixels, i, (200, 300), 150)), "RGBA"
    ),
}
