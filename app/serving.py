"""The models being served, looked up by name, version or label: what every protocol talks to.

Every protocol's routes end in :meth:`ModelServer.predict`: it resolves the model, decodes the
request against that version's signature (the protocol's codec), queues the batch on that
version's batcher under the request's deadline, and returns the outputs with the version that
produced them. The lifecycle (:mod:`app.lifecycle`) adds and retires versions while it serves.

Guarantees a swap relies on:

* A request holds a **lease** on the version it resolved, from decoding to its answer; a
  version being unloaded takes no new requests, and its batcher closes only once every lease
  is returned (:meth:`Servable.drain`). So a request that found a version finishes on it.
* Unversioned requests get the **highest available** version; a version becomes available only
  once it is loaded and warmed up, and a label points only at an available version.
* Everything here runs on the event loop: the tables change only between two awaits.

Each version has a batcher per signature: requests naming the same version and signature are
batched together (when the signature has a batch dimension and the model's config allows it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

import numpy as np

from app.access import AccessRecord
from app.batching import MicroBatcher, Timing
from app.config import Settings
from app.errors import NotFound, Unavailable
from app.metrics import ModelMetrics
from app.model import LoadedModel, Runtime
from app.offload import DEADLINE
from app.repository import Fingerprint
from app.signatures import DEFAULT_SIGNATURE, Signature
from app.tracing import Tracing

logger = logging.getLogger(__name__)


class ModelState(StrEnum):
    """A version's state, as TensorFlow Serving's model status API names them."""

    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass
class VersionStatus:
    """What the status APIs show of one version; ``error`` is why a load failed (END)."""

    version: int
    state: ModelState
    error: str = ""
    fingerprint: Fingerprint | None = None  # of the folder it was loaded, or failed, from


class Servable:
    """One available version: the model, a batcher per signature, and the count of requests
    using it."""

    def __init__(
        self,
        model: LoadedModel,
        batchers: dict[str, MicroBatcher],
        metrics: list[ModelMetrics] | None = None,
    ) -> None:
        self.model = model
        self.batchers = batchers
        self.metrics = metrics or []
        self.leases = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def batcher(self) -> MicroBatcher:
        """The default signature's batcher."""
        signature = self.model.default_signature
        name = signature.name if signature is not None else next(iter(self.batchers))
        return self.batchers[name]

    def acquire(self) -> None:
        self.leases += 1
        self._idle.clear()

    def release(self) -> None:
        self.leases -= 1
        if not self.leases:
            self._idle.set()

    async def close(self) -> None:
        """Close every batcher (answering what is queued)."""
        await asyncio.gather(*(batcher.close() for batcher in self.batchers.values()))

    async def drain(self) -> None:
        """Wait until no request holds this version, then close its batchers and the model."""
        await self._idle.wait()
        await self.close()
        for metrics in self.metrics:
            metrics.close()
        self.model.close()


Arrays = dict[str, np.ndarray]


class HasInputs(Protocol):
    """A decoded request: which signature, its inputs, and whatever its protocol keeps."""

    @property
    def signature(self) -> str: ...

    @property
    def inputs(self) -> Arrays: ...


R = TypeVar("R", bound=HasInputs)


@dataclass(frozen=True)
class Batch:
    """The simplest decoded request: the inputs of one signature."""

    inputs: Arrays
    signature: str = DEFAULT_SIGNATURE


@dataclass(frozen=True)
class Prediction(Generic[R]):
    """The model's outputs for a request, with the version that produced them."""

    model: LoadedModel
    request: R
    outputs: Arrays


def signature_of(model: LoadedModel, name: str | None) -> Signature:
    """The signature a request names (None or "": the default); NotFound saying which exist."""
    if not name:
        found = model.default_signature
        if found is not None:
            return found
        raise NotFound(
            f"model {model.name!r} version {model.version} has no {DEFAULT_SIGNATURE!r} "
            f"signature; name one of: {', '.join(sorted(model.signatures))}"
        )
    found = model.signatures.get(name)
    if found is None:
        raise NotFound(
            f"model {model.name!r} version {model.version} has no signature {name!r} "
            f"(signatures: {', '.join(sorted(model.signatures))})"
        )
    return found


MAX_VERSION_DIGITS = 18  # always fits an int64, as TensorFlow Serving's versions do


def version_number(text: str) -> int:
    """A version as a URL gives it: ASCII digits that fit an int64, else NotFound."""
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_VERSION_DIGITS):
        raise NotFound(f"version {text!r} is not a version number")
    return int(text)


@dataclass(frozen=True)
class ModelRef:
    """A model as a request names it: by name alone, or with a version or a label."""

    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"model {self.name!r} version {self.version}"
        if self.label is not None:
            return f"model {self.name!r} label {self.label!r}"
        return f"model {self.name!r}"


@dataclass
class ModelEntry:
    """One model name: every version the lifecycle knows, the available ones, its labels."""

    name: str
    versions: dict[int, VersionStatus] = field(default_factory=dict)
    servables: dict[int, Servable] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    latest: Servable | None = None  # what unversioned requests get (see _refresh_latest)

    @property
    def state(self) -> str:
        """The model's state for readiness: AVAILABLE if any version is, else the furthest."""
        states = {status.state for status in self.versions.values()}
        for state in (ModelState.AVAILABLE, ModelState.LOADING, ModelState.UNLOADING):
            if state in states:
                return state.value
        return ModelState.END.value if states else "UNAVAILABLE"


class ModelServer:
    """Looks versions up by name, number or label, and runs their batchers."""

    def __init__(self, settings: Settings, device: str, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.device = device
        self.tracing = tracing  # None: OPENTELEMETRY is off
        self.runtime = Runtime(device, settings.tf_intra_op_threads, settings.tf_inter_op_threads)
        self.models: dict[str, ModelEntry] = {}
        self.accepting = False  # between start-up and shutdown

    # ---- what the routes use ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Taking requests, and every required model (``REQUIRED_MODELS``) has an available
        version; without required models, at least one model has."""
        if not self.accepting:
            return False
        required = self.settings.required_models
        if required:
            return all(
                name in self.models and self.models[name].latest is not None for name in required
            )
        return any(entry.latest is not None for entry in self.models.values())

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None or not entry.versions:
            served = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"model {name!r} is not served (served: {served})")
        return entry

    def resolve(self, ref: ModelRef) -> Servable:
        """The available version a request names; NotFound or Unavailable saying why not."""
        entry = self.entry(ref.name)
        if ref.label is not None:
            version = entry.labels.get(ref.label)
            if version is None:
                known = ", ".join(sorted(entry.labels)) or "none"
                raise NotFound(f"model {ref.name!r} has no label {ref.label!r} (labels: {known})")
            return entry.servables[version]
        if ref.version is None:
            if entry.latest is not None:
                return entry.latest
            if entry.state == ModelState.LOADING:
                raise Unavailable(f"model {ref.name!r} is still loading")
            raise NotFound(f"model {ref.name!r} has no available version ({entry.state})")
        servable = entry.servables.get(ref.version)
        if servable is not None:
            return servable
        status = entry.versions.get(ref.version)
        if status is not None and status.state is ModelState.LOADING:
            raise Unavailable(f"{ref} is still loading")
        available = ", ".join(str(v) for v in sorted(entry.servables)) or "none"
        state = f" ({status.state.value})" if status is not None else ""
        raise NotFound(f"{ref} is not available{state}; available versions: {available}")

    async def predict(
        self,
        ref: ModelRef,
        decode: Callable[[LoadedModel], Awaitable[R]],
        record: AccessRecord | None = None,
    ) -> Prediction[R]:
        """Resolve, decode for that version, batch, answer: the one path of every protocol.

        ``decode`` is the protocol's codec turning the request into inputs of one of the
        version's signatures (BatchError subclasses and ServiceErrors propagate). The request's deadline,
        ``REQUEST_TIMEOUT_S`` from now, covers decoding off the event loop, queueing and the
        model call.

        ``record`` (the request's access record) gets what is known as it becomes known, a
        failed request included: the version, the signature, the decoding time, the batcher's
        timings, and when the outputs came back (the middleware times the encoding from
        there). With tracing, decoding is a span, and so is the wait in the queue
        (:meth:`app.tracing.Tracing.queued`).
        """
        servable = self.resolve(ref)
        model = servable.model
        if record is not None:
            record.version = model.version
        tracing = self.tracing
        servable.acquire()
        try:
            deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_s
            token = DEADLINE.set(deadline)
            started = time.perf_counter()
            try:
                if tracing is None:
                    request = await decode(model)
                else:
                    with tracing.span("decode"):
                        request = await decode(model)
            finally:
                DEADLINE.reset(token)
                if record is not None:
                    record.decode_s = time.perf_counter() - started
            batcher = servable.batchers[request.signature]
            timing = Timing(tracing.context() if tracing is not None else None)
            if record is not None:
                record.signature = request.signature
                record.timing = timing
            if tracing is None:
                outputs = await batcher.predict(request.inputs, deadline, timing)
            else:
                try:
                    outputs = await batcher.predict(request.inputs, deadline, timing)
                except BaseException as exc:
                    tracing.queued(timing, exc)
                    raise
                tracing.queued(timing, None)
        finally:
            servable.release()
        if record is not None:
            record.answered_at = time.perf_counter()  # encoding starts
        return Prediction(model, request, outputs)

    def __iter__(self) -> Iterator[Servable]:
        """Every available version of every model."""
        for entry in self.models.values():
            yield from entry.servables.values()

    # ---- what the lifecycle uses -------------------------------------------------------------

    def servable_for(self, model: LoadedModel) -> Servable:
        """Started batchers, one per signature, around a freshly loaded version, not yet
        published. The model's own config (``config.toml``) sets how each batches."""
        config = model.config
        batchers: dict[str, MicroBatcher] = {}
        observers = []
        for signature in model.signatures.values():
            batched = signature.batched and config.batching
            name = f"{model.name}:{model.version}"
            if signature is not model.default_signature:
                name += f":{signature.name}"
            metrics = ModelMetrics(model.name, model.version, signature.name)
            tracer = (
                self.tracing.call_spans(model.name, model.version, signature.name)
                if self.tracing is not None
                else None
            )
            batcher = MicroBatcher(
                name,
                model.caller(signature),
                max_batch_size=config.max_batch_size,
                max_batch_delay_s=config.max_batch_delay_ms / 1000,
                max_concurrent_batches=config.max_concurrent_batches,
                max_queue_size=config.max_queue_size,
                timeout_s=self.settings.request_timeout_s,
                batched=batched,
                allowed_batch_sizes=config.allowed_batch_sizes if batched else (),
                observer=metrics,
                tracer=tracer,
            )
            batcher.start()
            batchers[signature.name] = batcher
            observers.append(metrics)
        return Servable(model, batchers, observers)

    def set_status(self, name: str, status: VersionStatus) -> None:
        self.models.setdefault(name, ModelEntry(name)).versions[status.version] = status

    def publish(self, servable: Servable, fingerprint: Fingerprint | None) -> None:
        """Make a loaded, warmed-up version available (and the default if it is the highest)."""
        model = servable.model
        entry = self.models.setdefault(model.name, ModelEntry(model.name))
        entry.servables[model.version] = servable
        entry.versions[model.version] = VersionStatus(
            model.version, ModelState.AVAILABLE, fingerprint=fingerprint
        )
        self._refresh_latest(entry)

    def withdraw(self, name: str, version: int) -> Servable | None:
        """Take a version out of the lookups (UNLOADING); the caller drains and closes it."""
        entry = self.models.get(name)
        if entry is None:
            return None
        servable = entry.servables.pop(version, None)
        status = entry.versions.get(version)
        if status is not None:
            status.state = ModelState.UNLOADING
        entry.labels = {label: v for label, v in entry.labels.items() if v != version}
        self._refresh_latest(entry)
        return servable

    def _refresh_latest(self, entry: ModelEntry) -> None:
        """Unversioned requests get the highest available version that the policy picks.

        A version loaded only because a label names it (``MODEL_VERSION_POLICY=specific:1``
        with ``{"canary": 2}``) answers only those who ask for it; the highest available
        version is the fallback while none that the policy picks is available.
        """
        picked = self.settings.model_version_policy.select(entry.servables)
        best = max(picked or entry.servables, default=None)
        entry.latest = entry.servables[best] if best is not None else None

    async def stop(self) -> None:
        """Stop taking requests; answer every queued one first."""
        self.accepting = False
        await asyncio.gather(*(servable.close() for servable in self))
