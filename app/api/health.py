"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.api.deps import check_api_key
from app.metrics import render
from app.responses import FastJSONResponse
from app.serving import ModelServer

router = APIRouter()


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str] = Field(
        description="Each model's state: AVAILABLE while any version is, else LOADING, "
        "UNLOADING or END (the furthest any version got)",
        examples=[{"sentiment": "AVAILABLE", "digits": "AVAILABLE"}],
    )


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process answers at all."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready to serve"}},
    summary="Readiness",
)
async def readyz(request: Request) -> FastJSONResponse:
    """200 while the service takes requests and the sentiment and digits models each have an
    available version; 503, with each model's state, otherwise (start-up, shutdown)."""
    server: ModelServer | None = getattr(request.app.state, "server", None)
    if server is None:
        return FastJSONResponse({"ready": False, "models": {}}, status_code=503)
    ready = server.ready
    models = {name: entry.state for name, entry in sorted(server.models.items())}
    return FastJSONResponse({"ready": ready, "models": models}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests, latency, batch sizes, queue depth, model call time,
    version states and loads."""
    if not request.app.state.settings.metrics_public:
        check_api_key(request)
    body, content_type = render()
    return Response(body, media_type=content_type)
