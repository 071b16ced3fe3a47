"""The FastAPI application: ``uvicorn app.main:app`` or ``python -m app``.

Start-up loads and warms up every model (a broken model folder stops it, naming the path) and
starts one batcher per model; shutdown answers what is queued before the process exits.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from app import metrics
from app.api import docs, health, playground, predict, tfserving
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.responses import FastJSONResponse
from app.serving import ModelServer

logger = logging.getLogger("app")

DESCRIPTION = """
Predictions from two Keras models, with concurrent requests batched into single model calls:

* **sentiment**: is an IMDB-style movie review positive? `POST /v1/sentiment/predict`
* **digits**: which digit is in a 28x28 (or any) image? `POST /v1/digits/predict`

Errors are JSON: `{"error": {"code": "...", "message": "..."}}`, each with an `X-Request-ID`.
"""


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("app").setLevel(settings.log_level.upper())
        server = ModelServer.load(settings)
        # TensorFlow, Keras and the models leave some 300k objects behind; every full garbage
        # collection would scan them all again, a pause of 100-300 ms in the middle of serving.
        # They live as long as the process: collect once, then leave them out of later scans.
        gc.collect()
        gc.freeze()
        # Requests in flight hold many young objects: at the default threshold (700) the
        # collector ran ~100 times a second under load, 5-8% of the event loop's time.
        gc.set_threshold(10_000, 10, 10)
        # Under load the event loop holds the GIL nearly all the time, and a model thread coming
        # back from TensorFlow waited up to the switch interval (5 ms) for it, every time.
        sys.setswitchinterval(0.0005)
        server.start()
        app.state.server = server
        logger.info("ready: %s", ", ".join(server.servables))
        try:
            yield
        finally:
            logger.info("shutting down: answering queued requests first")
            await server.stop()
            metrics.mark_process_dead()

    app = FastAPI(
        title="Keras inference service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        # Off unless asked for: even with no SDK configured, FastAPI looks the providers up on
        # every request (~8 us, 1-3% of the event loop's time under load).
        telemetry=None if settings.opentelemetry else NO_TELEMETRY,
        docs_url=None,  # app.api.docs serves /docs and /redoc from local files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.server = None
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    install_error_handlers(app)
    # Routes are matched in order: the busiest first.
    app.include_router(predict.router)
    app.include_router(tfserving.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(playground.router)
    return app


app = create_app()
