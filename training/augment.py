"""Digits v2's training-time augmentation: MNIST digits made to look as people draw them.

MNIST digits are scanned pen strokes, centred by mass in a 20x20 box of a 28x28 frame. People
draw with a constant-width pen that can be thin or thick, fill the frame or leave it half
empty, slant, photograph their digits (blur, noise, low resolution) and write dark on light.
:func:`augment` turns a batch of MNIST images (float32, 0-255, ink light) into such digits, each
image its own draw of:

* **stroke thickness**: thinner (a min filter at twice the resolution), as is, or thicker (a
  max filter at twice or at full resolution);
* **an affine transform** about the centre: rotation, scale (from a small digit to one filling
  the frame), shear, shift;
* **low resolution**: drawn at 7-14 pixels and scaled back up (a photo, a small canvas, another
  data set's 8x8 digits), or a blur;
* **contrast and noise**: fainter ink, Gaussian noise;
* **inversion**: dark ink on light paper.

Everything is batched TensorFlow ops with stateless random numbers drawn from a seed, so the same
seed gives the same images. None of it is in the exported model: it runs only in training.
"""

from __future__ import annotations

import math

import tensorflow as tf

SIZE = 28


def _uniform(seed: tf.Tensor, n: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform([n], seed, minval=low, maxval=high)


def _chance(seed: tf.Tensor, n: tf.Tensor, p: float) -> tf.Tensor:
    return tf.random.stateless_uniform([n], seed) < p


def _pick(mask: tf.Tensor, changed: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    return tf.where(mask[:, None, None, None], changed, images)


def _thickness(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    n = tf.shape(images)[0]
    choice = tf.random.stateless_uniform([n], seed)
    large = tf.image.resize(images, [2 * SIZE, 2 * SIZE], method="bilinear")
    thinner = tf.image.resize(-tf.nn.max_pool2d(-large, 3, 1, "SAME"), [SIZE, SIZE], method="area")
    thicker = tf.image.resize(tf.nn.max_pool2d(large, 3, 1, "SAME"), [SIZE, SIZE], method="area")
    thickest = tf.nn.max_pool2d(images, 3, 1, "SAME")
    images = _pick(choice < 0.2, thinner, images)
    images = _pick((choice >= 0.55) & (choice < 0.8), thicker, images)
    return _pick(choice >= 0.9, thickest, images)


def _affine(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Rotation, scale, shear and shift about the centre, in one projective transform."""
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 6)
    angle = _uniform(seeds[0], n, -math.radians(15), math.radians(15))
    scale = tf.exp(_uniform(seeds[1], n, math.log(0.6), math.log(1.3)))
    aspect = tf.exp(_uniform(seeds[2], n, math.log(0.85), math.log(1.15)))
    shear = _uniform(seeds[3], n, -0.3, 0.3)
    shift_x = _uniform(seeds[4], n, -2.5, 2.5)
    shift_y = _uniform(seeds[5], n, -2.5, 2.5)
    sx, sy = scale * aspect, scale / aspect
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Forward map (output = A @ input about the centre): rotation @ shear @ scale.
    a00, a01 = cos * sx, (cos * shear - sin) * sy
    a10, a11 = sin * sx, (sin * shear + cos) * sy
    # ImageProjectiveTransformV3 wants the inverse map: input point for each output point.
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    centre = (SIZE - 1) / 2
    ox = centre - shift_x
    oy = centre - shift_y
    b0 = centre - (i00 * ox + i01 * oy)
    b1 = centre - (i10 * ox + i11 * oy)
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([i00, i01, b0, i10, i11, b1, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=[SIZE, SIZE],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _resolution(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    seeds = tf.random.experimental.stateless_split(seed, 3)
    n = tf.shape(images)[0]
    side = tf.random.stateless_uniform([], seeds[0], minval=7, maxval=15, dtype=tf.int32)
    small = tf.image.resize(images, [side, side], method="area")
    blocky = tf.image.resize(small, [SIZE, SIZE], method="bilinear")
    kernel = tf.constant([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16.0)[:, :, None, None]
    blurred = tf.nn.conv2d(images, kernel, 1, "SAME")
    choice = tf.random.stateless_uniform([n], seeds[1])
    images = _pick(choice < 0.25, blocky, images)
    return _pick(choice > 0.85, blurred, images)


def _contrast_noise_inversion(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    seeds = tf.random.experimental.stateless_split(seed, 5)
    n = tf.shape(images)[0]
    peak = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    stretched = images * tf.math.divide_no_nan(255.0, peak)  # as the service frames uploads
    images = _pick(_chance(seeds[0], n, 0.5), stretched, images)
    faint = images * _uniform(seeds[1], n, 0.5, 1.0)[:, None, None, None]
    images = _pick(_chance(seeds[2], n, 0.2), faint, images)
    sigma = _uniform(seeds[3], n, 0.0, 25.0)[:, None, None, None]
    noise = tf.random.stateless_normal(tf.shape(images), seeds[4]) * sigma
    images = tf.clip_by_value(images + noise * tf.cast(sigma > 12.5, tf.float32), 0.0, 255.0)
    inverted = _chance(tf.random.experimental.stateless_fold_in(seed, 7), n, 0.15)
    return _pick(inverted, 255.0 - images, images)


def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A batch (n, 28, 28) of 0-255 light-on-dark digits -> the same digits as people make them.

    ``seed`` is a stateless seed (shape [2], int32 or int64); a quarter of the images are left
    as they are, so that the model still sees MNIST as it is.
    """
    seeds = tf.random.experimental.stateless_split(seed, 6)
    original = images[..., None]
    x = _thickness(original, seeds[0])
    x = _affine(x, seeds[1])
    x = _resolution(x, seeds[2])
    x = _contrast_noise_inversion(x, seeds[3])
    untouched = _chance(seeds[4], tf.shape(images)[0], 0.25)
    return _pick(untouched, original, x)[..., 0]
