"""Per-model serving settings: ``<MODEL_DIR>/<name>/config.toml``, over the environment's.

One small TOML file in a model's folder, beside its version folders, for what TF Serving's
batching parameters and Triton's ``dynamic_batching`` set per model. Every key is optional;
a key left out takes the environment's setting (``MAX_BATCH_SIZE`` and so on):

.. code-block:: toml

    max_batch_size = 32              # most instances in one model call
    max_batch_delay_ms = 2.0         # how long an idle model waits for a fuller batch
    allowed_batch_sizes = [8, 32]    # pad each batch up to the next (bounds retracing);
                                     # the last must equal max_batch_size
    batching = true                  # false: every request is its own model call
    max_concurrent_batches = 1       # model calls at once, per signature
    max_queue_size = 1024            # most instances waiting, per signature
    stateful = false                 # true: one call at a time across signatures, unbatched

The file is read when a version loads, so a change applies to the next version loaded. A file
that cannot be read or holds an unknown key or a bad value fails the load, naming the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.config import Settings

CONFIG_FILE = "config.toml"


class ModelConfigError(ValueError):
    """The model's config file is unreadable or wrong; the message names it."""


@dataclass(frozen=True)
class ModelConfig:
    """The batching settings one model version runs with."""

    max_batch_size: int = 64
    max_batch_delay_ms: float = 0.0
    max_concurrent_batches: int = 1
    max_queue_size: int = 1024
    allowed_batch_sizes: tuple[int, ...] = ()
    batching: bool = True
    stateful: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelConfig:
        return cls(
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_concurrent_batches=settings.max_concurrent_batches,
            max_queue_size=settings.max_queue_size,
        )


_INTS = {"max_batch_size": 1, "max_concurrent_batches": 1, "max_queue_size": 1}


def read_model_config(model_root: Path, settings: Settings) -> ModelConfig:
    """The environment's settings, overridden by ``model_root/config.toml`` if there is one."""
    config = ModelConfig.from_settings(settings)
    path = model_root / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return config
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return _apply(config, data)
    except ValueError as exc:
        raise ModelConfigError(f"{path}: {exc}") from None


def _apply(config: ModelConfig, data: dict[str, Any]) -> ModelConfig:
    known = set(ModelConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < _INTS[key]:
                raise ValueError(f"{key} must be a whole number >= {_INTS[key]}, not {value!r}")
        elif key == "max_batch_delay_ms":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, not {value!r}")
            value = float(value)
        elif key in ("batching", "stateful"):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, not {value!r}")
        elif key == "allowed_batch_sizes":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
                or sorted(set(value)) != value
            ):
                raise ValueError(
                    f"{key} must be a list of increasing whole numbers > 0, not {value!r}"
                )
            value = tuple(value)
        values[key] = value
    config = replace(config, **values)
    if config.allowed_batch_sizes:
        if "max_batch_size" not in values:
            config = replace(config, max_batch_size=config.allowed_batch_sizes[-1])
        elif config.allowed_batch_sizes[-1] != config.max_batch_size:
            raise ValueError(
                f"the last of allowed_batch_sizes ({config.allowed_batch_sizes[-1]}) must equal "
                f"max_batch_size ({config.max_batch_size})"
            )
    if config.stateful:
        config = replace(config, batching=False, max_concurrent_batches=1)
    return config
