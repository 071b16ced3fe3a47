"""What a served model is to the protocols: its signatures, each with named, typed tensors.

A SavedModel's signatures (``SignatureDef``s) are read from its ``saved_model.pb``, whatever
loads the model afterwards (TF2's loader or a TF1 session), so that every protocol sees the
same names, dtypes, shapes, tensor names and method names TensorFlow Serving shows.

The dtype table (:data:`DTYPES`) is the one place that says how a TensorFlow dtype travels:
its NumPy dtype, the Open Inference Protocol's datatype and TF Serving's ``DT_`` name. A new
dtype is one row. Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
SERVE_TAG = "serve"


@dataclass(frozen=True)
class DType:
    """One dtype as each wire format names it."""

    name: str  # TensorFlow's: float32, string, ...
    numpy: Any  # np.dtype, or ml_dtypes' bfloat16; object for strings
    oip: str  # the Open Inference Protocol's datatype
    enum: int  # TensorFlow's DataType enum value (types.proto)
    tf_enum_name: str  # its name there, as TF Serving's JSON metadata writes it

    @property
    def kind(self) -> str:
        """``b`` bool, ``i`` signed, ``u`` unsigned, ``f`` float, ``S`` string."""
        if self.name == "string":
            return "S"
        if self.name == "bfloat16":
            return "f"
        return str(np.dtype(self.numpy).kind)


def _bfloat16() -> Any:
    import ml_dtypes  # TensorFlow's own dependency

    return ml_dtypes.bfloat16


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("bool", np.bool_, "BOOL", 10, "DT_BOOL"),
        DType("int8", np.int8, "INT8", 6, "DT_INT8"),
        DType("int16", np.int16, "INT16", 5, "DT_INT16"),
        DType("int32", np.int32, "INT32", 3, "DT_INT32"),
        DType("int64", np.int64, "INT64", 9, "DT_INT64"),
        DType("uint8", np.uint8, "UINT8", 4, "DT_UINT8"),
        DType("uint16", np.uint16, "UINT16", 17, "DT_UINT16"),
        DType("uint32", np.uint32, "UINT32", 22, "DT_UINT32"),
        DType("uint64", np.uint64, "UINT64", 23, "DT_UINT64"),
        DType("float16", np.float16, "FP16", 19, "DT_HALF"),
        DType("bfloat16", _bfloat16(), "BF16", 14, "DT_BFLOAT16"),
        DType("float32", np.float32, "FP32", 1, "DT_FLOAT"),
        DType("float64", np.float64, "FP64", 2, "DT_DOUBLE"),
        DType("string", np.object_, "BYTES", 7, "DT_STRING"),
    )
}
_BY_ENUM = {d.enum: d for d in DTYPES.values()}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature. ``shape`` None: unknown rank; a None dimension:
    any size. ``key`` is what requests name it; ``tensor_name`` is the graph's name."""

    key: str
    dtype: str
    shape: tuple[int | None, ...] | None
    tensor_name: str = ""

    @property
    def dtype_info(self) -> DType:
        return DTYPES[self.dtype]

    @property
    def batched(self) -> bool:
        """Whether the first dimension is the batch: known rank >= 1, first size free."""
        return self.shape is not None and len(self.shape) >= 1 and self.shape[0] is None

    @property
    def name(self) -> str:  # the key: what the protocols call a tensor's name
        return self.key

    @property
    def is_image(self) -> bool:
        """A batch of 28x28 float images, as the digits model takes: image files decode to it."""
        return self.dtype.startswith("float") and self.shape == (None, 28, 28)

    def dims(self) -> list[int]:
        """The shape with -1 for free sizes ([] for unknown rank, as TF Serving's JSON)."""
        return [-1 if d is None else d for d in (self.shape or ())]

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[unknown rank]"
        return f"{self.dtype}[{', '.join('-1' if d is None else str(d) for d in self.shape)}]"

    def as_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """One signature: its method and named inputs and outputs (sorted by key)."""

    name: str
    method: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    batched: bool = field(init=False)

    def __post_init__(self) -> None:
        # Batched: every input and output has a free first dimension, so that requests can be
        # concatenated along it and the outputs split back; else each request runs alone.
        batched = bool(self.inputs) and all(
            spec.batched for spec in (*self.inputs.values(), *self.outputs.values())
        )
        object.__setattr__(self, "batched", batched)

    @property
    def input(self) -> TensorSpec:
        """The only input (the native endpoints' models have one)."""
        return next(iter(self.inputs.values()))

    @property
    def output(self) -> TensorSpec:
        return next(iter(self.outputs.values()))


class SignatureError(ValueError):
    """A saved_model.pb that cannot be read, or that has nothing this service can serve."""


@dataclass(frozen=True)
class SavedModelInfo:
    """What ``saved_model.pb`` says: the tags of the meta graph to serve and its signatures,
    and the signatures left out (an unsupported dtype), with why."""

    tags: tuple[str, ...]
    signatures: dict[str, Signature]
    skipped: dict[str, str]
    tf1: bool  # written by TF1's SavedModelBuilder (no object graph): a session can serve it
    parses_examples: bool = False  # its graph parses serialized tf.Examples


def read_saved_model(path: Path) -> SavedModelInfo:
    """Parse ``path/saved_model.pb``: the ``serve`` meta graph (or the only one) and its
    signatures; SignatureError saying why when there is nothing to serve."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:  # DecodeError and the like: not a SavedModel
        raise SignatureError(f"{path}/saved_model.pb is not a SavedModel: {exc}") from None
    graphs = list(saved.meta_graphs)
    if not graphs:
        raise SignatureError(f"{path}/saved_model.pb holds no meta graph")
    chosen = next((g for g in graphs if SERVE_TAG in g.meta_info_def.tags), None)
    if chosen is None:
        if len(graphs) > 1:
            tags = "; ".join(",".join(g.meta_info_def.tags) for g in graphs)
            raise SignatureError(
                f"{path}: no meta graph is tagged {SERVE_TAG!r} (tag sets: {tags})"
            )
        chosen = graphs[0]
    signatures: dict[str, Signature] = {}
    skipped: dict[str, str] = {}
    for name in sorted(chosen.signature_def):
        if name.startswith("__"):  # __saved_model_init_op and the like: not callable
            continue
        definition = chosen.signature_def[name]
        try:
            signatures[name] = Signature(
                name,
                definition.method_name or PREDICT,
                _specs(definition.inputs),
                _specs(definition.outputs),
            )
        except SignatureError as exc:
            skipped[name] = str(exc)
    if not signatures:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise SignatureError(
            f"{path} has no signature this service can serve"
            + (f" ({why})" if why else " (export it with signatures, e.g. serving_default)")
        )
    return SavedModelInfo(
        tuple(chosen.meta_info_def.tags),
        signatures,
        skipped,
        tf1=not chosen.object_graph_def.nodes,
        parses_examples=_parses_examples(chosen.graph_def),
    )


EXAMPLE_PARSERS = {"ParseExample", "ParseExampleV2", "ParseSingleExample"}


def _parses_examples(graph: Any) -> bool:
    """Whether the graph (or a function in it) has an op that parses tf.Examples."""
    if any(node.op in EXAMPLE_PARSERS for node in graph.node):
        return True
    return any(
        node.op in EXAMPLE_PARSERS
        for function in graph.library.function
        for node in function.node_def
    )


def _specs(tensors: Any) -> dict[str, TensorSpec]:
    specs = {}
    for key in sorted(tensors):
        info = tensors[key]
        dtype = _BY_ENUM.get(info.dtype) or _BY_ENUM.get(info.dtype - 100)  # _ref types
        if dtype is None:
            raise SignatureError(f"{key!r} has dtype enum {info.dtype}, which is not served")
        if info.WhichOneof("encoding") not in (None, "name"):
            raise SignatureError(f"{key!r} is a sparse or composite tensor, which is not served")
        shape_proto = info.tensor_shape
        shape = (
            None
            if shape_proto.unknown_rank
            else tuple(None if d.size < 0 else int(d.size) for d in shape_proto.dim)
        )
        specs[key] = TensorSpec(key, dtype.name, shape, info.name)
    return specs


def example_inputs(signature: Signature, size: int) -> dict[str, np.ndarray]:
    """Inputs of the signature's dtypes and shapes (free sizes 1, the batch ``size``): zeros,
    or short strings, for warm-up."""
    inputs = {}
    for key, spec in signature.inputs.items():
        if spec.shape is None:
            shape: tuple[int, ...] = (size,)
        else:
            shape = tuple(
                (size if (i == 0 and spec.batched) else 1) if d is None else d
                for i, d in enumerate(spec.shape)
            )
        if spec.dtype == "string":
            inputs[key] = np.full(shape, b"warm up", dtype=object)
        else:
            inputs[key] = np.zeros(shape, dtype=spec.dtype_info.numpy)
    return inputs
