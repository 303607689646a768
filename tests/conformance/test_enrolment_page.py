"""The admin page that links a phone: a code (and its QR) for a worker the admin may manage,
which the field app exchanges for a token once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from server.access.accounts import AccountStore
from server.app import create_app
from server.db.engine import create_engine
from server.settings import Settings
from tests.factories import PASSWORD, create_user, sign_in

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def signed_in(settings: Settings) -> Iterator[tuple[Client, str]]:
    """A community admin of c1 signed in on the pages; their form token."""
    create_user(settings, "office", "community_admin", ("c1",))
    create_user(settings, "worker", "grid_worker", ("c1",))
    create_user(settings, "elsewhere", "grid_worker", ("c2",))
    with TestClient(create_app(settings)) as client:
        client.cookies.set("gridsync_session", sign_in(client, "office"))
        page = client.get("/admin/enrolment")
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert found is not None
        yield client, found.group(1)


def _user_id(client: Client, name: str) -> str:
    admin = client.post("/v1/admin/login", json={"name": "office", "password": PASSWORD})
    users = client.get("/v1/admin/users", headers={"authorization": f"Bearer {admin.json()['token']}"})
    return next(u["id"] for u in users.json() if u["name"] == name)
    return next(u["id"] for u in users.json() if u["name"] == name)


def test_the_page_issues_a_code_with_its_qr_that_enrols_a_phone_once(signed_in: tuple[Client, str]) -> None:
    client, csrf = signed_in
    listed = client.get("/admin/enrolment").text
    assert "worker" in listed
    assert "elsewhere" not in listed
    issued = client.post("/admin/enrolment", data={"csrf": csrf, "user_id": _user_id(client, "worker")})
    assert issued.status_code == 200, issued.text
    code = re.search(r'id="enrolment-code">([0-9A-Z-]+)<', issued.text)
    assert code is not None
    assert "<svg" in issued.text
    enrol = {"code": code.group(1), "name": "worker's phone"}
    first = client.post("/v1/enrol", json=enrol)
    assert first.status_code == 201, first.text
    phone = {"authorization": f"Bearer {first.json()['token']}"}
    assert client.get("/v1/me", headers=phone).json()["role"] == "grid_worker"
    assert client.post("/v1/enrol", json=enrol).status_code == 400


def test_the_page_refuses_a_user_outside_the_admins_communities(
    signed_in: tuple[Client, str], settings: Settings
) -> None:
    client, csrf = signed_in
    outside = asyncio.run(_user_id_of(settings, "elsewhere"))
    refused = client.post("/admin/enrolment", data={"csrf": csrf, "user_id": outside})
    assert refused.status_code in (403, 404)
    assert 'id="enrolment-code"' not in refused.text
    assert client.post("/admin/enrolment", data={"user_id": outside}).status_code == 403


async def _user_id_of(settings: Settings, name: str) -> str:
    engine = create_engine(settings.database_url)
    try:
        found = await AccountStore(engine).user_by_name(name)
    finally:
        await engine.dispose()
    assert found is not None
    return found.id


def test_the_page_sends_a_visitor_who_is_not_signed_in_to_sign_in(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        reply = client.get("/admin/enrolment", follow_redirects=False)
        assert reply.status_code in (302, 303)
        assert reply.headers["location"].startswith("/admin/login")
        assert client.post("/admin/enrolment", data={"user_id": "x"}).status_code < 500
