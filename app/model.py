"""One version of one SavedModel, loaded, checked and warmed up: what a batcher calls.

:func:`load_model` reads ``<MODEL_DIR>/<name>/<version>/``, checks its ``serving_default``
signature (one input, one output; for the two models the service's own endpoints serve, the
dtypes and shapes those endpoints need) and runs the first calls, so that the first users do not
pay for graph set-up. Anything wrong raises :class:`ModelLoadError` naming the path.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from app.inputs import MNIST_SIZE

logger = logging.getLogger(__name__)

SIGNATURE = "serving_default"


class ModelLoadError(RuntimeError):
    """The model folder is missing, empty, corrupt or has the wrong signature."""


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of one signature input or output (None = any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_spec(cls, name: str, spec: tf.TensorSpec) -> TensorInfo:
        return cls(name, spec.dtype.name, tuple(spec.shape.as_list()))

    def as_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    @property
    def is_image(self) -> bool:
        """A batch of 28x28 float images, as the digits model takes: image files decode to it."""
        return self.dtype.startswith("float") and self.shape == (None, MNIST_SIZE, MNIST_SIZE)


@dataclass(frozen=True)
class Contract:
    """What the service's own endpoints need of a model's ``serving_default`` signature."""

    input_dtype: str
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]


# The two models the native endpoints serve; other names under MODEL_DIR are served too, through
# the TF Serving API only, with whatever single-input, single-output signature they have.
CONTRACTS = {
    "sentiment": Contract("string", (None,), (None,)),
    "digits": Contract("float32", (None, 28, 28), (None, 10)),
}


class LoadedModel:
    """One version of one SavedModel, ready to call on a batch.

    ``path`` is where it was loaded from; ``relative_path`` is the same below ``MODEL_DIR``, what
    the API shows.
    """

    def __init__(
        self, name: str, version: int, path: Path, device: str, relative_path: str = ""
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.relative_path = relative_path or f"{name}/{version}"
        self.device = device
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path} has no saved_model.pb")
        try:
            with tf.device(device):
                self._saved = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"cannot load the SavedModel in {path}: {exc}") from exc
        if SIGNATURE not in self._saved.signatures:
            found = ", ".join(self._saved.signatures) or "none"
            raise ModelLoadError(f"{path} has no {SIGNATURE!r} signature (found: {found})")
        self._fn = self._saved.signatures[SIGNATURE]
        _, input_specs = self._fn.structured_input_signature
        output_specs = self._fn.structured_outputs
        self.inputs = {k: TensorInfo.from_spec(k, v) for k, v in sorted(input_specs.items())}
        self.outputs = {k: TensorInfo.from_spec(k, v) for k, v in sorted(output_specs.items())}
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ModelLoadError(
                f"{path}: the {SIGNATURE!r} signature must have one input and one output, "
                f"has inputs {list(self.inputs)} and outputs {list(self.outputs)}"
            )
        self.input = next(iter(self.inputs.values()))
        self.output = next(iter(self.outputs.values()))
        self._input_dtype = tf.as_dtype(self.input.dtype)
        self._check_contract()

    def _check_contract(self) -> None:
        contract = CONTRACTS.get(self.name)
        if contract is None:
            return
        got = (self.input.dtype, self.input.shape, self.output.shape)
        want = (contract.input_dtype, contract.input_shape, contract.output_shape)
        if got != want:
            raise ModelLoadError(
                f"{self.path}: the {SIGNATURE!r} signature takes {self.input.dtype}"
                f"{list(self.input.shape)} and returns {list(self.output.shape)}; the "
                f"{self.name!r} endpoint needs {contract.input_dtype}{list(contract.input_shape)}"
                f" -> {list(contract.output_shape)}"
            )

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Blocking call of the signature on one batch; runs on the batcher's thread."""
        with tf.device(self.device):
            tensor = tf.convert_to_tensor(inputs, dtype=self._input_dtype)
            outputs: np.ndarray = self._fn(**{self.input.name: tensor})[self.output.name].numpy()
            return outputs

    def example_batch(self, size: int) -> np.ndarray:
        """A batch of blank instances of the right dtype and shape, for warm-up."""
        shape = (size, *(d or 1 for d in self.input.shape[1:]))
        if self.input.dtype == "string":
            return np.full(shape, "warm up", dtype=object)
        return np.zeros(shape, dtype=self._input_dtype.as_numpy_dtype)

    def warm_up(self, max_batch_size: int) -> None:
        """Run the first calls now, so the first users do not pay for graph set-up."""
        for size in sorted({1, max_batch_size}):
            outputs = self.predict(self.example_batch(size))
            if len(outputs) != size:
                raise ModelLoadError(
                    f"{self.path}: warm-up batch of {size} gave {len(outputs)} outputs"
                )


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
    name: str, version: int, path: Path, device: str, max_batch_size: int, relative_path: str = ""
) -> LoadedModel:
    """Load, check and warm up one version; ModelLoadError, naming the path, if it cannot serve."""
    model = LoadedModel(name, version, path, device, relative_path)
    try:
        model.warm_up(max_batch_size)
    except ModelLoadError:
        raise
    except Exception as exc:  # whatever TensorFlow raises on a graph that does not run
        raise ModelLoadError(f"{path}: the warm-up call failed: {exc}") from exc
    return model
