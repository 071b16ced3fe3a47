"""The FastAPI application: ``python -m app`` (or ``uvicorn app.main:app``).

Start-up loads and warms up every model version to serve (a broken model folder stops it,
naming the path), starts one batcher per version and the poller that swaps versions as
``MODEL_DIR`` changes; shutdown stops the poller and answers what is queued before the process
exits. The protocols' routers are mounted here, busiest first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.trace import TracerProvider

from app import __version__, logs, metrics, tracing
from app.api import docs, health, playground
from app.api.dispatch import ServiceApp
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.lifecycle import Lifecycle
from app.middleware import RequestContextMiddleware
from app.model import configure_tensorflow
from app.protocols.native import routes as native
from app.protocols.oip import routes as oip
from app.protocols.tfserving import routes as tfserving
from app.responses import FastJSONResponse
from app.serving import ModelServer
from app.tuning import tune_process

logger = logging.getLogger("app")

DESCRIPTION = """
Predictions from two Keras models, with concurrent requests batched into single model calls:

* **sentiment**: is an IMDB-style movie review positive? `POST /v1/sentiment/predict`
* **digits**: which digit is in a 28x28 (or any) image? `POST /v1/digits/predict`

Every model under `MODEL_DIR` is also served through TensorFlow Serving's REST API
(`/v1/models/...`) and the Open Inference Protocol (`/v2/...`, KServe and Triton clients).
Errors are JSON with an `X-Request-ID`: `{"error": {"code": "...", "message": "..."}}` on the
service's own routes, `{"error": "..."}` on the other two protocols'.
"""

NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def telemetry(settings: Settings, provider: TracerProvider | None) -> TelemetryConfig:
    """FastAPI's OpenTelemetry hooks: off unless ``OPENTELEMETRY=true`` (without an SDK they
    still look the providers up per request); then its request spans only (app/tracing.py
    says why), on ``provider`` or else the global one, none for probes and scrapes."""
    if not settings.opentelemetry:
        return NO_TELEMETRY
    return {
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
        "tracer_provider": provider,
        "exclude": tracing.untraced,
    }


def create_app(
    settings: Settings | None = None,
    *,
    tuned: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The app. ``tuned``: apply :mod:`app.tuning` (the server entry point does).

    With ``OPENTELEMETRY=true``, spans go to ``tracer_provider`` (a test's), or else to the
    global provider, made at start-up from the ``OTEL_*`` variables if nothing set one up.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("app").setLevel(settings.log_level.upper())
        logs.take_over_access_log()
        device = configure_tensorflow(
            settings.device, settings.tf_intra_op_threads, settings.tf_inter_op_threads
        )
        logger.info("DEVICE=%s: models run on %s", settings.device, device)
        if tuned:
            tune_process(settings)
        metrics.queue_capacity(settings.max_queue_size)
        provider = None
        if settings.opentelemetry:
            provider = tracer_provider or tracing.tracer_provider()
            logger.info("OPENTELEMETRY=true: tracing requests and model calls")
        server = ModelServer(
            settings, device, tracing.Tracing(provider) if provider is not None else None
        )
        lifecycle = Lifecycle(server, settings)
        await lifecycle.load_initial()
        lifecycle.start()
        server.accepting = True
        app.state.server = server
        app.state.lifecycle = lifecycle
        logger.info("ready: %s", ", ".join(sorted(server.models)))
        try:
            yield
        finally:
            logger.info("shutting down: answering queued requests first")
            server.accepting = False
            await lifecycle.stop()
            await server.stop()
            metrics.mark_process_dead()
            if provider is not None:
                tracing.flush(provider)

    app = ServiceApp(
        # FastAPI's request spans come from the layers the short way in skips.
        direct_dispatch=not settings.opentelemetry,
        title="Keras inference service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        telemetry=telemetry(settings, tracer_provider),
        docs_url=None,  # app.api.docs serves /docs and /redoc from local files, not a CDN
        redoc_url=None,
    )
    docs.install_openapi(app)
    app.state.settings = settings
    app.state.server = None
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_bytes,
        access_log=settings.access_log,
        api_keys=settings.api_keys,
        tracing=settings.opentelemetry,
    )
    install_error_handlers(app)
    # Routes are matched in order: the busiest first.
    app.include_router(native.router)
    app.include_router(oip.router)
    app.include_router(tfserving.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(playground.router)
    return app


def tuned_app() -> FastAPI:
    """The app as the server runs it (``python -m app``): with :mod:`app.tuning` applied, and
    logging as ``LOG_LEVEL`` and ``LOG_FORMAT`` say (uvicorn's own access log off) however
    uvicorn was started."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings, tuned=True)


app = create_app()
