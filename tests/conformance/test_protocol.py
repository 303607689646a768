"""Protocol v1 over HTTP, on every storage backend."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from schemas.protocol import Change
from sync.hlc import format_hlc
from tests.factories import add, change_id, delete, set_

Client = TestClient  # type: ignore[type-arg]


def wire(*changes: Change) -> list[dict[str, Any]]:
    return [msgspec.json.decode(msgspec.json.encode(c)) for c in changes]


def push(client: Client, changes: list[dict[str, Any]], replica: str = "phone-a") -> Any:
    reply = client.post("/v1/sync/push", json={"replica_id": replica, "changes": changes})
    assert reply.status_code == 200, reply.text
    return reply.json()


def pull_all(client: Client, since: str | None = None, limit: int = 1000) -> tuple[list[dict[str, Any]], str]:
    got: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": limit}
        if since:
            params["since"] = since
        page = client.get("/v1/sync/pull", params=params).json()
        got += page["changes"]
        since = page["cursor"]
        if not page["more"]:
            return got, since


def test_push_applies_each_change_on_its_own(client: Client) -> None:
    good = set_("phone", "13800000000")
    body = wire(good, set_("members_count", -2), set_("colour", "red"))
    body.append({"op": "set", "id": change_id()})  # structurally broken
    body.append(wire(set_("notes", "fine"))[0])
    results = push(client, body)["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "rejected", "rejected", "applied"]
    assert [r["code"] for r in results[1:4]] == ["invalid_value", "unknown_field", "malformed_change"]
    assert all(r["message"] for r in results[1:4])
    assert results[3]["id"] == body[3]["id"]
    record = client.get("/v1/records/households/h1").json()
    assert record["fields"] == {"phone": "13800000000", "notes": "fine"}


def test_same_id_twice_is_a_duplicate_and_a_changed_body_is_refused(client: Client) -> None:
    change = set_("phone", "1")
    assert push(client, wire(change))["results"][0]["status"] == "applied"
    again = push(client, wire(change, change))["results"]
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    forged = wire(change)[0] | {"value": "2"}
    reused = push(client, [forged])["results"][0]
    assert (reused["status"], reused["code"]) == ("rejected", "id_reused")
    changes, _ = pull_all(client)
    assert [c["id"] for c in changes] == [change.id]


def test_pull_pages_every_change_exactly_once_in_order(client: Client) -> None:
    sent = [set_("notes", f"n{i}", record=f"h{i % 7}") for i in range(53)]
    for start in range(0, 53, 10):
        push(client, wire(*sent[start : start + 10]))
    got, cursor = pull_all(client, limit=6)
    assert [c["id"] for c in got] == [c.id for c in sent]
    assert [c["seq"] for c in got] == sorted(c["seq"] for c in got)
    assert got[0] == {**wire(sent[0])[0], "seq": got[0]["seq"]}
    later = set_("notes", "later")
    push(client, wire(later))
    tail, _ = pull_all(client, since=cursor)
    assert [c["id"] for c in tail] == [later.id]


def test_msgpack_in_and_out(client: Client) -> None:
    change = add("tags", "elderly-alone")
    body = msgspec.msgpack.encode({"replica_id": "phone-m", "changes": [change]})
    headers = {"content-type": "application/msgpack", "accept": "application/msgpack"}
    reply = client.post("/v1/sync/push", content=body, headers=headers)
    assert reply.headers["content-type"].startswith("application/msgpack")
    assert msgspec.msgpack.decode(reply.content)["results"][0]["status"] == "applied"
    pulled = msgspec.msgpack.decode(
        client.get("/v1/sync/pull", headers={"accept": "application/msgpack"}).content
    )
    assert pulled["changes"][0]["value"] == "elderly-alone"
    assert pulled["changes"][0]["pred"] == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"replica_id": "p", "changes": [', {"content-type": "application/json"}, 400, "malformed_body"),
        (b'{"changes": []}', {"content-type": "application/json"}, 400, "malformed_body"),
        (
            b'{"replica_id": "p", "changes": [], "protocol": 2}',
            {"content-type": "application/json"},
            400,
            "unsupported_protocol",
        ),
        (
            b'{"replica_id": "has spaces", "changes": []}',
            {"content-type": "application/json"},
            400,
            "bad_replica_id",
        ),
        (b"replica_id=p", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
def test_bad_requests_get_problem_details(
    client: Client, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    reply = client.post("/v1/sync/push", content=body, headers=headers)
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["detail"]


def test_oversized_batches_and_bodies_are_refused_whole(client: Client) -> None:
    many = wire(*[set_("notes", "x", record=f"h{i}") for i in range(2001)])
    reply = client.post("/v1/sync/push", json={"replica_id": "p", "changes": many})
    assert (reply.status_code, reply.json()["code"]) == (413, "batch_too_large")
    huge = b'{"replica_id": "p", "changes": [], "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    reply = client.post("/v1/sync/push", content=huge, headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert pull_all(client)[0] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=999999", "limit=abc", "since=garbage"])
def test_bad_pull_parameters_are_4xx(client: Client, query: str) -> None:
    reply = client.get(f"/v1/sync/pull?{query}")
    assert reply.status_code == 400
    assert reply.json()["detail"]


def test_cursor_from_another_history_asks_for_a_resync(client: Client) -> None:
    push(client, wire(set_("notes", "x")))
    for cursor in ("otherepoch.1", client.get("/v1/sync/pull").json()["cursor"].split(".")[0] + ".999"):
        reply = client.get("/v1/sync/pull", params={"since": cursor})
        assert (reply.status_code, reply.json()["code"]) == (409, "resync_required")


def test_tokens_are_required(client: Client) -> None:
    assert client.get("/v1/sync/pull", headers={"authorization": ""}).json()["code"] == "missing_token"
    reply = client.get("/v1/sync/pull", headers={"authorization": "Bearer nope"})
    assert (reply.status_code, reply.json()["code"]) == (401, "invalid_token")
    assert client.get("/health", headers={"authorization": ""}).status_code == 200


def test_records_endpoint_errors(client: Client) -> None:
    assert client.get("/v1/records/cats/x").json()["code"] == "unknown_collection"
    reply = client.get("/v1/records/households/nobody")
    assert (reply.status_code, reply.json()["code"]) == (404, "not_found")


def test_a_phone_clock_far_ahead_is_accepted_flagged_and_does_not_move_the_server_clock(
    client: Client,
) -> None:
    future = format_hlc(time.time_ns() // 1_000_000 + 3 * 24 * 3600 * 1000, 0, "bad-phone")
    change = set_("notes", "written on a phone set to next week")
    change = msgspec.structs.replace(change, hlc=future)
    reply = push(client, wire(change))
    assert reply["results"][0]["status"] == "applied"
    assert reply["results"][0]["code"] == "clock_ahead"
    assert reply["clock_skew_ms"] > 2 * 24 * 3600 * 1000
    assert reply["server_hlc"] < future
    assert client.get("/v1/records/households/h1").json()["fields"]["notes"].startswith("written")


def test_snapshot_pages_carry_one_pull_cursor(client: Client) -> None:
    for i in range(12):
        push(client, wire(set_("notes", f"v{i}", record=f"h{i:02d}")))
    first = client.get("/v1/sync/snapshot", params={"collection": "households", "limit": 5}).json()
    push(client, wire(set_("notes", "after the first page", record="h11")))
    pages = [first]
    while pages[-1]["more"]:
        pages.append(
            client.get("/v1/sync/snapshot", params={"cursor": pages[-1]["cursor"], "limit": 5}).json()
        )
    ids = [r["id"] for p in pages for r in p["records"]]
    assert ids == [f"h{i:02d}" for i in range(12)]
    assert {p["sync_cursor"] for p in pages} == {first["sync_cursor"]}
    tail, _ = pull_all(client, since=first["sync_cursor"])
    assert [c["value"] for c in tail] == ["after the first page"]
    assert client.get("/v1/sync/snapshot", params={"collection": "cats"}).status_code == 404


def test_delete_then_read(client: Client) -> None:
    first = set_("phone", "1")
    push(client, wire(first, delete(pred=(first.id,))))
    record = client.get("/v1/records/households/h1").json()
    assert record == {"collection": "households", "id": "h1", "deleted": True, "fields": {}, "conflicts": {}}


def test_openapi_declares_the_bearer_scheme(client: Client) -> None:
    document = client.get("/schema/openapi.json").json()
    assert document["components"]["securitySchemes"]["deviceToken"]["scheme"] == "bearer"
    assert {"deviceToken": []} in document["paths"]["/v1/sync/push"]["post"]["security"]
    schema = client.get("/v1/protocol/schema").json()
    assert "PushRequest" in schema["$defs"]
