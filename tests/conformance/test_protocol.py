"""Protocol v1 over HTTP, on every storage backend."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from schemas.protocol import Change, ExchangeResponse
from server.app import create_app
from server.settings import Settings
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
    again = add("tags", "disabled")
    body = msgspec.msgpack.encode({"replica_id": "phone-m", "changes": [again]})
    reply = client.post(
        "/v1/sync/exchange", params={"since": pulled["cursor"]}, content=body, headers=headers
    )
    assert reply.headers["content-type"].startswith("application/msgpack")
    answer = msgspec.msgpack.decode(reply.content, type=ExchangeResponse)
    assert answer.push.results[0].status == "applied"
    assert [(c.id, c.value) for c in answer.pull.changes] == [(again.id, "disabled")]


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
    assert {"deviceToken": []} in document["paths"]["/v1/sync/exchange"]["post"]["security"]
    schema = client.get("/v1/protocol/schema").json()
    assert {"PushRequest", "ExchangeResponse"} <= set(schema["$defs"])


def exchange(client: Client, changes: list[dict[str, Any]], **params: Any) -> Any:
    reply = client.post(
        "/v1/sync/exchange", params=params, json={"replica_id": "phone-a", "changes": changes}
    )
    assert reply.status_code == 200, reply.text
    return msgspec.json.decode(reply.content, type=ExchangeResponse)


def test_an_exchange_pushes_then_pulls_the_page_after_the_cursor(client: Client) -> None:
    push(client, wire(set_("notes", "before")))
    _, cursor = pull_all(client)
    mine = [set_("phone", "1", record="h2"), set_("members_count", -1)]
    answer = exchange(client, wire(*mine), since=cursor, limit=10)
    assert [(r.status, r.code) for r in answer.push.results] == [
        ("applied", None),
        ("rejected", "invalid_value"),
    ]
    # The page holds the push just applied, exactly as a pull after it would.
    assert [c.id for c in answer.pull.changes] == [mine[0].id]
    assert not answer.pull.more
    tail, _ = pull_all(client, since=cursor)
    assert [msgspec.to_builtins(c) for c in answer.pull.changes] == tail
    assert pull_all(client, since=answer.pull.cursor)[0] == []
    # Nothing to push: the exchange is a pull.
    later = set_("notes", "later", record="h3")
    push(client, wire(later))
    again = exchange(client, [], since=answer.pull.cursor)
    assert again.push.results == []
    assert [c.id for c in again.pull.changes] == [later.id]


def test_an_exchange_pages_like_a_pull_whole_or_streamed_and_gzipped(client: Client) -> None:
    sent = [set_("notes", f"n{i}", record=f"h{i}") for i in range(700)]
    answer = exchange(client, wire(*sent), limit=600)
    assert len(answer.pull.changes) == 600
    assert answer.pull.more
    reply = client.post(
        "/v1/sync/exchange",
        params={"since": answer.pull.cursor},
        json={"replica_id": "phone-a", "changes": []},
        headers={"accept-encoding": "gzip"},
    )
    assert reply.headers["content-encoding"] == "gzip"
    rest = msgspec.json.decode(reply.content, type=ExchangeResponse)
    assert [c.id for c in answer.pull.changes + rest.pull.changes] == [c.id for c in sent]


@pytest.mark.parametrize("query", ["limit=0", "limit=999999", "limit=abc", "since=garbage"])
def test_an_exchange_with_bad_pull_parameters_applies_nothing(client: Client, query: str) -> None:
    body = {"replica_id": "phone-a", "changes": wire(set_("notes", "x"))}
    reply = client.post(f"/v1/sync/exchange?{query}", json=body)
    assert reply.status_code == 400
    assert reply.json()["detail"]
    assert pull_all(client)[0] == []


def test_an_exchange_from_another_history_keeps_its_push_and_asks_for_a_resync(client: Client) -> None:
    change = set_("notes", "x")
    body = {"replica_id": "phone-a", "changes": wire(change)}
    reply = client.post("/v1/sync/exchange", params={"since": "otherepoch.1"}, json=body)
    assert (reply.status_code, reply.json()["code"]) == (409, "resync_required")
    # The push was applied before the cursor was judged: offered again, it is a duplicate.
    assert push(client, wire(change))["results"][0]["status"] == "duplicate"


def test_the_reference_client_syncs_a_little_work_in_one_round_trip(client: Client, phone: Any) -> None:
    other = phone("other")
    other.set("households", "h1", "notes", "from the other phone")
    other.sync(client)
    worker = phone("worker")
    worker.set("households", "h2", "notes", "typed offline")
    sent: list[str] = []
    client.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    report = worker.sync(client)
    assert sent == ["/v1/sync/exchange"]
    assert (report.pushed, report.pulled) == (1, 1)
    assert worker.record("households", "h1").fields["notes"] == "from the other phone"


class _OlderServer(TestClient):  # type: ignore[type-arg]
    """The app as a server older than the exchange: no such route."""

    def post(self, url: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        if str(url).startswith("/v1/sync/exchange"):
            return httpx.Response(404, json={"status": 404, "title": "Not Found", "detail": "Not Found"})
        return super().post(url, *args, **kwargs)


def test_the_reference_client_pushes_then_pulls_when_the_exchange_is_missing(
    client: Client, settings: Settings, phone: Any
) -> None:
    others = phone("others")
    for n in range(3):
        others.set("households", f"h{n}", "notes", f"from another phone {n}")
    others.sync(client)
    replica = phone("on-an-older-server")
    replica.set("households", "h9", "notes", "made offline")
    with _OlderServer(create_app(settings)) as older:
        older.headers["authorization"] = f"Bearer {replica.token}"
        report = replica.sync(older, pull_limit=2)
    assert (report.pushed, report.rejected) == (1, [])
    assert replica.pending() == []
    assert client.get("/v1/records/households/h9").json()["fields"]["notes"] == "made offline"
    assert {r.id for r in replica.records("households")} == {"h0", "h1", "h2", "h9"}


def test_only_a_missing_route_answers_404_on_the_sync_paths(client: Client) -> None:
    """What the reference client's fallback relies on (docs/protocol.md, "Exchange")."""
    anonymous = {"authorization": ""}
    assert client.post("/v1/sync/exchange", json={}, headers=anonymous).status_code == 401
    bad = client.post("/v1/sync/exchange", params={"since": "x.y"}, json={"replica_id": "p", "changes": []})
    assert bad.status_code == 400
    missing = client.post("/v1/sync/exchange-of-tomorrow", json={}, headers=anonymous)
    assert missing.status_code == 404
    assert "code" not in missing.json()
