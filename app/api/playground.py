"""The playground: ``GET /`` is a page where a person draws a digit or types a review and sees
what the models make of it.

The page is plain HTML, CSS and JavaScript in ``app/playground/`` (no build step), served by the
service itself: the page at ``/`` only (with its headers), its script and style sheet from
``app/playground/assets/`` under ``/playground/``. It calls the public endpoints like any other
client. Its Content-Security-Policy lets it load nothing from another origin, so it works air-gapped, and
a mistake that would fetch from outside fails in the browser's console rather than leaking.
None of it is in ``/openapi.json``, and none of it runs on the predict endpoints' path (its
routes come after theirs). The page is read once, at import: a missing file stops start-up
instead of giving a user a 404.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

PAGE_FOLDER = Path(__file__).resolve().parent.parent / "playground"
ASSETS_FOLDER = PAGE_FOLDER / "assets"
ASSETS_PATH = "/playground"
ASSETS = ("app.js", "style.css")  # what index.html loads from ASSETS_PATH

# Nothing from another origin; canvases export to blob: URLs, the bar chart's colours are CSS.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _index_html() -> bytes:
    return (PAGE_FOLDER / "index.html").read_bytes()


def _assets() -> StaticFiles:
    """The page's script and style sheet (Starlette keeps every request inside the folder)."""
    missing = [name for name in ASSETS if not (ASSETS_FOLDER / name).is_file()]
    if missing:
        raise RuntimeError(f"the playground has no {', '.join(missing)} in {ASSETS_FOLDER}")
    return StaticFiles(directory=ASSETS_FOLDER)


INDEX_HTML = _index_html()

router = APIRouter(include_in_schema=False)
router.mount(ASSETS_PATH, _assets(), name="playground")


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    return HTMLResponse(INDEX_HTML, headers=PAGE_HEADERS)
