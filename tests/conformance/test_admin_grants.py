"""What an admin may grant: scope elements inside their own communities only; a handler bounded
by community; and device tokens, whatever their role, never manage users."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from server.access.accounts import AccountStore
from server.access.principals import ROLES
from server.app import create_app
from server.db.engine import create_engine
from server.errors import GridsyncError
from server.settings import Settings
from tests.factories import bearer, create_user, seed_places, sign_in

Client = TestClient  # type: ignore[type-arg]
PLACES: list[tuple[str, str, dict[str, Any]]] = [
    ("communities", "c-east", {"name": "East"}),
    ("communities", "c-west", {"name": "West"}),
    ("grids", "g-east", {"community_id": "c-east", "name": "East 1"}),
    ("grids", "g-west", {"community_id": "c-west", "name": "West 1"}),
    ("buildings", "b-east", {"grid_id": "g-east", "name": "E1"}),
    ("buildings", "b-west", {"grid_id": "g-west", "name": "W1"}),
    ("households", "h-east", {"building_id": "b-east", "address": "E1-101"}),
    ("households", "h-west", {"building_id": "b-west", "address": "W1-101"}),
    ("requests", "q-east", {"household_id": "h-east", "title": "Leak", "dispatched_to": "acme"}),
    ("requests", "q-west", {"household_id": "h-west", "title": "Lift", "dispatched_to": "acme"}),
]


@pytest.fixture
def east(settings: Settings, enroll: Callable[[str], str]) -> Iterator[tuple[Client, dict[str, str]]]:
    """The app with two communities seeded, and the east community admin signed in."""
    create_user(settings, "district", "district_admin")
    create_user(settings, "east-admin", "community_admin", ("c-east",))
    seeder = enroll("seeder")
    with TestClient(create_app(settings)) as client:
        seed_places(client, seeder, PLACES)
        yield client, bearer(sign_in(client, "east-admin"))


def _worker(name: str, **scope: Any) -> dict[str, Any]:
    return {"name": name, "role": "grid_worker", "scope": {"communities": ["c-east"], **scope}}


@pytest.mark.parametrize(
    "user",
    [
        _worker("w1", grids=["g-west"]),
        _worker("w2", buildings=["b-west"]),
        _worker("w3", grids=["g-east", "g-nowhere"]),
        {"name": "v1", "role": "volunteer", "scope": {"communities": ["c-east"], "buildings": ["b-west"]}},
        {"name": "h1", "role": "handler", "scope": {"company": "acme"}},
        {"name": "h2", "role": "handler", "scope": {"communities": ["c-west"], "company": "acme"}},
    ],
)
def test_a_community_admin_grants_nothing_outside_their_communities(
    east: tuple[Client, dict[str, str]], user: dict[str, Any]
) -> None:
    client, admin = east
    for path, body in (
        ("/v1/admin/users", user),
        ("/v1/admin/devices", {"name": "phone", "user": user}),
        ("/v1/admin/enrolment-codes", {"user": user}),
    ):
        reply = client.post(path, json=body, headers=admin)
        assert reply.status_code == 403, (path, reply.text)
    users = {u["name"] for u in client.get("/v1/admin/users", headers=admin).json()}
    assert user["name"] not in users


def test_a_community_admin_cannot_move_a_user_out_or_enrol_one_placed_outside(
    east: tuple[Client, dict[str, str]],
) -> None:
    client, admin = east
    made = client.post("/v1/admin/users", json=_worker("wang", grids=["g-east"]), headers=admin)
    assert made.status_code == 201, made.text
    moved = client.patch(
        f"/v1/admin/users/{made.json()['id']}",
        json={"role": "grid_worker", "scope": {"communities": ["c-east"], "grids": ["g-west"]}},
        headers=admin,
    )
    assert moved.status_code == 403
    district = bearer(sign_in(client, "district"))
    # A district admin may place a user of c-east in a grid of c-west; the east admin then may
    # not mint tokens for that user.
    odd = client.post("/v1/admin/users", json=_worker("zhao", grids=["g-west"]), headers=district).json()
    reply = client.post("/v1/admin/devices", json={"name": "p", "user_id": odd["id"]}, headers=admin)
    assert reply.status_code == 403
    assert (
        client.post(
            "/v1/admin/devices", json={"name": "p", "user_id": odd["id"]}, headers=district
        ).status_code
        == 201
    )


def test_inside_grants_work_and_a_handler_reads_its_company_in_its_communities_only(
    east: tuple[Client, dict[str, str]],
) -> None:
    client, admin = east
    worker = client.post(
        "/v1/admin/devices",
        json={"name": "p", "user": _worker("li", grids=["g-east"], buildings=["b-east"])},
        headers=admin,
    )
    assert worker.status_code == 201, worker.text
    handler = {
        "name": "acme-east",
        "role": "handler",
        "scope": {"communities": ["c-east"], "company": "acme"},
    }
    enrolled = client.post("/v1/admin/devices", json={"name": "acme phone", "user": handler}, headers=admin)
    assert enrolled.status_code == 201, enrolled.text
    phone = bearer(enrolled.json()["token"])
    pulled = client.get("/v1/sync/pull", headers=phone).json()
    assert {c["record_id"] for c in pulled["changes"]} == {"q-east"}
    assert client.get("/v1/records/requests/q-west", headers=phone).status_code == 404
    assert client.get("/v1/records/requests/q-east", headers=phone).status_code == 200


def test_device_tokens_never_manage_users_whatever_their_role(
    east: tuple[Client, dict[str, str]], enroll: Callable[[str], str]
) -> None:
    client, _ = east
    district = bearer(sign_in(client, "district"))
    admin_phone = client.post(
        "/v1/admin/devices",
        json={"name": "boss phone", "user": {"name": "boss", "role": "district_admin"}},
        headers=district,
    ).json()
    for token in (admin_phone["token"], enroll("tool")):
        headers = bearer(token)
        assert client.get("/v1/sync/pull", headers=headers).status_code == 200
        for method, path, body in (
            ("POST", "/v1/admin/users", {"name": "x", "role": "district_admin"}),
            ("POST", "/v1/admin/devices", {"name": "x", "user": {"name": "y", "role": "district_admin"}}),
            ("POST", "/v1/admin/enrolment-codes", {"user": {"name": "z", "role": "district_admin"}}),
            ("GET", "/v1/admin/users", None),
        ):
            reply = client.request(method, path, json=body, headers=headers)
            assert reply.status_code == 403, (path, reply.text)


async def _enroll_without_role(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await AccountStore(engine).enroll_device(None, "tool")
    finally:
        await engine.dispose()


def test_enrolment_must_name_a_role(settings: Settings) -> None:
    with pytest.raises(GridsyncError, match="role"):
        asyncio.run(_enroll_without_role(settings))
    gridsync = [
        sys.executable,
        "-m",
        "server.cli",
        "device",
        "enroll",
        "--database-url",
        settings.database_url,
    ]
    refused = subprocess.run([*gridsync, "--name", "tool"], capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert all(role in refused.stderr for role in ROLES)
    named = subprocess.run(
        [*gridsync, "--name", "tool", "--role", "volunteer", "--community", "c1", "--building", "b1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(named.stdout)["role"] == "volunteer"
