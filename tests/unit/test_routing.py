"""RequestRoute: an endpoint marked ``@direct`` is called as ``endpoint(request, **path)``;
every other endpoint as FastAPI calls it."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.routing import RequestRoute, direct
from app.protocols.native import routes as native
from app.protocols.oip import routes as oip
from app.protocols.tfserving import routes as tfserving


class Echo(BaseModel):
    name: str


router = APIRouter(prefix="/t", route_class=RequestRoute)


@router.post("/direct/{name}", summary="Takes the request, returns a response")
@direct
async def direct_endpoint(request: Request, name: str) -> JSONResponse:
    body = await request.json()
    if body.get("fail"):
        raise HTTPException(409, "asked to fail")
    return JSONResponse({"got": body, "name": name, "path": request.url.path})


@router.post("/unmarked")
async def unmarked(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@router.get("/query")
async def with_query(name: str, request: Request) -> JSONResponse:
    return JSONResponse({"name": name})


@router.get("/model")
async def model(request: Request) -> Echo:
    return Echo(name="from a model")


def _handler_kind(path: str, routes: list) -> str:
    route = next(r for r in routes if getattr(r, "path", None) == path)
    handler = route.get_route_handler()
    return "direct" if handler.__qualname__.startswith("RequestRoute.") else "fastapi"


@pytest.fixture
async def client():
    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, app


async def test_a_marked_endpoint_is_called_directly_with_its_path_parameters(client) -> None:
    http, app = client
    assert _handler_kind("/t/direct/{name}", router.routes) == "direct"
    response = await http.post("/t/direct/abc", json={"a": 1})
    assert response.status_code == 200
    assert response.json() == {"got": {"a": 1}, "name": "abc", "path": "/t/direct/abc"}
    # Its exceptions reach the app's handlers as from any route.
    failed = await http.post("/t/direct/abc", json={"fail": True})
    assert failed.status_code == 409
    assert failed.json() == {"detail": "asked to fail"}
    # And FastAPI still documents it, path parameter included.
    operation = app.openapi()["paths"]["/t/direct/{name}"]["post"]
    assert operation["summary"] == "Takes the request, returns a response"
    assert [p["name"] for p in operation["parameters"]] == ["name"]


async def test_unmarked_endpoints_keep_fastapis_handler(client) -> None:
    http, _ = client
    assert _handler_kind("/t/unmarked", router.routes) == "fastapi"  # no guessing from hints
    assert _handler_kind("/t/query", router.routes) == "fastapi"
    assert _handler_kind("/t/model", router.routes) == "fastapi"
    assert (await http.get("/t/query", params={"name": "x"})).json() == {"name": "x"}
    assert (await http.get("/t/query")).status_code == 422  # the parameter is still solved
    assert (await http.get("/t/model")).json() == {"name": "from a model"}  # and serialized


def test_a_marked_endpoint_whose_signature_does_not_fit_is_refused() -> None:
    bad = APIRouter(route_class=RequestRoute)

    async def wrong(request: Request, other: str) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(TypeError, match="must be async def"):
        bad.add_api_route("/x/{name}", direct(wrong), methods=["POST"])


def test_every_predict_endpoint_takes_the_direct_path() -> None:
    # make bench relies on it: a change that brought back FastAPI's per-request parameter
    # solving on a hot route would otherwise go unnoticed.
    routes = [*native.router.routes, *tfserving.router.routes, *oip.router.routes]
    hot = [
        "/v1/digits/predict",
        "/v1/sentiment/predict",
        "/v1/models/{name}:predict",
        "/v1/models/{name}/versions/{version}:predict",
        "/v1/models/{name}/labels/{label}:predict",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ]
    assert {path: _handler_kind(path, routes) for path in hot} == dict.fromkeys(hot, "direct")
