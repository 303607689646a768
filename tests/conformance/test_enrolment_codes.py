"""One-time enrolment codes: an admin issues one, a phone exchanges it once for its token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from server.app import create_app
from server.db.engine import create_engine
from server.db.tables import enrolment_codes
from server.settings import Settings
from tests.factories import audit_entries, bearer, create_user, sign_in

Client = TestClient  # type: ignore[type-arg]
WORKER = {"name": "li", "role": "grid_worker", "scope": {"communities": ["c1"], "grids": ["g1"]}}


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[tuple[Client, dict[str, str]]]:
    create_user(settings, "district", "district_admin")
    with TestClient(create_app(settings)) as client:
        yield client, bearer(sign_in(client, "district"))


async def _stored(settings: Settings) -> list[Any]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return list(await connection.execute(select(enrolment_codes)))
    finally:
        await engine.dispose()


def test_a_code_works_once_and_gives_the_users_scope(
    admin_client: tuple[Client, dict[str, str]], settings: Settings
) -> None:
    client, admin = admin_client
    issued = client.post("/v1/admin/enrolment-codes", json={"user": WORKER}, headers=admin)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    assert issued.json()["user"]["grids"] == ["g1"]
    assert 23 * 3600_000 < issued.json()["expires_at_ms"] - time.time() * 1000 <= 24 * 3600_000
    # Typed by a person: any case, spaces instead of dashes.
    typed = code.lower().replace("-", " ")
    enrolled = client.post("/v1/enrol", json={"code": typed, "name": "Li's phone", "replica_id": "li-1"})
    assert enrolled.status_code == 201, enrolled.text
    assert set(enrolled.json()) == {"device_id", "token"}
    phone = {"authorization": f"Bearer {enrolled.json()['token']}"}
    assert client.get("/v1/sync/pull", headers=phone).status_code == 200
    again = client.post("/v1/enrol", json={"code": code, "name": "thief"})
    assert (again.status_code, again.json()["code"]) == (400, "invalid_enrolment_code")
    devices = client.get("/v1/admin/devices", headers=admin).json()
    assert [(d["name"], d["user_name"], d["role"]) for d in devices] == [("Li's phone", "li", "grid_worker")]
    (stored,) = asyncio.run(_stored(settings))
    assert code not in json.dumps([str(v) for v in stored])
    assert stored.used_at_ms is not None
    assert stored.device_id == enrolled.json()["device_id"]
    (issue,) = audit_entries(settings, "enrolment_code_issue")
    assert issue.actor_name == "district"
    assert issue.target == stored.id
    (redeem,) = audit_entries(settings, "device_enroll")
    assert redeem.detail["enrolment_code"] == stored.id
    assert redeem.detail["replica_id"] == "li-1"


def test_unknown_and_expired_codes_are_refused_alike(settings: Settings) -> None:
    create_user(settings, "district", "district_admin")
    quick = replace(settings, enrolment_code_ttl_s=1)
    with TestClient(create_app(quick)) as client:
        admin = bearer(sign_in(client, "district"))
        code = client.post("/v1/admin/enrolment-codes", json={"user": WORKER}, headers=admin).json()["code"]
        time.sleep(1.1)
        for sent in (code, "AAAA-BBBB-CCCC", "x" * 64):
            reply = client.post("/v1/enrol", json={"code": sent, "name": "p"})
            assert (reply.status_code, reply.json()["code"]) == (400, "invalid_enrolment_code"), sent
        assert client.get("/v1/admin/devices", headers=admin).json() == []


def test_enrolment_is_rate_limited_per_address(settings: Settings) -> None:
    with TestClient(create_app(replace(settings, enrolments_per_minute=3))) as client:
        answers = [
            client.post("/v1/enrol", json={"code": f"guess-{n}", "name": "p"}).status_code for n in range(5)
        ]
    assert answers == [400, 400, 400, 429, 429]


def test_bad_enrolment_bodies_are_a_clear_400(admin_client: tuple[Client, dict[str, str]]) -> None:
    client, admin = admin_client
    for body in ({"name": "p"}, {"code": "x", "name": ""}, {"code": "x", "name": "p", "replica_id": "a\n"}):
        reply = client.post("/v1/enrol", json=body)
        assert reply.status_code == 400, body
    reply = client.post("/v1/admin/enrolment-codes", json={"user": WORKER, "ttl_s": 5}, headers=admin)
    assert reply.status_code == 400
    assert client.post("/v1/admin/enrolment-codes", json={}, headers=admin).status_code == 400


def test_cli_prints_a_code_and_its_qr(settings: Settings) -> None:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "server.cli", "device", "enroll", "--name", "p1", "--code"),
            *("--user", "wang", "--role", "grid_worker", "--community", "c1", "--grid", "g1"),
            *("--database-url", settings.database_url),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    issued = json.loads(out.stdout)
    assert issued["role"] == "grid_worker"
    assert "token" not in issued
    assert issued["code"] in out.stderr
    assert "█" in out.stderr
    with TestClient(create_app(settings)) as client:
        enrolled = client.post("/v1/enrol", json={"code": issued["code"], "name": "wang's phone"})
        assert enrolled.status_code == 201, enrolled.text
