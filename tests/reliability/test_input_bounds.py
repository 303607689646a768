"""Never a 500 for what a client sends: bodies nested 100,000 deep, times at the ends of the
calendar, values with a trailing newline; and another community's conflict ids answer 404 like
unknown ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from server.app import create_app
from server.settings import Settings
from tests.factories import bearer, change_id, create_user, hlc, seed_places, sign_in

Client = TestClient  # type: ignore[type-arg]
DEPTH = 100_000
DEEP_BODIES = {
    "arrays": b"[" * DEPTH + b"]" * DEPTH,
    "objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "inside a field": b'{"name":"x","role":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
}


@pytest.fixture
def app(settings: Settings, enroll: Callable[[str], str]) -> Iterator[tuple[Client, dict[str, str], str]]:
    """The app, a district admin's sign-in headers and a district-wide device token."""
    create_user(settings, "district", "district_admin")
    create_user(settings, "west-admin", "community_admin", ("c2",))
    device = enroll("tool")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, bearer(sign_in(client, "district")), device


def _body_routes(client: Client) -> list[tuple[str, str]]:
    fill = {"{collection:str}": "households", "{record_id:str}": "h1", "{sha256:str}": "0" * 64}
    found = []
    for route in client.app.routes:
        for method in sorted(getattr(route, "methods", set()) & {"POST", "PUT", "PATCH"}):
            path = route.path
            for placeholder, value in fill.items():
                path = path.replace(placeholder, value)
            found.append((method, path.replace("{", "").replace(":str}", "")))
    return found


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
def test_deeply_nested_bodies_are_a_400_on_every_route(
    app: tuple[Client, dict[str, str], str], shape: str
) -> None:
    client, admin, device = app
    routes = _body_routes(client)
    assert ("POST", "/v1/sync/push") in routes
    assert ("POST", "/v1/admin/login") in routes
    for method, path in routes:
        for media_type in ("application/json", "application/msgpack"):
            body = DEEP_BODIES[shape]
            if media_type.endswith("msgpack"):
                body = b"\x91" * DEPTH + b"\xc0"
            headers = {**(admin if "admin" in path else {"authorization": f"Bearer {device}"})}
            reply = client.request(
                method, path, content=body, headers={**headers, "content-type": media_type}
            )
            assert reply.status_code < 500, (method, path, media_type, reply.text[:200])


def test_a_deep_value_in_a_push_is_a_400_that_applies_nothing(
    app: tuple[Client, dict[str, str], str],
) -> None:
    # The decoder cannot even find where such a change ends, so the batch is refused whole.
    client, _, device = app
    auth = {"authorization": f"Bearer {device}"}
    good = {"op": "set", "id": change_id(), "collection": "households", "record_id": "h1"}
    good |= {"hlc": hlc(1, "deep"), "field": "notes", "value": "fine", "pred": []}
    bad = {**good, "id": change_id(), "hlc": hlc(2, "deep"), "field": "address"}
    encoded = msgspec.json.encode({"replica_id": "deep", "protocol": 1, "changes": [good, bad]})
    body = encoded.replace(b'"address","value":"fine"', b'"address","value":' + DEEP_BODIES["arrays"])
    reply = client.post("/v1/sync/push", content=body, headers=auth)
    assert (reply.status_code, reply.json()["code"]) == (400, "malformed_body"), reply.text[:300]
    assert "nested too deeply" in reply.json()["detail"]
    assert client.get("/v1/records/households/h1", headers=auth).status_code == 404
    # Nested a few hundred deep, a value is judged on its own like any other.
    shallow = encoded.replace(b'"address","value":"fine"', b'"address","value":' + b"[" * 300 + b"]" * 300)
    reply = client.post("/v1/sync/push", content=shallow, headers=auth)
    assert [r["status"] for r in reply.json()["results"]] == ["applied", "rejected"]


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59+14:00",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-12:00",
    ],
)
def test_times_at_the_ends_of_the_calendar_are_a_400(
    app: tuple[Client, dict[str, str], str], at: str
) -> None:
    client, _, device = app
    for path in ("/v1/reports/summary", "/v1/checkins/no-signal"):
        reply = client.get(path, params={"at": at}, headers={"authorization": f"Bearer {device}"})
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_time"), (path, reply.text)


def _set(
    record: str, field: str, value: Any, *, collection: str = "households", replica: str = "nl"
) -> dict[str, Any]:
    return {
        "op": "set",
        "id": change_id(),
        "collection": collection,
        "record_id": record,
        "hlc": hlc(10, replica),
        "field": field,
        "value": value,
        "pred": [],
    }


def test_a_trailing_newline_never_passes_a_pattern(app: tuple[Client, dict[str, str], str]) -> None:
    client, _, device = app
    auth = {"authorization": f"Bearer {device}"}
    changes = [
        _set("r1", "id_number", "11010119900101123X\n", collection="residents"),
        _set("h1", "phone", "13800000000\n"),
        _set("h1", "building_id", "b1\n"),
        _set("h1\n", "notes", "x"),
        {**_set("h1", "notes", "x"), "hlc": hlc(11, "nl") + "\n"},
        {**_set("h1", "notes", "x"), "id": change_id() + "\n"},
    ]
    reply = client.post(
        "/v1/sync/push", json={"replica_id": "nl", "protocol": 1, "changes": changes}, headers=auth
    )
    assert reply.status_code == 200, reply.text
    assert [r["status"] for r in reply.json()["results"]] == ["rejected"] * len(changes)
    tagged = _set("h1", "tags", "elderly-alone\n") | {"op": "add"}
    reply = client.post(
        "/v1/sync/push", json={"replica_id": "nl", "protocol": 1, "changes": [tagged]}, headers=auth
    )
    assert [r["status"] for r in reply.json()["results"]] == ["rejected"]
    reply = client.post(
        "/v1/sync/push", json={"replica_id": "nl\n", "protocol": 1, "changes": []}, headers=auth
    )
    assert (reply.status_code, reply.json()["code"]) == (400, "bad_replica_id")


def test_another_communitys_conflict_is_not_found_like_an_unknown_one(
    app: tuple[Client, dict[str, str], str],
) -> None:
    client, admin, device = app
    seed_places(
        client,
        device,
        [
            ("communities", "c1", {"name": "East"}),
            ("communities", "c2", {"name": "West"}),
            ("grids", "g1", {"community_id": "c1"}),
            ("buildings", "b1", {"grid_id": "g1"}),
            ("households", "h-secret", {"building_id": "b1", "address": "1-101"}),
        ],
    )
    auth = {"authorization": f"Bearer {device}"}
    for replica, phone in (("phone-a", "13800000001"), ("phone-b", "13800000002")):
        change = _set("h-secret", "phone", phone, replica=replica)
        pushed = client.post(
            "/v1/sync/push", json={"replica_id": replica, "protocol": 1, "changes": [change]}, headers=auth
        )
        assert pushed.json()["results"][0]["status"] == "applied", pushed.text
    (conflict,) = client.get("/v1/admin/conflicts", headers=admin).json()["conflicts"]
    west = bearer(sign_in(client, "west-admin"))
    answers = []
    for conflict_id in (conflict["id"], "00000000-0000-4000-8000-000000000000"):
        detail = client.get(f"/v1/admin/conflicts/{conflict_id}", headers=west)
        resolve = client.post(
            f"/v1/admin/conflicts/{conflict_id}/resolve", json={"seen_heads": [], "fields": {}}, headers=west
        )
        # The client's cookie is the last sign-in's: the west admin's.
        page = client.get(f"/admin/conflicts/{conflict_id}")
        for reply in (detail, resolve, page):
            assert reply.status_code == 404, reply.text
            assert "h-secret" not in reply.text
        answers.append((detail.json()["code"], resolve.json()["code"]))
    assert answers[0] == answers[1] == ("not_found", "not_found")
