"""Test-only: the real service with a fault switch in front of every model call.

Run ``uvicorn tests.support.faulty_app:app`` with ``FAULT_FILE=/some/path``. Before each batch
reaches the model, the file is read (missing or empty: no fault):

* ``raise``: the model call raises RuntimeError (the batch fails: 500 ``model_error``);
* ``short``: the model answers one output too few (the batch fails the same way);
* ``hang:S`` (or ``delay:S``): the call sleeps S seconds, then runs the real model.

``GET /faults/bug`` raises RuntimeError, as a bug in a route would.

The hook lives here, not in ``app/``: the app is built by ``app.main.create_app()`` and only its
lifespan is wrapped, to swap each batcher's predict function once the models are loaded.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from app.batching import PredictFn
from app.main import create_app


def current_fault() -> str:
    path = os.environ.get("FAULT_FILE")
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except FileNotFoundError:
        return ""


def with_fault(predict: PredictFn) -> PredictFn:
    def faulty_predict(inputs: np.ndarray) -> np.ndarray:
        fault = current_fault()
        if fault == "raise":
            raise RuntimeError("injected fault")
        if fault.startswith(("hang:", "delay:")):
            time.sleep(float(fault.partition(":")[2]))
        outputs = predict(inputs)
        if fault == "short":
            return outputs[:-1]
        return outputs

    return faulty_predict


def create_faulty_app() -> FastAPI:
    app = create_app()
    serve = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serve(app):
            for servable in app.state.server:
                servable.batcher._predict = with_fault(servable.batcher._predict)
            yield

    app.router.lifespan_context = lifespan

    @app.get("/faults/bug", include_in_schema=False)
    async def bug() -> None:
        """A route with a bug in it: what any unexpected exception in the service gets."""
        raise RuntimeError("injected bug")

    return app


app = create_faulty_app()
