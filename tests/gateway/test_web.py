"""The page at / and the API docs: served from this process, nothing from another host.
(The page's behaviour in a real browser: tests/e2e/test_web_page.py.)"""

from __future__ import annotations

import re

import pytest


def _external_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?((?:https?:)?//[^"' >]+)""", html)


def test_the_page_is_served_at_the_root_with_a_strict_content_security_policy(anonymous):
    r = anonymous.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Take or choose a photo" in r.text and 'capture="environment"' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert _external_urls(r.text) == []


@pytest.mark.parametrize("path", ["/web/app.js", "/web/app.css", "/web/icon.svg"])
def test_the_pages_files_are_served_and_load_nothing_from_elsewhere(anonymous, path):
    r = anonymous.get(path)
    assert r.status_code == 200 and r.content
    assert not re.search(r"https?://", r.text.replace("http://www.w3.org/2000/svg", ""))


@pytest.mark.parametrize("page, asset", [("/docs", "/docs-assets/swagger-ui-bundle.js"),
                                         ("/docs", "/docs-assets/swagger-ui.css")])
def test_the_api_docs_load_their_assets_from_this_gateway(anonymous, page, asset):
    html = anonymous.get(page).text
    assert asset in html
    assert not [u for u in _external_urls(html) if "openapi" not in u], _external_urls(html)
    r = anonymous.get(asset)
    assert r.status_code == 200 and len(r.content) > 10_000


def test_the_swagger_ui_served_renders_openapi_3_1(anonymous):
    """FastAPI's schema is OpenAPI 3.1, which Swagger UI renders only from version 5 on."""
    assert anonymous.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = anonymous.get("/docs-assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle and '"5.' in bundle


def test_redoc_is_not_served_since_it_would_load_from_a_cdn(anonymous):
    assert anonymous.get("/redoc").status_code == 404
