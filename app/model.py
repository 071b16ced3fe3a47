"""One version of one SavedModel, loaded and warmed up: what the batchers call.

:func:`load_model` reads ``<MODEL_DIR>/<name>/<version>/``: its signatures from
``saved_model.pb`` (:mod:`app.signatures`), then the model itself with TF2's loader
(``tf.saved_model.load``); where that loader cannot load it (TF1 graphs with reference
variables, say), into a graph and a session of its own with ``tf.compat.v1``'s SavedModel
loader, as TensorFlow Serving does. Either way :meth:`LoadedModel.call` runs one signature on
named NumPy arrays and returns named NumPy arrays, on the configured device and threads.

Warm-up calls each signature with zeros or short strings of its dtypes and shapes, so that
the first users do not pay for graph set-up; a signature that rejects such inputs (a
``tf.Example`` parser, say) is skipped with one log line. Anything else wrong raises
:class:`ModelLoadError` naming the path; ``permanent`` says whether trying the same folder
again could help.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from app.batching import ModelInputError
from app.model_config import ModelConfig
from app.signatures import (
    DEFAULT_SIGNATURE,
    SavedModelInfo,
    Signature,
    SignatureError,
    TensorSpec,
    example_inputs,
    read_saved_model,
)

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


class ModelLoadError(RuntimeError):
    """The version cannot serve. ``permanent``: it will not until its folder changes (not a
    SavedModel, a signature refused, a graph that does not run); else a retry may help."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Contract:
    """What the service's own endpoints need of a model's ``serving_default`` signature."""

    input_dtype: str
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]


# The two models the native endpoints serve, by name: a version of them without this
# signature does not load (so that a rollout cannot break their endpoints). Every other model
# under MODEL_DIR is served through TF Serving's API and the Open Inference Protocol.
CONTRACTS = {
    "sentiment": Contract("string", (None,), (None,)),
    "digits": Contract("float32", (None, 28, 28), (None, 10)),
}


@dataclass(frozen=True)
class Runtime:
    """Where and how models run: TensorFlow's device and thread pools."""

    device: str = "/CPU:0"
    intra_op_threads: int = 1
    inter_op_threads: int = 1


class LoadedModel:
    """One version of one SavedModel, ready to call.

    ``path`` is where it was loaded from; ``relative_path`` is the same below ``MODEL_DIR``,
    what the API shows. ``backend`` is ``tf2`` or ``tf1-session``.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        runtime: Runtime | str = "/CPU:0",
        config: ModelConfig | None = None,
        relative_path: str = "",
    ) -> None:
        if isinstance(runtime, str):
            runtime = Runtime(runtime)
        config = config or ModelConfig()
        self.name = name
        self.version = version
        self.path = path
        self.relative_path = relative_path or f"{name}/{version}"
        self.device = runtime.device
        self.config = config
        if not (path / "saved_model.pb").is_file():
            hint = ""
            if (path / "saved_model.pbtxt").is_file():
                hint = " (saved_model.pbtxt, the text format, is not served: save it binary)"
            raise ModelLoadError(f"{path} has no saved_model.pb{hint}")
        try:
            self.info: SavedModelInfo = read_saved_model(path)
        except SignatureError as exc:
            raise ModelLoadError(str(exc)) from None
        for signature, why in self.info.skipped.items():
            logger.warning("%s: signature %r is not served: %s", path, signature, why)
        self.signatures: dict[str, Signature] = self.info.signatures
        # One call at a time across signatures, for a model marked stateful.
        self._lock: threading.Lock | None = threading.Lock() if config.stateful else None
        self._call: Callable[[Signature, Arrays], Arrays]
        self._close: Callable[[], None] = lambda: None
        try:
            with tf.device(self.device):
                self._call = self._load_tf2(path)
            self.backend = "tf2"
        except Exception as tf2_error:
            # What TF2's loader refuses (reference variables, some TF1 graphs): a session.
            try:
                self._call = self._load_session(path, runtime)
            except Exception as exc:
                raise ModelLoadError(
                    f"cannot load the SavedModel in {path}: {tf2_error}; as a TF1 graph in a "
                    f"session: {exc}"
                ) from exc
            self.backend = "tf1-session"
            logger.info(
                "%s: TF2's loader refused it (%s); serving it from a TF1 session",
                path,
                _first_line(tf2_error),
            )
        self._check_contract()

    # ---- the two backends ------------------------------------------------------------------

    def _load_tf2(self, path: Path) -> Callable[[Signature, Arrays], Arrays]:
        loaded = tf.saved_model.load(str(path), tags=list(self.info.tags) or None)
        functions = {name: loaded.signatures[name] for name in self.signatures}
        self._saved = loaded  # keeps the variables the functions read alive

        def call(signature: Signature, inputs: Arrays) -> Arrays:
            fn = functions[signature.name]
            with tf.device(self.device):
                tensors = {key: tf.convert_to_tensor(value) for key, value in inputs.items()}
                results = fn(**tensors)
            return {key: results[key].numpy() for key in signature.outputs}

        return call

    def _load_session(self, path: Path, runtime: Runtime) -> Callable[[Signature, Arrays], Arrays]:
        graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=runtime.intra_op_threads,
            inter_op_parallelism_threads=runtime.inter_op_threads,
            allow_soft_placement=True,
        )
        if "GPU" not in runtime.device:
            config.device_count["GPU"] = 0
        session = tf.compat.v1.Session(graph=graph, config=config)
        try:
            with graph.as_default():
                tf.compat.v1.saved_model.loader.load(session, list(self.info.tags), str(path))
        except Exception:
            session.close()
            raise
        self._close = session.close

        def call(signature: Signature, inputs: Arrays) -> Arrays:
            fetches = {key: spec.tensor_name for key, spec in signature.outputs.items()}
            feed = {signature.inputs[key].tensor_name: value for key, value in inputs.items()}
            results: Arrays = session.run(fetches, feed_dict=feed)
            return {key: np.asarray(value) for key, value in results.items()}

        return call

    def _check_contract(self) -> None:
        contract = CONTRACTS.get(self.name)
        if contract is None:
            return
        signature = self.signatures.get(DEFAULT_SIGNATURE)
        if signature is None or len(signature.inputs) != 1 or len(signature.outputs) != 1:
            raise ModelLoadError(
                f"{self.path}: the {self.name!r} endpoint needs a {DEFAULT_SIGNATURE!r} "
                "signature with one input and one output"
            )
        got = (signature.input.dtype, signature.input.shape, signature.output.shape)
        want = (contract.input_dtype, contract.input_shape, contract.output_shape)
        if got != want:
            raise ModelLoadError(
                f"{self.path}: the {DEFAULT_SIGNATURE!r} signature takes "
                f"{signature.input.describe()} and returns {signature.output.describe()}; the "
                f"{self.name!r} endpoint needs {contract.input_dtype}"
                f"{list(contract.input_shape)} -> {list(contract.output_shape)}"
            )

    # ---- what the service uses -------------------------------------------------------------

    @property
    def default_signature(self) -> Signature | None:
        """``serving_default``, or the only signature there is."""
        found = self.signatures.get(DEFAULT_SIGNATURE)
        if found is None and len(self.signatures) == 1:
            found = next(iter(self.signatures.values()))
        return found

    @property
    def inputs(self) -> dict[str, TensorSpec]:
        """The default signature's inputs (empty if there is none)."""
        signature = self.default_signature
        return signature.inputs if signature is not None else {}

    @property
    def outputs(self) -> dict[str, TensorSpec]:
        signature = self.default_signature
        return signature.outputs if signature is not None else {}

    def call(self, signature: Signature, inputs: Arrays) -> Arrays:
        """Blocking call of one signature; runs on a batcher's thread. ModelInputError when
        TensorFlow rejects the inputs (a 400 for the request that sent them)."""
        lock = self._lock if self._lock is not None else contextlib.nullcontext()
        with lock:
            try:
                return self._call(signature, inputs)
            except tf.errors.InvalidArgumentError as exc:
                raise ModelInputError(_tf_message(exc)) from exc
            except (ValueError, TypeError) as exc:  # a feed or a tf.function refusing shapes
                raise ModelInputError(_first_line(exc)) from exc

    def caller(self, signature: Signature) -> Callable[[Arrays], Arrays]:
        """``inputs -> outputs`` for one signature: what its batcher calls."""

        def predict(inputs: Arrays) -> Arrays:
            return self.call(signature, inputs)

        return predict

    def warm_up(self) -> None:
        """First calls of every signature, so the first users do not pay for graph set-up."""
        if self.config.stateful:
            return  # a warm-up call would change the state users see
        for signature in self.signatures.values():
            self._warm_up(signature)

    def _warm_up(self, signature: Signature) -> None:
        batched = signature.batched and self.config.batching
        if not batched:
            sizes = [1]
        elif self.config.allowed_batch_sizes:
            sizes = list(self.config.allowed_batch_sizes)
        else:
            sizes = sorted({1, self.config.max_batch_size})
        for size in sizes:
            try:
                outputs = self.call(signature, example_inputs(signature, size))
            except ModelInputError as exc:
                logger.info(
                    "%s: no warm-up for signature %r: it rejects zeros and short strings (%s)",
                    self.path,
                    signature.name,
                    exc,
                )
                return
            if batched:
                wrong = {k: len(v) for k, v in outputs.items() if v.ndim == 0 or len(v) != size}
                if wrong:
                    raise ModelLoadError(
                        f"{self.path}: signature {signature.name!r} gave outputs of "
                        f"{wrong} instances for a batch of {size}; its first dimension must be "
                        "the batch's (or mark the model `batching = false`)"
                    )

    def close(self) -> None:
        """Release what the model holds (a TF1 session); it is not called again."""
        self._close()


def _tf_message(exc: tf.errors.OpError) -> str:
    """What TensorFlow says went wrong, without the graph's stack and node names."""
    lines = [line.strip() for line in str(exc.message).splitlines()]
    kept = [
        line
        for line in lines
        if line
        and not line.startswith(("[[", "File ", "Graph execution error", "Detected at node"))
    ]
    text = kept[-1] if kept else _first_line(exc)
    return re.sub(r"\s*\[\[\{\{node .*$|\s*\[Op:[^]]*\]$", "", text)[:500]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def configure_tensorflow(device: str, intra_op_threads: int, inter_op_threads: int) -> str:
    """Apply thread and GPU settings (before any TF op runs) and pick the device to use."""
    _set_threads("intra", intra_op_threads)
    _set_threads("inter", inter_op_threads)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialised in this process, where growth was set before.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if device == "gpu" and not gpus:
        raise ModelLoadError(
            "DEVICE=gpu but TensorFlow sees no GPU (is the CUDA build installed, "
            "`pip install .[gpu]`, and a GPU visible to this process?)"
        )
    if device == "cpu" or not gpus:
        return "/CPU:0"
    return "/GPU:0"


def _set_threads(kind: str, threads: int) -> None:
    """Set TF's intra- or inter-op pool size; 0 leaves TF's choice.

    TF fixes the pools when it first runs an op. Where something else in this process used TF
    before the app started (tests, a notebook), the pools stay as they are, with a warning.
    """
    get = getattr(tf.config.threading, f"get_{kind}_op_parallelism_threads")
    set_ = getattr(tf.config.threading, f"set_{kind}_op_parallelism_threads")
    if not threads or get() == threads:
        return
    try:
        set_(threads)
    except RuntimeError:
        logger.warning(
            "TensorFlow is already initialised in this process: keeping its %s-op threads (%d)",
            kind,
            get(),
        )


def load_model(
    name: str,
    version: int,
    path: Path,
    runtime: Runtime,
    config: ModelConfig,
    relative_path: str = "",
) -> LoadedModel:
    """Load, check and warm up one version; ModelLoadError, naming the path, if it cannot serve."""
    model = LoadedModel(name, version, path, runtime, config, relative_path)
    try:
        model.warm_up()
    except ModelLoadError:
        model.close()
        raise
    except Exception as exc:  # whatever TensorFlow raises on a graph that does not run
        model.close()
        raise ModelLoadError(f"{path}: the warm-up call failed: {exc}") from exc
    return model
