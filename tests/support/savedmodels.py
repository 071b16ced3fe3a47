"""Small SavedModels of every shape users bring, built by the tests in seconds.

Each builder writes one SavedModel into ``path`` (the version folder, ``<model>/<version>/``)
and returns nothing; tests call the models directly with TensorFlow to get the answers the
service must give. The shapes are those TF Serving, Triton and KServe users bring:

* :func:`keras_two_in_two_out`: Keras 3 ``model.export()``, two float inputs, two outputs;
* :func:`triton_simple`: a ``tf.Module`` shaped as Triton's ``simple`` example (int32
  ``INPUT0``/``INPUT1`` ``[-1, 16]`` -> ``OUTPUT0`` = sum, ``OUTPUT1`` = difference);
* :func:`strings_module`: a ``tf.Module`` with a string input, int64 and bool outputs, and a
  second signature;
* :func:`tf1_half_plus_two`: TF Serving's quickstart model, a TF1 graph whose ``x`` is
  ``[-1, 1]``, with predict, classify and regress signatures over ``tf.Example`` parsing;
* :func:`tf1_estimator_style`: a TF1 ``SavedModelBuilder`` export as Estimators write them:
  serialized ``tf.Example`` in, classify (classes, scores) and regress signatures, and a
  predict signature;
* :func:`tf1_with_assets`: a TF1 graph with a vocabulary file in ``assets/`` read by a lookup
  table;
* :func:`tf1_reference_variables`: a TF1 graph with reference (``float_ref``) variables, which
  TF2's loader refuses;
* :func:`unbatched`: a signature without a batch dimension (a fixed ``[3]`` vector);
* :func:`sequences`: a free dimension besides the batch's (``[-1, -1]``);
* :func:`stateful_counter`: a variable incremented by every call;
* :func:`all_dtypes`: identity signatures for every dtype the wire formats carry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

# ---- TF2 -----------------------------------------------------------------------------------


def keras_two_in_two_out(path: Path) -> None:
    """Keras functional model: ``a`` float32[-1,3] and ``b`` float32[-1,2] -> ``total``
    float32[-1,1] and ``scaled`` float32[-1,3], exported with ``model.export()``."""
    import keras

    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    total = keras.layers.Dense(1, name="total", kernel_initializer="ones")(joined)
    scaled = keras.layers.Rescaling(2.0, name="scaled")(a)
    model = keras.Model(inputs={"a": a, "b": b}, outputs={"total": total, "scaled": scaled})
    model.export(str(path), verbose=False)


class _Simple(tf.Module):
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 16], tf.int32, name="INPUT0"),
            tf.TensorSpec([None, 16], tf.int32, name="INPUT1"),
        ]
    )
    def serve(self, INPUT0: tf.Tensor, INPUT1: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}


def triton_simple(path: Path) -> None:
    module = _Simple()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


class _Strings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def lengths(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        length = tf.strings.length(text, unit="UTF8_CHAR")
        return {"length": tf.cast(length, tf.int64), "empty": tf.equal(length, 0)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def upper(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"upper": tf.strings.upper(text), "words": tf.strings.split(text).row_lengths()}


def strings_module(path: Path) -> None:
    module = _Strings()
    tf.saved_model.save(
        module,
        str(path),
        signatures={"serving_default": module.lengths, "upper": module.upper},
    )


class _Unbatched(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32, name="v")])
    def norm(self, v: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"norm": tf.norm(v), "unit": v / tf.norm(v)}


def unbatched(path: Path) -> None:
    module = _Unbatched()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.norm})


class _Sequences(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
    def total(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"sum": tf.reduce_sum(x, axis=1)}


def sequences(path: Path) -> None:
    """``x`` float32[-1, -1] -> ``sum`` float32[-1]: rows of any length, summed."""
    module = _Sequences()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.total})


class _Counter(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.count = tf.Variable(0, dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="step")])
    def add(self, step: tf.Tensor) -> dict[str, tf.Tensor]:
        total = self.count.assign_add(tf.reduce_sum(step))
        return {"count": tf.fill(tf.shape(step), total)}


def stateful_counter(path: Path) -> None:
    module = _Counter()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.add})


DTYPES = (
    tf.bool,
    tf.int8,
    tf.int16,
    tf.int32,
    tf.int64,
    tf.uint8,
    tf.uint16,
    tf.uint32,
    tf.uint64,
    tf.float16,
    tf.bfloat16,
    tf.float32,
    tf.float64,
    tf.string,
)


def all_dtypes(path: Path) -> None:
    """One signature per dtype, ``<dtype>``: ``x`` [-1, 2] -> ``y``, the same values."""

    module = tf.Module()
    signatures = {}
    for dtype in DTYPES:
        fn = tf.function(
            lambda x: {"y": tf.identity(x)},
            input_signature=[tf.TensorSpec([None, 2], dtype, name="x")],
        )
        setattr(module, f"f_{dtype.name}", fn)
        signatures[dtype.name] = fn.get_concrete_function()
    signatures["serving_default"] = signatures["float32"]
    tf.saved_model.save(module, str(path), signatures=signatures)


def example(**features: int | float | str) -> bytes:
    """A serialized ``tf.train.Example`` of one-value features, as a client would build it."""
    feature = {}
    for name, value in features.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    proto = tf.train.Example(features=tf.train.Features(feature=feature))
    return proto.SerializeToString()


# ---- TF1 -----------------------------------------------------------------------------------

v1 = tf.compat.v1
PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def _info(tensor: tf.Tensor) -> object:
    return v1.saved_model.utils.build_tensor_info(tensor)


def _save_v1(
    path: Path,
    graph: tf.Graph,
    session: object,
    signatures: dict[str, tuple[dict[str, tf.Tensor], dict[str, tf.Tensor], str]],
    assets: list[tf.Tensor] | None = None,
    main_op: object | None = None,
) -> None:
    builder = v1.saved_model.Builder(str(path))
    defs = {
        name: v1.saved_model.signature_def_utils.build_signature_def(
            {k: _info(t) for k, t in inputs.items()},
            {k: _info(t) for k, t in outputs.items()},
            method,
        )
        for name, (inputs, outputs, method) in signatures.items()
    }
    with graph.as_default():
        builder.add_meta_graph_and_variables(
            session,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map=defs,
            assets_collection=assets,
            main_op=main_op,
        )
    builder.save()


def tf1_half_plus_two(path: Path) -> None:
    """TF Serving's ``saved_model_half_plus_two``: ``y = 0.5 * x + 2``, ``x`` float[-1, 1]."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], dtype=tf.float32)})
        x = tf.identity(tf.reshape(features["x"], [-1, 1]), name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        session.run(v1.global_variables_initializer())
        classes = tf.identity(tf.constant([["half_plus_two"]]) + tf.strings.as_string(x), "c")
        _save_v1(
            path,
            graph,
            session,
            {
                "serving_default": ({"x": x}, {"y": y}, PREDICT),
                "classify_x_to_y": (
                    {"inputs": serialized},
                    {"scores": y, "classes": classes},
                    CLASSIFY,
                ),
                "regress_x_to_y": ({"inputs": serialized}, {"outputs": y}, REGRESS),
            },
        )


def tf1_estimator_style(path: Path) -> None:
    """Serialized ``tf.Example`` in (``age`` int64, ``height`` float, ``city`` bytes), as
    an Estimator's ``build_parsing_serving_input_receiver_fn`` writes it: classify
    (classes, scores over 3 classes), regress, and predict signatures."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        serialized = v1.placeholder(tf.string, shape=[None], name="input_example_tensor")
        features = v1.parse_example(
            serialized,
            {
                "age": v1.FixedLenFeature([1], tf.int64),
                "height": v1.FixedLenFeature([1], tf.float32),
                "city": v1.FixedLenFeature([1], tf.string, default_value=""),
            },
        )
        age = tf.cast(features["age"], tf.float32)
        height = features["height"]
        is_paris = tf.cast(tf.equal(features["city"], "paris"), tf.float32)
        weights = v1.Variable([[0.01, -0.02, 0.03]], name="w")
        logits = age * weights + height * 0.1 + is_paris
        scores = tf.nn.softmax(logits, name="scores")
        classes = tf.tile(tf.constant([["low", "mid", "high"]]), [tf.shape(scores)[0], 1])
        value = tf.reduce_sum(age * 0.5 + height, axis=1, name="value")
        session.run(v1.global_variables_initializer())
        _save_v1(
            path,
            graph,
            session,
            {
                "serving_default": (
                    {"inputs": serialized},
                    {"classes": classes, "scores": scores},
                    CLASSIFY,
                ),
                "regression": ({"inputs": serialized}, {"outputs": value}, REGRESS),
                "predict": ({"examples": serialized}, {"scores": scores, "value": value}, PREDICT),
            },
        )


def tf1_with_assets(path: Path, words: tuple[str, ...] = ("good", "bad", "fine")) -> None:
    """Word ids from a vocabulary file in ``assets/`` (unknown words: -1)."""
    vocabulary = path.parent / f".{path.name}-vocabulary.txt"
    vocabulary.write_text("\n".join(words) + "\n")
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        asset = tf.constant(str(vocabulary), name="vocabulary_path")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)
        table = v1.lookup.StaticHashTable(
            v1.lookup.TextFileInitializer(
                asset,
                tf.string,
                v1.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                v1.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        words_in = v1.placeholder(tf.string, shape=[None], name="words")
        ids = table.lookup(words_in)
        session.run(v1.tables_initializer())
        _save_v1(
            path,
            graph,
            session,
            {"serving_default": ({"words": words_in}, {"ids": ids}, PREDICT)},
            assets=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=v1.tables_initializer(),
        )
    vocabulary.unlink()


def tf1_reference_variables(path: Path) -> None:
    """``y = x @ w + b`` with reference variables (``use_resource=False``), and ``calls``, a
    reference counter every call adds one to: its output is a ``float_ref``, which TF2's
    loader refuses ("has a reference type float_ref"); a TF1 session serves it."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, shape=[None, 2], name="x")
        w = v1.Variable(np.array([[1.0], [2.0]], np.float32), name="w", use_resource=False)
        b = v1.Variable(np.array([0.5], np.float32), name="b", use_resource=False)
        counter = v1.Variable(0.0, name="counter", use_resource=False)
        y = tf.add(tf.matmul(x, w), b, name="y")
        calls = v1.assign_add(counter, 1.0)
        session.run(v1.global_variables_initializer())
        _save_v1(
            path,
            graph,
            session,
            {
                "serving_default": ({"x": x}, {"y": y}, PREDICT),
                "count": ({"x": x}, {"calls": calls}, PREDICT),
            },
        )


ZOO = {
    "keras2": keras_two_in_two_out,
    "simple": triton_simple,
    "strings": strings_module,
    "unbatched": unbatched,
    "sequences": sequences,
    "counter": stateful_counter,
    "dtypes": all_dtypes,
    "half_plus_two": tf1_half_plus_two,
    "estimator": tf1_estimator_style,
    "assets": tf1_with_assets,
    "refvars": tf1_reference_variables,
}


def call_directly(path: Path, signature: str, **inputs: object) -> dict[str, np.ndarray]:
    """The signature of the SavedModel in ``path`` called by TensorFlow itself, not through
    the service: what the service must answer. TF2's loader, or, for what it refuses
    (reference variables), a TF1 session fed by the signature's tensor names."""
    try:
        loaded = tf.saved_model.load(str(path))
    except (ValueError, TypeError, tf.errors.OpError):
        return _call_in_session(path, signature, inputs)
    results = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {key: value.numpy() for key, value in results.items()}


def _call_in_session(
    path: Path, signature: str, inputs: dict[str, object]
) -> dict[str, np.ndarray]:
    graph = tf.Graph()
    with v1.Session(graph=graph) as session:
        meta = v1.saved_model.loader.load(
            session, [v1.saved_model.tag_constants.SERVING], str(path)
        )
        definition = meta.signature_def[signature]
        feed = {definition.inputs[key].name: value for key, value in inputs.items()}
        fetches = {key: info.name for key, info in definition.outputs.items()}
        return {key: np.asarray(value) for key, value in session.run(fetches, feed).items()}


def build_zoo(root: Path, names: tuple[str, ...] | None = None) -> Path:
    """Every model of :data:`ZOO` (or those named) as ``root/<name>/1``; the counter is
    marked stateful in its ``config.toml``. Returns ``root``."""
    for name in names or tuple(ZOO):
        folder = root / name / "1"
        folder.parent.mkdir(parents=True, exist_ok=True)
        ZOO[name](folder)
    if (root / "counter").is_dir():
        (root / "counter" / "config.toml").write_text("stateful = true\n")
    return root
