"""The playground page and the offline docs, in process: what they serve, and what they do not.

The browser tests (tests/browser) use them; these check, without a browser, that the page and
the docs stay out of the OpenAPI document, that the page may load nothing from another origin,
and that /docs and /redoc name only files the service serves itself.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.api import docs, playground


def test_the_page_is_served_at_the_root_with_a_policy_against_other_origins(
    client: TestClient,
) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    html = response.text
    for name in ("Digit drawing pad", 'data-testid="digit-result"', 'data-testid="sentiment-result"',
                 '<label for="review">Review</label>', ">Clear<", ">Predict digit<",
                 ">Predict sentiment<"):  # fmt: skip
        assert name in html
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/playground/app.js", "text/javascript"), ("/playground/style.css", "text/css")],
)
def test_the_page_s_files_are_served(client: TestClient, path: str, kind: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(kind)


def test_the_page_refers_to_nothing_outside_the_service(client: TestClient) -> None:
    for path in ("/", "/playground/app.js", "/playground/style.css"):
        text = client.get(path).text
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path


def test_the_page_and_the_docs_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert [p for p in paths if p == "/" or p.startswith(("/playground", "/docs", "/redoc"))] == []


def test_an_unknown_page_file_is_a_json_404(client: TestClient) -> None:
    response = client.get("/playground/nothing.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_load_their_files_from_the_service(client: TestClient, path: str) -> None:
    html = client.get(path).text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, html
    assert [u for u in urls if not u.startswith(docs.ASSETS_PATH + "/")] == []
    assert "fonts.googleapis.com" not in html
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_redoc_finds_its_logo_beside_the_page(client: TestClient) -> None:
    response = client.get("/redoc/logo-mini.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg")


def test_swagger_ui_asks_no_online_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text
    assert client.get(docs.OAUTH2_REDIRECT_PATH).status_code == 200


def test_the_page_s_files_are_checked_at_import() -> None:
    assert playground.INDEX_HTML.startswith(b"<!doctype html>")
    assert all((playground.ASSETS_FOLDER / name).is_file() for name in playground.ASSETS)


def test_the_page_is_served_at_its_address_only_with_its_headers(client: TestClient) -> None:
    """The page's policy comes with the page: no copy of it under the assets' path."""
    page = client.get("/")
    assert page.headers["content-security-policy"] == playground.CONTENT_SECURITY_POLICY
    assert client.get(f"{playground.ASSETS_PATH}/index.html").status_code == 404
    for name in playground.ASSETS:
        assert client.get(f"{playground.ASSETS_PATH}/{name}").status_code == 200
