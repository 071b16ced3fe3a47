"""Every setting of the service, read from environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.repository import VersionPolicy


def _policy(value: object) -> object:
    return VersionPolicy.parse(value) if isinstance(value, str) else value


Policy = Annotated[VersionPolicy, NoDecode, BeforeValidator(_policy), PlainSerializer(str)]


class Settings(BaseSettings):
    """Names are the environment variables, upper-cased: ``MAX_BATCH_SIZE=32`` and so on."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    # Server
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="uvicorn worker processes, each with its batchers; auto: app/workers.py"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object a line, for a log aggregator"
    )
    access_log: Literal["off", "errors", "all"] = Field(
        "errors", description="a line per request: none, those answered 4xx or 5xx, or every one"
    )

    # Models
    model_dir: Path = Path("models")
    device: Literal["auto", "cpu", "gpu"] = "auto"
    model_poll_s: float = Field(2.0, ge=0, description="rescan MODEL_DIR this often (0: never)")
    model_version_policy: Policy = Field(
        default_factory=VersionPolicy,
        description="latest, latest:N, all or specific:V[,V...], as TF Serving's",
    )
    model_load_retries: int = Field(
        3, ge=0, description="retries of a load that failed for a reason that may pass"
    )
    required_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated models that must load: start-up fails without them, and "
        "the service is ready only while each has an available version",
    )
    exit_on_load_error: bool = Field(
        True,
        description="a version that fails to load at start-up stops it (false: it is END, "
        "the rest is served)",
    )
    # One thread each: the event loop needs a core of its own, and TensorFlow's pools of one
    # thread per core only add hand-offs and spinning on small batches (make bench).
    tf_intra_op_threads: int = Field(1, ge=0, description="0 lets TensorFlow choose")
    tf_inter_op_threads: int = Field(1, ge=0, description="0 lets TensorFlow choose")

    # Batching
    max_batch_size: int = Field(64, ge=1, description="instances per model call")
    max_batch_delay_ms: float = Field(0.0, ge=0, description="wait for a fuller batch (0: never)")
    # One: on 2 cores a second concurrent call shared TensorFlow's one inter-op thread and the
    # GIL with the first and cost more than it gave (make bench); raise it, with
    # TF_INTER_OP_THREADS, on a many-core host.
    max_concurrent_batches: int = Field(1, ge=1, description="model calls at once, per model")
    max_queue_size: int = Field(1024, ge=1, description="instances waiting per model")
    request_timeout_s: float = Field(10.0, gt=0)

    # Request limits
    max_instances: int = Field(256, ge=1, description="reviews or images per request")
    max_review_chars: int = Field(100_000, ge=1)
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_side: int = Field(4096, ge=28, description="largest accepted width or height")

    # Security
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="comma-separated; empty: no authentication"
    )
    metrics_public: bool = Field(True, description="false: /metrics needs an API key too")

    # Process tuning, applied by `python -m app` only (docs/performance.md)
    gc_threshold: int = Field(
        10_000, ge=0, description="first-generation GC threshold (0: Python's default, no freeze)"
    )
    switch_interval_ms: float = Field(
        0.5, ge=0, description="GIL switch interval (0: Python's default)"
    )

    # Observability
    opentelemetry: bool = Field(
        False,
        description="trace requests, their queue wait and model calls (app/tracing.py); "
        "exported as the OTEL_* variables say",
    )

    @field_validator("required_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
