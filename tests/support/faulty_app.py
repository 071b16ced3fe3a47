"""Test-only: the real service with a fault switch in front of every model call.

Run ``uvicorn tests.support.faulty_app:app`` with ``FAULT_FILE=/some/path``. Every model call
first appends a line ``<model> <instances>`` to ``<FAULT_FILE>.calls`` (the tests' evidence of
which calls reached a model, and when one is inside), then reads the fault file (missing or
empty: no fault):

* ``raise``: the model call raises RuntimeError (the batch fails: 500 ``model_error``);
* ``short``: the model answers one output too few (the batch fails the same way);
* ``hang:S`` (or ``delay:S``): the call sleeps S seconds, then runs the real model;
* ``block`` or ``block:<model>``: the call (of every model, or of that one) waits until the
  fault file says something else, then runs the real model; so a test holds a call exactly as
  long as it needs, and lets it go by writing the file.

One fault holds requests before they reach a batcher:

* ``block-decode`` or ``block-decode:<model>``: a request that has resolved its version (and
  holds its lease) waits before decoding, without blocking the event loop, until the fault file
  says something else; then it decodes and queues as usual. Each request that starts waiting
  first appends ``<model> <version>`` to ``<FAULT_FILE>.decodes``. So a test can hold requests
  between picking a version and queuing on its batcher while that version is swapped out.

``GET /faults/bug`` raises RuntimeError, as a bug in a route would.

The hooks live here, not in ``app/``: this test-only process wraps
``ModelServer.servable_for``, so every version the server publishes, at start-up or loaded
later by the lifecycle, calls its model (``LoadedModel.call``, every signature) through the
fault switch (warm-up calls do not), and
``ModelServer.predict``, the one path of every protocol (resolve a version, take its lease,
``await decode(model)``, queue on the batcher), so the decode callable of every request goes
through the fault switch too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI

from app import logs
from app.access import AccessRecord
from app.batching import PredictFn
from app.config import get_settings
from app.main import create_app
from app.model import LoadedModel
from app.serving import ModelRef, ModelServer, Prediction, Servable
from app.signatures import Signature

BLOCK_POLL_S = 0.01  # how often a blocked call looks at the fault file again
_calls_lock = threading.Lock()


def current_fault() -> str:
    path = os.environ.get("FAULT_FILE")
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except FileNotFoundError:
        return ""


def blocks(fault: str, model: str, kind: str = "block") -> bool:
    """Whether ``fault`` holds the calls (``kind="block-decode"``: the decoding) of ``model``."""
    given, _, which = fault.partition(":")
    return given == kind and which in ("", model)


def record(suffix: str, line: str) -> None:
    path = os.environ.get("FAULT_FILE")
    if path:
        with _calls_lock, open(f"{path}.{suffix}", "a") as records:
            records.write(f"{line}\n")


def record_call(model: str, instances: int) -> None:
    record("calls", f"{model} {instances}")


def with_fault(predict: PredictFn, model: str) -> PredictFn:
    def faulty_predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        record_call(model, len(next(iter(inputs.values()))))
        fault = current_fault()
        if fault == "raise":
            raise RuntimeError("injected fault")
        if fault.startswith(("hang:", "delay:")):
            time.sleep(float(fault.partition(":")[2]))
        while blocks(fault, model):
            time.sleep(BLOCK_POLL_S)
            fault = current_fault()
        outputs = predict(inputs)
        if fault == "short":
            return {name: array[:-1] for name, array in outputs.items()}
        return outputs

    return faulty_predict


_servable_for = ModelServer.servable_for


def servable_with_faults(self: ModelServer, model: LoadedModel) -> Servable:
    call = model.call

    def faulty_call(signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return with_fault(lambda arrays: call(signature, arrays), model.name)(inputs)

    model.call = faulty_call  # type: ignore[method-assign]
    return _servable_for(self, model)


_predict = ModelServer.predict


async def predict_with_faults(
    self: ModelServer,
    ref: ModelRef,
    decode: Callable[[LoadedModel], Awaitable[Any]],
    access: AccessRecord | None = None,
) -> Prediction[Any]:
    async def faulty_decode(model: LoadedModel) -> Any:
        if blocks(current_fault(), model.name, "block-decode"):
            record("decodes", f"{model.name} {model.version}")
            # The fault file is the only signal there is: polled, off the event loop's way.
            while blocks(current_fault(), model.name, "block-decode"):  # noqa: ASYNC110
                await asyncio.sleep(BLOCK_POLL_S)
        return await decode(model)

    return await _predict(self, ref, faulty_decode, access)


def create_faulty_app() -> FastAPI:
    ModelServer.servable_for = servable_with_faults  # type: ignore[method-assign]
    ModelServer.predict = predict_with_faults  # type: ignore[method-assign]
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)  # as app.main.tuned_app does
    app = create_app(settings)

    @app.get("/faults/bug", include_in_schema=False)
    async def bug() -> None:
        """A route with a bug in it: what any unexpected exception in the service gets."""
        raise RuntimeError("injected bug")

    return app


app = create_faulty_app()
