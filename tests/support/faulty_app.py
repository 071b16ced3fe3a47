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

``GET /faults/bug`` raises RuntimeError, as a bug in a route would.

The hook lives here, not in ``app/``: this test-only process wraps
``ModelServer.servable_for``, so every version the server publishes, at start-up or loaded
later by the lifecycle, calls its model through the fault switch (warm-up calls do not).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from app import logs
from app.batching import PredictFn
from app.config import get_settings
from app.main import create_app
from app.model import LoadedModel
from app.serving import ModelServer, Servable

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


def blocks(fault: str, model: str) -> bool:
    """Whether ``fault`` holds the calls of ``model``."""
    kind, _, which = fault.partition(":")
    return kind == "block" and which in ("", model)


def record_call(model: str, instances: int) -> None:
    path = os.environ.get("FAULT_FILE")
    if path:
        with _calls_lock, open(f"{path}.calls", "a") as calls:
            calls.write(f"{model} {instances}\n")


def with_fault(predict: PredictFn, model: str) -> PredictFn:
    def faulty_predict(inputs: np.ndarray) -> np.ndarray:
        record_call(model, len(inputs))
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
            return outputs[:-1]
        return outputs

    return faulty_predict


_servable_for = ModelServer.servable_for


def servable_with_faults(self: ModelServer, model: LoadedModel) -> Servable:
    model.predict = with_fault(model.predict, model.name)  # type: ignore[method-assign]
    return _servable_for(self, model)


def create_faulty_app() -> FastAPI:
    ModelServer.servable_for = servable_with_faults  # type: ignore[method-assign]
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)  # as app.main.tuned_app does
    app = create_app(settings)

    @app.get("/faults/bug", include_in_schema=False)
    async def bug() -> None:
        """A route with a bug in it: what any unexpected exception in the service gets."""
        raise RuntimeError("injected bug")

    return app


app = create_faulty_app()
