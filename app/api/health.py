"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.deps import check_api_key
from app.metrics import render
from app.responses import FastJSONResponse
from app.schemas import Health, Readiness

router = APIRouter()


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process answers at all."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not every model is ready"}},
    summary="Readiness",
)
async def readyz(request: Request) -> FastJSONResponse:
    """200 once every model is loaded and warmed up; 503, with each model's state, before."""
    server = getattr(request.app.state, "server", None)
    if server is None:
        return FastJSONResponse({"ready": False, "models": {}}, status_code=503)
    state = "AVAILABLE" if server.ready else "UNAVAILABLE"
    models = {name: state for name in server.servables}
    return FastJSONResponse(
        {"ready": server.ready, "models": models}, status_code=200 if server.ready else 503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latency, batch sizes, queue depth, model call time."""
    if not request.app.state.settings.metrics_public:
        check_api_key(request)
    body, content_type = render()
    return Response(body, media_type=content_type)
