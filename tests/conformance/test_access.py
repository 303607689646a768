"""Users, admin sign-in, device enrolment and revocation, rate limits and the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from litestar.testing import TestClient

from server.app import create_app
from server.settings import Settings
from tests.factories import PASSWORD, bearer, create_user, seed_places, sign_in

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def app_client(settings: Settings) -> Iterator[Client]:
    create_user(settings, "district", "district_admin")
    create_user(settings, "east-admin", "community_admin", ("c-east",))
    with TestClient(create_app(settings)) as client:
        yield client


def test_admin_enrols_a_phone_that_works_until_revoked(app_client: Client) -> None:
    admin = bearer(sign_in(app_client, "district"))
    body = {
        "name": "Li's phone",
        "user": {"name": "li", "role": "grid_worker", "scope": {"communities": ["c-east"], "grids": ["g-3"]}},
    }
    reply = app_client.post("/v1/admin/devices", json=body, headers=admin)
    assert reply.status_code == 201, reply.text
    enrolled = reply.json()
    assert enrolled["user"]["grids"] == ["g-3"]
    phone = bearer(enrolled["token"])
    assert app_client.get("/v1/sync/pull", headers=phone).status_code == 200
    assert app_client.get("/v1/admin/devices", headers=phone).status_code == 403
    assert app_client.delete(f"/v1/admin/devices/{enrolled['device_id']}", headers=admin).status_code == 204
    revoked = app_client.get("/v1/sync/pull", headers=phone)
    assert (revoked.status_code, revoked.json()["code"]) == (401, "invalid_token")
    actions = [e["action"] for e in app_client.get("/v1/admin/audit", headers=admin).json()["entries"]]
    assert actions[:4] == ["device_revoke", "device_enroll", "user_create", "sign_in"]
    entry = app_client.get("/v1/admin/audit", params={"action": "device_enroll"}, headers=admin).json()
    assert entry["entries"][0]["actor_name"] == "district"
    assert entry["entries"][0]["address"]
    assert entry["entries"][0]["detail"]["grids"] == ["g-3"]


def test_community_admins_stay_in_their_community(app_client: Client, enroll: Callable[[str], str]) -> None:
    east_grid = [("communities", "c-east", {"name": "East"}), ("grids", "g-1", {"community_id": "c-east"})]
    seed_places(app_client, enroll("seeder"), east_grid)
    east = bearer(sign_in(app_client, "east-admin"))
    own = {"name": "wang", "role": "grid_worker", "scope": {"communities": ["c-east"], "grids": ["g-1"]}}
    other = {"name": "zhao", "role": "grid_worker", "scope": {"communities": ["c-west"], "grids": ["g-9"]}}
    escalate = {"name": "boss", "role": "district_admin", "scope": {"communities": ["c-east"]}}
    assert app_client.post("/v1/admin/users", json=own, headers=east).status_code == 201
    for body in (other, escalate):
        reply = app_client.post("/v1/admin/users", json=body, headers=east)
        assert reply.status_code == 403
        assert reply.headers["content-type"].startswith("application/problem+json")
    district = bearer(sign_in(app_client, "district"))
    assert app_client.post("/v1/admin/users", json=other, headers=district).status_code == 201
    visible = {u["name"] for u in app_client.get("/v1/admin/users", headers=east).json()}
    assert visible == {"wang", "east-admin"}
    audit = app_client.get("/v1/admin/audit", headers=east).json()["entries"]
    assert {e["target"] for e in audit if e["action"] == "user_create"} <= {
        u["id"] for u in app_client.get("/v1/admin/users", headers=east).json()
    }


def test_role_change_is_audited(app_client: Client) -> None:
    admin = bearer(sign_in(app_client, "district"))
    made = app_client.post(
        "/v1/admin/users",
        json={
            "name": "chen",
            "role": "volunteer",
            "scope": {"communities": ["c-east"], "buildings": ["b-7"]},
        },
        headers=admin,
    ).json()
    changed = app_client.patch(
        f"/v1/admin/users/{made['id']}",
        json={"role": "building_leader", "scope": {"communities": ["c-east"], "buildings": ["b-7"]}},
        headers=admin,
    )
    assert changed.json()["role"] == "building_leader"
    entry = app_client.get("/v1/admin/audit", params={"action": "role_change"}, headers=admin).json()[
        "entries"
    ][0]
    assert entry["detail"]["before"]["role"] == "volunteer"
    assert entry["detail"]["after"]["role"] == "building_leader"


def test_bad_admin_input_is_a_clear_4xx(app_client: Client) -> None:
    admin = bearer(sign_in(app_client, "district"))
    cases = [
        ({"name": "x", "role": "mayor"}, 400),
        ({"name": "", "role": "grid_worker"}, 400),
        ({"name": "district", "role": "grid_worker"}, 409),
        ({"name": "y", "role": "grid_worker", "colour": "red"}, 400),
    ]
    for body, status in cases:
        reply = app_client.post("/v1/admin/users", json=body, headers=admin)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["detail"]
    assert app_client.post("/v1/admin/devices", json={"name": "p"}, headers=admin).status_code == 400
    assert app_client.delete("/v1/admin/devices/nope", headers=admin).status_code == 404


def test_wrong_passwords_slow_the_account_down(app_client: Client) -> None:
    for _ in range(5):
        reply = app_client.post("/v1/admin/login", json={"name": "district", "password": "wrong-wrong"})
        assert (reply.status_code, reply.json()["code"]) == (401, "bad_credentials")
    locked = app_client.post("/v1/admin/login", json={"name": "district", "password": PASSWORD})
    assert (locked.status_code, locked.json()["code"]) == (429, "sign_in_slowed")
    assert int(locked.headers["retry-after"]) >= 1


def test_sign_in_cookie_serves_the_admin_api_and_logout_ends_it(app_client: Client) -> None:
    reply = app_client.post("/v1/admin/login", json={"name": "district", "password": PASSWORD})
    assert "gridsync_session" in reply.cookies
    assert app_client.get("/v1/admin/me").json()["name"] == "district"
    assert app_client.post("/v1/admin/logout").status_code == 204
    app_client.cookies.set("gridsync_session", reply.json()["token"])
    assert app_client.get("/v1/admin/me").status_code == 401


def test_rate_limits_answer_429_with_retry_after(settings: Settings) -> None:
    create_user(settings, "district", "district_admin")
    tight = replace(settings, device_requests_per_minute=3, sign_ins_per_minute=2)
    with TestClient(create_app(tight)) as client:
        token = sign_in(client, "district")
        sign_in(client, "district")
        limited = client.post("/v1/admin/login", json={"name": "district", "password": PASSWORD})
        assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        codes = [client.get("/v1/sync/pull", headers=bearer(token)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]


def test_a_device_limit_counts_every_route_in_one_window(
    settings: Settings, enroll: Callable[[str], str]
) -> None:
    # Litestar makes a middleware for each route: the window is one per device all the same.
    token = enroll("counted-phone")
    tight = replace(settings, device_requests_per_minute=4)
    with TestClient(create_app(tight)) as client:
        client.headers["authorization"] = f"Bearer {token}"
        replies = [
            client.get("/v1/sync/pull"),
            client.post("/v1/sync/push", json={"replica_id": "p1", "changes": []}),
            client.get("/v1/sync/snapshot"),
            client.get("/v1/sync/pull"),
            client.post("/v1/sync/push", json={"replica_id": "p1", "changes": []}),
        ]
        assert [reply.status_code for reply in replies] == [200, 200, 200, 200, 429]
        assert [reply.headers["ratelimit-remaining"] for reply in replies] == ["3", "2", "1", "0", "0"]
        assert replies[0].headers["ratelimit-policy"] == "4; w=60"
        assert 1 <= int(replies[-1].headers["retry-after"]) <= 60
        # Another device has its own window.
        other = enroll("other-phone")
        assert client.get("/v1/sync/pull", headers=bearer(other)).status_code == 200


def test_every_endpoint_declares_its_guard_in_openapi(app_client: Client) -> None:
    document = app_client.get("/schema/openapi.json").json()
    open_paths = {
        "/health",
        "/health/live",
        "/health/ready",
        "/v1/protocol/schema",
        "/v1/admin/login",
        "/v1/enrol",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in open_paths:
                continue
            assert operation.get("security"), path


def test_cli_enrols_devices_and_creates_admins(database_url: str) -> None:
    gridsync = [sys.executable, "-m", "server.cli"]
    made = subprocess.run(
        [*gridsync, "admin", "create", "--name", "root", "--password-stdin", "--database-url", database_url],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(made.stdout)["role"] == "district_admin"
    out = subprocess.run(
        [
            *gridsync,
            "device",
            "enroll",
            "--name",
            "p1",
            "--user",
            "li",
            "--role",
            "grid_worker",
            "--community",
            "c1",
            "--grid",
            "g1",
            "--database-url",
            database_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    enrolled = json.loads(out.stdout)
    assert set(enrolled) >= {"device_id", "token"}
    assert enrolled["role"] == "grid_worker"
    tool = subprocess.run(
        [
            *gridsync,
            "device",
            "enroll",
            "--name",
            "tool",
            "--role",
            "district_admin",
            "--database-url",
            database_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(tool.stdout)["token"].startswith("gs_")
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        assert client.get("/v1/sync/pull", headers=bearer(enrolled["token"])).status_code == 200
        admin = bearer(sign_in(client, "root", PASSWORD))
        entries = client.get("/v1/admin/audit", params={"action": "device_enroll"}, headers=admin).json()
        assert {e["actor_name"] for e in entries["entries"]} == {"gridsync CLI"}
