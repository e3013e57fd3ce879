"""/docs and /redoc load Swagger UI / ReDoc from the app itself, so they render offline.

No lifespan runs (no model is needed for the docs pages): a plain TestClient on create_app.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from serving.app import create_app

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(home=tmp_path)))


@pytest.mark.parametrize("page, expected", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png"}),
])
def test_docs_page_loads_only_local_assets(client: TestClient, page: str, expected: set[str]) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    # No CDN, no Google Fonts: nothing the page loads leaves the app.
    assert not re.search(r"""(?:src|href)\s*=\s*["']https?://""", html), html
    assert "cdn.jsdelivr.net" not in html and "fonts.googleapis.com" not in html
    urls = ASSET.findall(html)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= expected
    for url in urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], url
        elif url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css"), url


def test_swagger_ui_points_at_the_apps_openapi_and_no_online_validator(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_docs_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc", "/static")) for p in paths)


def test_docs_urls_follow_the_root_path(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(home=tmp_path)), root_path="/api")
    html = client.get("/docs").text
    assert '/api/static/api-docs/swagger-ui-bundle.js' in html
    assert "url: '/api/openapi.json'" in html
