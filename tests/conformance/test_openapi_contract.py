"""The OpenAPI document (`GET /schema/openapi.json`) is true to every endpoint, on each backend.

Every operation is driven with good and bad input; each real answer is checked against the
document: its status is declared by the operation, its media type too, and its body validates
against the declared schema (JSON and MessagePack alike). A request body the server accepted
validates against the declared request body. Error answers are problem details with `code`."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from jsonschema import Draft202012Validator
from litestar.testing import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from schemas.codes import Code
from server.app import create_app
from server.settings import Settings
from tests.factories import PASSWORD, create_user, hlc, photo
from tests.reliability.harness import free_port

Client = TestClient  # type: ignore[type-arg]
DOCUMENT_URI = "urn:gridsync:openapi"
# A request that sends a body the document does not allow on purpose (a malformed change, which
# the push answers `rejected` while it applies the rest) says so with this header.
INVALID_BODY = "x-test-invalid-body"
PNG = photo("PNG", place=None)


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _media(headers: httpx.Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip()


def _decode(media: str, content: bytes) -> Any:
    if media.endswith("msgpack"):
        return msgspec.msgpack.decode(content)
    if media.startswith("text/"):
        return content.decode()
    return json.loads(content)


class Contract:
    """Checks each answer a client gets against the document, as the client gets it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.routes = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path, method)
            for path, operations in document["paths"].items()
            for method in operations
        ]
        self.answered: set[tuple[str, int]] = set()

    def _validate(self, instance: Any, *pointer: str) -> None:
        validator = Draft202012Validator(
            {"$ref": f"{DOCUMENT_URI}#/{_pointer(*pointer)}"}, registry=self.registry
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{'/'.join(pointer)}: {errors[0].message} at {list(errors[0].path)}"

    def _operation(self, request: httpx.Request) -> tuple[str, str] | None:
        for pattern, path, method in self.routes:
            if method == request.method.lower() and pattern.match(request.url.path):
                return path, method
        return None

    def check(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        found = self._operation(request)
        if found is None:
            assert request.url.path.startswith("/schema"), (
                f"{request.method} {request.url.path} is undocumented"
            )
            return
        path, method = found
        operation = self.document["paths"][path][method]
        status = response.status_code
        where = f"{operation['operationId']} answered {status}"
        if str(status) in operation["responses"]:
            declared = str(status)
        else:
            # Only server faults other than 503 may fall to `default`: every status a client
            # can cause, and 503, is declared by the operation itself.
            assert status >= 500, f"{where}, which it does not declare: {response.text}"
            assert status != 503, f"{where}, which it does not declare: {response.text}"
            declared = "default"
        content = operation["responses"][declared].get("content") or {}
        if not content:
            assert not response.content, f"{where} with a body it does not declare"
        else:
            media = _media(response.headers)
            key = media if media in content else "*/*"
            assert key in content, f"{where} as {media}, not one of {list(content)}"
            if key != "*/*":
                body = _decode(media, response.content)
                self._validate(body, "paths", path, method, "responses", declared, "content", key, "schema")
                if status >= 400:
                    assert media == "application/problem+json", where
                    assert body["code"] in set(Code), where
        valid_body = request.headers.get(INVALID_BODY) is None
        if 200 <= status < 300 and request.content and "requestBody" in operation and valid_body:
            declared_bodies = operation["requestBody"]["content"]
            media = _media(request.headers)
            assert media in declared_bodies or "*/*" in declared_bodies, f"{where}: body {media} undeclared"
            if media in declared_bodies:
                body = _decode(media, request.content)
                self._validate(body, "paths", path, method, "requestBody", "content", media, "schema")
        self.answered.add((operation["operationId"], status))

    def watch(self, client: Client) -> Client:
        client.event_hooks["response"] = [self.check]
        return client


def _change(
    field: str, value: Any, *, record: str = "h1", collection: str = "households", **extra: Any
) -> Any:
    return {
        "id": str(uuid.uuid4()),
        "collection": collection,
        "record_id": record,
        "hlc": hlc(extra.pop("at", 1), extra.pop("replica", "r1")),
        "op": "set",
        "field": field,
        "value": value,
        "pred": extra.pop("pred", []),
        **extra,
    }


def _push(client: Client, changes: list[Any], replica: str = "phone-a") -> dict[str, Any]:
    reply = client.post("/v1/sync/push", json={"replica_id": replica, "changes": changes})
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


@pytest.fixture
def contract_settings(database_url: str) -> Settings:
    """Small limits, so that every 413 can be reached with small bodies; event streams of a second."""
    return Settings(
        database_url=database_url,
        max_changes_per_push=20,
        max_attachment_bytes=1024,
        event_stream_seconds=1,
        event_heartbeat_seconds=1,
    )


@pytest.fixture
def server(contract_settings: Settings, enroll: Callable[[str], str]) -> Iterator[tuple[Client, Contract]]:
    create_user(contract_settings, "district", "district_admin")
    token = enroll("contract-phone")
    with TestClient(create_app(contract_settings)) as client:
        contract = Contract(client.get("/schema/openapi.json").json())
        client.headers["authorization"] = f"Bearer {token}"
        yield contract.watch(client), contract


def _drive_sync(client: Client) -> None:
    base = _change("phone", "1")
    changes = [
        base,
        _change("members_count", -1),
        _change("household_id", "h1", record="r1", collection="residents"),
    ]
    pushed = _push(client, changes)
    assert [r["status"] for r in pushed["results"]] == ["applied", "rejected", "applied"]
    malformed = {"replica_id": "phone-a", "changes": [{"id": "not a change"}, _change("notes", "kept")]}
    reply = client.post("/v1/sync/push", json=malformed, headers={INVALID_BODY: "1"})
    assert [r["status"] for r in reply.json()["results"]] == ["rejected", "applied"]
    packed = msgspec.msgpack.encode({"replica_id": "phone-a", "changes": [_change("notes", "packed")]})
    headers = {"content-type": "application/msgpack", "accept": "application/msgpack"}
    assert client.post("/v1/sync/push", content=packed, headers=headers).status_code == 200
    bad = [
        (b"not json", "application/json", 400),
        (b'{"replica_id": "p", "changes": [], "protocol": 99}', "application/json", 400),
        (b"{}", "text/plain", 415),
    ]
    for body, media_type, status in bad:
        reply = client.post("/v1/sync/push", content=body, headers={"content-type": media_type})
        assert reply.status_code == status, reply.text
    too_many = [_change("notes", str(n)) for n in range(21)]
    assert client.post("/v1/sync/push", json={"replica_id": "p", "changes": too_many}).status_code == 413

    page = client.get("/v1/sync/pull").json()
    assert client.get("/v1/sync/pull", params={"since": page["cursor"], "limit": 10}).status_code == 200
    assert client.get("/v1/sync/pull", headers={"accept": "application/msgpack"}).status_code == 200
    assert client.get("/v1/sync/pull", params={"limit": 0}).status_code == 400
    assert client.get("/v1/sync/pull", params={"since": "otherepoch.1"}).status_code == 409

    exchange = {"replica_id": "phone-a", "changes": [_change("notes", "exchanged", pred=[])]}
    assert (
        client.post("/v1/sync/exchange", params={"since": page["cursor"]}, json=exchange).status_code == 200
    )
    assert client.post("/v1/sync/exchange", params={"limit": 0}, json=exchange).status_code == 400
    assert (
        client.post("/v1/sync/exchange", params={"since": "otherepoch.1"}, json=exchange).status_code == 409
    )

    first = client.get("/v1/sync/snapshot", params={"limit": 1}).json()
    assert first["more"]
    assert client.get("/v1/sync/snapshot", params={"cursor": first["cursor"]}).status_code == 200
    assert client.get("/v1/sync/snapshot", params={"collection": "households"}).status_code == 200
    assert client.get("/v1/sync/snapshot", params={"collection": "cats"}).status_code == 404
    assert client.get("/v1/sync/snapshot", params={"cursor": "garbage"}).status_code == 400

    assert client.get("/v1/me").json()["role"] == "district_admin"
    events = client.get("/v1/sync/events")
    assert events.status_code == 200
    assert "event: head" in events.text


def _drive_registry(client: Client) -> None:
    assert client.get("/v1/records/households/h1").status_code == 200
    assert client.get("/v1/records/households/nobody").status_code == 404
    assert client.get("/v1/records/households").status_code == 200
    assert client.get("/v1/records/households", params={"status": "open"}).status_code == 400
    assert client.get("/v1/records/cats").status_code == 404
    assert client.get("/v1/reports/summary").status_code == 200
    assert client.get("/v1/reports/summary", params={"at": "yesterday"}).status_code == 400
    assert client.get("/v1/checkins/no-signal").status_code == 200
    assert client.get("/v1/checkins/no-signal", params={"at": "9999-99-99"}).status_code == 400
    assert client.get("/v1/flags").status_code == 200
    assert client.get("/v1/flags", params={"kind": "weather"}).status_code == 400
    assert client.get("/v1/points/r1").status_code == 200
    assert client.get("/v1/points/nobody").status_code == 404
    # The resident's rating link: for a done request only.
    on_request = {"record": "q-rate", "collection": "requests"}
    submitted = _change("status", "submitted", **on_request, at=10)
    _push(client, [_change("household_id", "h1", **on_request), submitted])
    assert client.post("/v1/requests/q-rate/rating-link").status_code == 409
    moves, seen = [], submitted["id"]
    for at, step in enumerate(("dispatched", "accepted", "done"), 11):
        moves.append(_change("status", step, **on_request, at=at, pred=[seen]))
        seen = moves[-1]["id"]
    _push(client, moves)
    assert client.post("/v1/requests/q-rate/rating-link").status_code == 201


def _drive_attachments(client: Client) -> None:
    name = hashlib.sha256(PNG).hexdigest()
    png = {"content-type": "image/png"}
    assert client.put(f"/v1/attachments/{name}", content=PNG, headers=png).status_code == 201
    assert client.put(f"/v1/attachments/{name}", content=PNG, headers=png).status_code == 200
    assert client.put("/v1/attachments/not-a-hash", content=PNG, headers=png).status_code == 400
    assert client.put(f"/v1/attachments/{'0' * 64}", content=PNG, headers=png).status_code == 422
    big = b"x" * 2048
    assert client.put(f"/v1/attachments/{hashlib.sha256(big).hexdigest()}", content=big).status_code == 413
    # A photo is served to whoever may read a record that names it.
    assert client.get(f"/v1/attachments/{name}").status_code == 404
    _push(client, [_change("photos", name, record="z1", collection="hazards", op="add")])
    assert client.get(f"/v1/attachments/{name}").content == PNG
    assert client.get(f"/v1/attachments/{'1' * 64}").status_code == 404


def _drive_admin(client: Client) -> dict[str, str]:
    assert client.post("/v1/admin/login", json={"name": "district", "password": "wrong"}).status_code == 401
    signed_in = client.post("/v1/admin/login", json={"name": "district", "password": PASSWORD})
    admin = {"authorization": f"Bearer {signed_in.json()['token']}"}
    client.cookies.clear()
    assert client.get("/v1/admin/me", headers=admin).status_code == 200
    assert client.get("/v1/admin/users", headers=admin).status_code == 200
    new_user = {
        "name": "worker-1",
        "role": "grid_worker",
        "scope": {"communities": ["c1"], "grids": ["c1-g1"]},
    }
    made = client.post("/v1/admin/users", json=new_user, headers=admin)
    assert made.status_code == 201, made.text
    assert client.post("/v1/admin/users", json=new_user, headers=admin).status_code == 409
    assert (
        client.post(
            "/v1/admin/users", json={**new_user, "name": "x", "role": "king"}, headers=admin
        ).status_code
        == 400
    )
    change = {"role": "grid_worker", "scope": {"communities": ["c1"], "grids": ["c1-g2"]}}
    user_id = made.json()["id"]
    assert client.patch(f"/v1/admin/users/{user_id}", json=change, headers=admin).status_code == 200
    assert client.patch("/v1/admin/users/nobody", json=change, headers=admin).status_code == 404
    assert client.get("/v1/admin/devices", headers=admin).status_code == 200
    enrolled = client.post(
        "/v1/admin/devices", json={"name": "grid phone", "user_id": user_id}, headers=admin
    )
    assert enrolled.status_code == 201, enrolled.text
    worker = {"authorization": f"Bearer {enrolled.json()['token']}"}
    assert client.get("/v1/admin/me", headers=worker).status_code == 403
    assert client.get("/v1/sync/pull", headers=worker).status_code == 200
    assert (
        client.delete(f"/v1/admin/devices/{enrolled.json()['device_id']}", headers=admin).status_code == 204
    )
    assert client.get("/v1/sync/pull", headers=worker).status_code == 401
    assert client.delete("/v1/admin/devices/nobody", headers=admin).status_code == 404
    issued = client.post("/v1/admin/enrolment-codes", json={"user_id": user_id}, headers=admin)
    assert issued.status_code == 201, issued.text
    enrolment = {"code": issued.json()["code"], "name": "second grid phone"}
    assert client.post("/v1/enrol", json=enrolment, headers={"authorization": ""}).status_code == 201
    assert client.post("/v1/enrol", json=enrolment, headers={"authorization": ""}).status_code == 400
    assert client.post("/v1/admin/residents/r1/erase", headers=admin).status_code == 200
    assert client.post("/v1/admin/residents/nobody/erase", headers=admin).status_code == 404
    assert client.get("/v1/tasks/today").json()["tasks"] == []
    assert client.get("/v1/tasks/today", params={"day": "someday"}).status_code == 400
    assert client.post("/v1/tasks/rules", headers=admin).status_code == 200
    assert client.get("/v1/admin/audit", headers=admin).status_code == 200
    assert client.get("/v1/admin/audit", params={"limit": 0}, headers=admin).status_code == 400
    return admin


def _drive_conflicts(client: Client, admin: dict[str, str]) -> None:
    base = _change("phone", "100", record="h9", at=10)
    _push(client, [base])
    one = _change("phone", "200", record="h9", at=20, replica="ra", pred=[base["id"]])
    other = _change("phone", "300", record="h9", at=21, replica="rb", pred=[base["id"]])
    _push(client, [one], "phone-a")
    _push(client, [other], "phone-b")
    url = "/v1/admin/conflicts"
    listed = client.get(url, headers=admin).json()
    assert client.get(url, params={"limit": 0}, headers=admin).status_code == 400
    conflict_id = listed["conflicts"][0]["id"]
    detail = client.get(f"{url}/{conflict_id}", headers=admin).json()
    assert client.get(f"{url}/nobody", headers=admin).status_code == 404
    preview = client.post(f"{url}/bulk", json={"field": "phone", "rule": "newest"}, headers=admin)
    assert preview.status_code == 200, preview.text
    assert (
        client.post(f"{url}/bulk", json={"field": "phone", "rule": "sideways"}, headers=admin).status_code
        == 400
    )
    resolution = {"seen_heads": detail["seen_heads"], "fields": {"phone": {"value": "250"}}}
    bad_choice = {**resolution, "fields": {"phone": {"keep": "nobody"}}}
    assert client.post(f"{url}/{conflict_id}/resolve", json=bad_choice, headers=admin).status_code == 400
    assert client.post(f"{url}/{conflict_id}/resolve", json=resolution, headers=admin).status_code == 200
    assert client.post(f"{url}/{conflict_id}/resolve", json=resolution, headers=admin).status_code == 409
    assert client.post(f"{url}/nobody/resolve", json=resolution, headers=admin).status_code == 404


def test_every_answer_matches_the_openapi_document(server: tuple[Client, Contract]) -> None:
    client, contract = server
    assert client.get("/health").status_code == 200
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200
    assert client.get("/v1/protocol/schema").status_code == 200
    _drive_sync(client)
    _drive_registry(client)
    _drive_attachments(client)
    admin = _drive_admin(client)
    _drive_conflicts(client, admin)
    assert client.get("/v1/sync/pull", headers={"authorization": "Bearer gs_unknown"}).status_code == 401
    assert client.post("/v1/admin/logout", headers=admin).status_code == 204

    operations = {
        operation["operationId"]
        for methods in contract.document["paths"].values()
        for operation in methods.values()
    }
    succeeded = {operation for operation, status in contract.answered if status < 300}
    assert operations - succeeded == set(), "operations never answered with success"
    statuses = {status for _, status in contract.answered}
    assert {400, 401, 403, 404, 409, 413, 415, 422} <= statuses


def test_rate_limits_and_an_absent_database_answer_as_documented(
    contract_settings: Settings, enroll: Callable[[str], str]
) -> None:
    token = {"authorization": f"Bearer {enroll('limited-phone')}"}
    limited = Settings(database_url=contract_settings.database_url, device_requests_per_minute=2)
    with TestClient(create_app(limited)) as client:
        contract = Contract(client.get("/schema/openapi.json").json())
        contract.watch(client)
        replies = [client.get("/v1/sync/pull", headers=token).status_code for _ in range(3)]
        assert replies == [200, 200, 429]
    # Nothing listens on this loopback port: the database is away.
    away = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x", database_connect_timeout=2
    )
    with TestClient(create_app(away)) as client:
        contract.watch(client)
        assert client.get("/health").status_code == 503
        assert client.get("/v1/sync/pull", headers=token).status_code == 503
        assert (
            client.post("/v1/sync/push", json={"replica_id": "p", "changes": []}, headers=token).status_code
            == 503
        )
    assert {("pull", 429), ("health", 503), ("pull", 503), ("push", 503)} <= contract.answered


def test_every_error_is_declared_as_problem_details(server: tuple[Client, Contract]) -> None:
    _, contract = server
    for path, operations in contract.document["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            errors = {
                status: r for status, r in responses.items() if status[0] in "45" or status == "default"
            }
            assert "default" in errors, path
            for status, response in errors.items():
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                } or response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/ConflictProblem"
                }, (path, status)
            if operation.get("security"):
                assert {"401", "503"} <= set(responses), path
            if path.startswith(("/v1/sync/", "/v1/records", "/v1/attachments")):
                assert "429" in responses, path
    problem = contract.document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
