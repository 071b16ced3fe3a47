"""RequestRoute: ``endpoint(request) -> Response`` is called directly; anything else as FastAPI does."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api import predict
from app.api.routing import RequestRoute


class Echo(BaseModel):
    name: str


router = APIRouter(prefix="/t", route_class=RequestRoute)


@router.post("/direct", summary="Takes the request, returns a response")
async def direct(request: Request) -> JSONResponse:
    body = await request.json()
    if body.get("fail"):
        raise HTTPException(409, "asked to fail")
    return JSONResponse({"got": body, "path": request.url.path})


@router.get("/query")
async def with_query(name: str, request: Request) -> JSONResponse:
    return JSONResponse({"name": name})


@router.get("/model")
async def model(request: Request) -> Echo:
    return Echo(name="from a model")


def _handler_kind(path: str, routes: list) -> str:
    route = next(r for r in routes if r.path == path)
    handler = route.get_route_handler()
    return "direct" if handler.__qualname__.startswith("RequestRoute.") else "fastapi"


@pytest.fixture
async def client():
    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, app


async def test_an_endpoint_of_the_request_alone_is_called_directly(client) -> None:
    http, app = client
    assert _handler_kind("/t/direct", router.routes) == "direct"
    response = await http.post("/t/direct", json={"a": 1})
    assert response.status_code == 200
    assert response.json() == {"got": {"a": 1}, "path": "/t/direct"}
    # Its exceptions reach the app's handlers as from any route.
    failed = await http.post("/t/direct", json={"fail": True})
    assert failed.status_code == 409
    assert failed.json() == {"detail": "asked to fail"}
    # And FastAPI still documents it.
    assert app.openapi()["paths"]["/t/direct"]["post"]["summary"] == (
        "Takes the request, returns a response"
    )


async def test_other_endpoints_keep_fastapis_handler(client) -> None:
    http, _ = client
    assert _handler_kind("/t/query", router.routes) == "fastapi"
    assert _handler_kind("/t/model", router.routes) == "fastapi"
    assert (await http.get("/t/query", params={"name": "x"})).json() == {"name": "x"}
    assert (await http.get("/t/query")).status_code == 422  # the parameter is still solved
    assert (await http.get("/t/model")).json() == {"name": "from a model"}  # and serialized


def test_both_predict_endpoints_take_the_direct_path() -> None:
    # make bench relies on it: adding a parameter to either would bring back FastAPI's
    # per-request parameter solving without anyone noticing.
    assert _handler_kind("/v1/digits/predict", predict.router.routes) == "direct"
    assert _handler_kind("/v1/sentiment/predict", predict.router.routes) == "direct"
