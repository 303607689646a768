"""The admin pages' browser defences: security headers, a Secure session cookie over HTTPS, and
no page that loads a script from outside the server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from litestar.testing import TestClient

from server.app import create_app
from server.settings import Settings
from tests.factories import PASSWORD, create_user

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def admin(settings: Settings) -> Settings:
    create_user(settings, "admin", "district_admin")
    return settings


@pytest.fixture
def signed_in(admin: Settings) -> Iterator[Client]:
    with TestClient(create_app(admin)) as client:
        assert client.post("/v1/admin/login", json={"name": "admin", "password": PASSWORD}).status_code == 200
        yield client


def _session_cookie(client: Client, headers: dict[str, str] | None = None) -> str:
    reply = client.post(
        "/v1/admin/login", json={"name": "admin", "password": PASSWORD}, headers=headers or {}
    )
    assert reply.status_code == 200, reply.text
    (cookie,) = [v for k, v in reply.headers.multi_items() if k == "set-cookie" and "gridsync_session" in v]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    return cookie.lower()


def test_admin_pages_send_the_security_headers(signed_in: Client) -> None:
    for path in ("/admin/login", "/admin/conflicts", "/admin/dashboard", "/admin/bulk"):
        page = signed_in.get(path)
        assert page.status_code == 200, path
        policy = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in directives.get("default-src", "")
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        # Every script is a file of this server: the policy lets no inline script run.
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", page.text), path
    assert signed_in.get("/static/admin-login.js").status_code == 200


@pytest.mark.parametrize(
    ("mode", "base_url", "headers", "secure"),
    [
        ("auto", "http://testserver.local", {}, False),
        ("auto", "https://testserver.local", {}, True),
        ("auto", "http://testserver.local", {"x-forwarded-proto": "https"}, False),
        ("always", "http://testserver.local", {}, True),
        ("never", "https://testserver.local", {}, False),
    ],
)
def test_the_session_cookie_is_secure_over_https(
    admin: Settings, mode: str, base_url: str, headers: dict[str, str], secure: bool
) -> None:
    with TestClient(create_app(replace(admin, secure_cookies=mode)), base_url=base_url) as client:
        assert ("; secure" in _session_cookie(client, headers)) is secure


def test_a_trusted_proxy_tells_https_for_the_cookie(admin: Settings) -> None:
    behind = replace(admin, trusted_proxies="testclient")
    with TestClient(create_app(behind)) as client:
        assert "; secure" in _session_cookie(client, {"x-forwarded-proto": "https"})
        assert "; secure" not in _session_cookie(client, {"x-forwarded-proto": "http"})


def test_a_wrong_cookie_mode_stops_the_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="GRIDSYNC_SECURE_COOKIES"):
        create_app(replace(settings, secure_cookies="sometimes"))


def test_the_openapi_document_is_served_and_no_page_loads_outside_scripts(signed_in: Client) -> None:
    document = signed_in.get("/schema/openapi.json")
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.")
    for path in ("/schema", "/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc"):
        page = signed_in.get(path)
        assert "<script" not in page.text, path
        assert "cdn" not in page.text.lower() or page.headers["content-type"].endswith("json"), path
