"""TensorFlow Serving's quickstart model, ``half_plus_two``, written with TF2: a model of your own.

    .venv/bin/python examples/half_plus_two.py models/half_plus_two/1

writes a SavedModel whose signatures are those of TF Serving's example, so that the same
requests work against it here:

* ``serving_default`` (predict): ``x`` float32 ``[-1, 1]`` -> ``y = 0.5 * x + 2``;
* ``regress_x_to_y``: serialized ``tf.train.Example``s with a float feature ``x`` -> ``outputs``,
  what ``:regress`` calls;
* ``classify_x_to_y``: the same examples -> ``scores`` (and ``classes``), what ``:classify``
  calls.

Every signature has a free first dimension, so concurrent requests are batched.
"""

from __future__ import annotations

import sys

import tensorflow as tf


class HalfPlusTwo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 0.5 * x + 2.0}

    def _parse(self, serialized: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        return 0.5 * features["x"] + 2.0

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self._parse(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = self._parse(inputs)
        return {"scores": scores, "classes": tf.fill(tf.shape(scores), "half_plus_two")}


def main(path: str) -> None:
    model = HalfPlusTwo()
    signatures = {
        "serving_default": model.predict,
        "regress_x_to_y": model.regress,
        "classify_x_to_y": model.classify,
    }
    tf.saved_model.save(model, path, signatures=signatures)
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <model dir>/<name>/<version>, e.g. models/half_plus_two/1")
    main(sys.argv[1])
