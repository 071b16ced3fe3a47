"""Real headless Chromium (Debian's ``chromium``) on a real server, with the outside world cut off.

``browser`` launches the system Chromium through playwright's ``executable_path``; playwright
never downloads a browser here. Where playwright or Chromium is missing, the tests are skipped
saying what to install, except in CI (``CI=true``), where that is a failure: ``make test``
installs playwright and ``.ci/run`` installs Chromium.

``Session`` (the ``session_for`` fixture) opens a page on a server whose every request is
watched: anything not for that server (another host, another port) is aborted and recorded,
and console errors and uncaught page errors are collected. ``session.check()`` asserts there
were none of the three.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.ci import needs
from tests.support.server import start_server, stop_server

try:
    from playwright import sync_api as playwright_api
except ImportError:  # the browser fixture says what to install (in CI: fails)
    playwright_api = None

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


def chromium_path() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).is_file() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium, for one module's tests. Not longer: playwright's sync API keeps an event loop
    running in this thread while it is open, and later tests' ``asyncio.run()`` would fail."""
    if playwright_api is None:
        needs("playwright is not installed", "pip install -r requirements/dev.txt (make test does)")
    executable = chromium_path()
    if executable is None:
        needs("Debian's chromium is not installed", "apt-get install chromium (.ci/run does)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real ``uvicorn app.main:app`` process on the committed models; yields its base URL."""
    proc, url = start_server()
    yield url
    stop_server(proc)


@dataclass
class Session:
    """One browser context and page on ``base``, with what it tried and what went wrong."""

    base: str
    context: object
    page: object
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[object] = field(default_factory=list)

    def check(self, allowed_console: tuple[str, ...] = ()) -> None:
        """No request left the server, no uncaught error, no console error but those allowed."""
        unexpected = [m for m in self.console_errors if not any(a in m for a in allowed_console)]
        assert self.blocked == [], f"requests to other hosts: {self.blocked}"
        assert self.page_errors == [], f"uncaught errors: {self.page_errors}"
        assert unexpected == [], f"console errors: {unexpected}"


@pytest.fixture
def session_for(browser) -> Iterator[Callable[..., Session]]:
    opened: list[Session] = []

    def open_session(base: str, **context_options: object) -> Session:
        context = browser.new_context(**{**DESKTOP, **context_options})
        context.set_default_timeout(20_000)
        session = Session(base, context, None)  # type: ignore[arg-type]

        def route(route) -> None:
            url = route.request.url
            if url == base or url.startswith(base + "/"):
                route.continue_()
            else:
                session.blocked.append(url)
                route.abort("blockedbyclient")

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and session.console_errors.append(m.text))
        page.on("pageerror", lambda e: session.page_errors.append(str(e)))
        page.on("request", lambda request: session.requests.append(request))
        session.page = page
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.context.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/ with UPDATE_SCREENSHOTS=1 (to refresh the ones the docs show), else a temp folder."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs"
    return tmp_path
