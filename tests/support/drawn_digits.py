"""Digits as people make them: the generator lives in :mod:`evaluation.drawn_digits`, which the
held-out measures of each model version use too."""

from evaluation.drawn_digits import (
    REFRAMINGS,
    STROKES,
    draw,
    fill_frame,
    in_a_corner,
    mnist_like,
    on_canvas,
    on_transparent,
    png,
    scribble,
    small_off_centre,
    thick_strokes,
    thin_strokes,
)

__all__ = [
    "REFRAMINGS",
    "STROKES",
    "draw",
    "fill_frame",
    "in_a_corner",
    "mnist_like",
    "on_canvas",
    "on_transparent",
    "png",
    "scribble",
    "small_off_centre",
    "thick_strokes",
    "thin_strokes",
]
