"""Swagger UI (``/docs``) and ReDoc (``/redoc``) served from the service itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
``/docs`` is blank. Here the same pages (FastAPI's ``get_swagger_ui_html`` and
``get_redoc_html``) point at the files that the ``fastapi-standalone-docs`` package ships
(Swagger UI's and ReDoc's dist files, ReDoc's logo made local, FastAPI's favicon), served under
``/docs/assets/`` (and ReDoc's logo under ``/redoc/``, where its bundle asks for it). Only the package's files are used, not its ``StandaloneDocs``, which patches
FastAPI's functions for every app in the process. Google Fonts are left out of ReDoc and Swagger
UI's online validator badge is turned off, so neither page asks anything of another host.

Build the app with ``docs_url=None, redoc_url=None`` and include :data:`router`. A package that
lacks one of the files fails here, at import, not in a user's browser.

:func:`install_openapi` makes ``/openapi.json`` document only what the service answers: FastAPI
adds a 422 with its own validation body to every route with parameters, a body no route here
sends (path parameters are plain strings; the service's own 422s are in each route's responses).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastapi_standalone_docs
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/assets"

# Where the package keeps its copies, relative to its folder.
SWAGGER_JS = "swagger/swagger-ui-bundle.js"
SWAGGER_CSS = "swagger/swagger-ui.css"
REDOC_JS = "redoc/redoc.standalone.js"
REDOC_LOGO = "redoc/logo-mini.svg"
FAVICON = "fastapi/favicon.png"


def _assets(subfolder: str = "") -> StaticFiles:
    """The package's ``static`` folder (or one in it), once every file the pages use is there."""
    folder = Path(fastapi_standalone_docs.__path__[0]) / "static"
    missing = [name for name in (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, REDOC_LOGO, FAVICON)
               if not (folder / name).is_file()]  # fmt: skip
    if missing:
        raise RuntimeError(
            f"fastapi-standalone-docs has no {', '.join(missing)} in {folder}: "
            "reinstall it, or pin a version that has them"
        )
    return StaticFiles(directory=folder / subfolder)


router = APIRouter(include_in_schema=False)
router.mount(ASSETS_PATH, _assets(), name="docs-assets")
# The package's ReDoc asks for its logo beside the page: /redoc/logo-mini.svg.
router.mount(REDOC_PATH, _assets("redoc"), name="redoc-assets")


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get(DOCS_PATH, response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/{SWAGGER_JS}",
        swagger_css_url=f"{root}{ASSETS_PATH}/{SWAGGER_CSS}",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
        init_oauth=app.swagger_ui_init_oauth,
        # validatorUrl null: no badge fetched from validator.swagger.io for a public host name.
        swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT_PATH, response_class=HTMLResponse)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_PATH, response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    return get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/{REDOC_JS}",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
        with_google_fonts=False,
    )


FASTAPI_VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"


def install_openapi(app: FastAPI) -> None:
    """``app.openapi`` as FastAPI makes it, less FastAPI's 422s (made once, like FastAPI's)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = without_fastapi_validation_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def without_fastapi_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every 422 whose body is FastAPI's ``HTTPValidationError`` removed, and
    that schema (and its ``ValidationError``) too once nothing refers to it."""
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            answer = operation.get("responses", {}).get("422", {})
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == FASTAPI_VALIDATION_ERROR:
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    if FASTAPI_VALIDATION_ERROR not in json.dumps(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        if '"#/components/schemas/ValidationError"' not in json.dumps(schemas):
            schemas.pop("ValidationError", None)
    return document
