"""`GET /v1/protocol/schema` is enough to validate changes offline: every collection's fields
with their value schemas, allowed values, links and state machines, and every `code`. What it
says a value may be is what the server then accepts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from litestar.testing import TestClient

from schemas.codes import Code
from schemas.collections import COLLECTIONS, REQUEST_TRANSITIONS
from tests.factories import hlc

Client = TestClient  # type: ignore[type-arg]

# (collection, field, value): values a phone might send, some of them wrong.
VALUES: list[tuple[str, str, Any]] = [
    ("households", "members_count", 3),
    ("households", "members_count", -1),
    ("households", "members_count", "3"),
    ("households", "phone", "138 0000 0000"),
    ("households", "phone", "call me"),
    ("households", "moved_out", True),
    ("households", "moved_out_on", "2026-05-01"),
    ("households", "moved_out_on", "May Day"),
    ("residents", "birth_year", 1950),
    ("residents", "birth_year", 1850),
    ("residents", "id_number", "11010119900101123X"),
    ("residents", "id_number", "1101011990"),
    ("visits", "visited_at", "2026-05-01T09:30:00+08:00"),
    ("visits", "visited_at", "2026-05-01T09:30:00"),
    ("visits", "purpose", "routine"),
    ("visits", "purpose", "gossip"),
    ("hazards", "severity", "critical"),
    ("hazards", "severity", "apocalyptic"),
    ("hazards", "photos", "0" * 64),
    ("hazards", "photos", "not-a-hash"),
    ("requests", "satisfaction", 5),
    ("requests", "satisfaction", 6),
    ("households", "tags", "elderly-alone"),
    ("households", "tags", "Elderly Alone"),
]


@pytest.fixture
def protocol(client: Client) -> dict[str, Any]:
    reply = client.get("/v1/protocol/schema", headers={"authorization": ""})
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


def test_every_collection_and_field_is_listed(protocol: dict[str, Any]) -> None:
    assert protocol["protocol"] == 1
    assert set(protocol["collections"]) == set(COLLECTIONS)
    for name, spec in COLLECTIONS.items():
        listed = protocol["collections"][name]
        assert set(listed["fields"]) == set(spec.fields), name
        assert listed["append_only"] == spec.append_only
        assert listed["exclusive"] == list(spec.exclusive)
        assert listed["scope_links"] == list(spec.scope_links)
    households = protocol["collections"]["households"]["fields"]
    assert households["building_id"]["ref"] == "buildings"
    assert households["building_id"]["ref_required"] is True
    assert households["tags"]["policy"] == "set"
    assert households["tags"]["ops"] == ["add", "remove"]
    assert households["phone"]["ops"] == ["set"]
    severity = protocol["collections"]["hazards"]["fields"]["severity"]
    assert severity["choices"] == ["low", "medium", "high", "critical"]
    assert protocol["collections"]["residents"]["fields"]["id_number"]["masked"] is True


def test_request_status_transitions_are_listed(protocol: dict[str, Any]) -> None:
    status = protocol["collections"]["requests"]["fields"]["status"]
    listed = {move["from"]: set(move["to"]) for move in status["transitions"]}
    assert listed == {before: set(after) for before, after in REQUEST_TRANSITIONS.items()}
    assert protocol["collections"]["households"]["fields"]["phone"].get("transitions") is None


def test_every_code_is_listed_with_its_meaning(protocol: dict[str, Any]) -> None:
    assert [entry["code"] for entry in protocol["codes"]] == [member.value for member in Code]
    assert all(entry["meaning"] for entry in protocol["codes"])
    assert protocol["$defs"]["Problem"]["properties"]["code"] == {"$ref": "#/$defs/Code"}
    assert set(protocol["$defs"]["Code"]["enum"]) == {member.value for member in Code}


def test_offline_validation_agrees_with_the_server(client: Client, protocol: dict[str, Any]) -> None:
    changes, verdicts = [], []
    for number, (collection, field, value) in enumerate(VALUES):
        spec = protocol["collections"][collection]["fields"][field]
        checker = Draft202012Validator(spec["schema"], format_checker=Draft202012Validator.FORMAT_CHECKER)
        verdicts.append(checker.is_valid(value))
        changes.append(
            {
                "id": str(uuid.uuid4()),
                "collection": collection,
                "record_id": f"offline-{number}",
                "field": field,
                "op": spec["ops"][0],
                "value": value,
                "hlc": hlc(number),
                "pred": [],
            }
        )
    body = {"replica_id": "offline", "changes": changes}
    assert Draft202012Validator({**protocol, "$ref": "#/$defs/PushRequest"}).is_valid(body)
    reply = client.post("/v1/sync/push", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    answered = [result["code"] != "invalid_value" for result in results]
    assert answered == verdicts, [
        (VALUES[n], result) for n, result in enumerate(results) if answered[n] != verdicts[n]
    ]
    assert verdicts.count(False) == len(VALUES) // 2
