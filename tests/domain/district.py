"""A small district for the domain tests, written through a reference-client phone."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar.testing import TestClient

from schemas.protocol import AddChange, Change, SetChange
from sync.client import Replica
from sync.hlc import format_hlc

Client = TestClient  # type: ignore[type-arg]
ID_NUMBER = "110101195001011234"

# (collection, id, fields); list values are set fields. Parents come first.
TREE: list[tuple[str, str, dict[str, Any]]] = [
    ("communities", "c1", {"name": "Xingfu Community", "code": "C01", "villages": "Lijia"}),
    ("communities", "c2", {"name": "Heping Community", "code": "C02"}),
    ("grids", "g1", {"community_id": "c1", "name": "Grid 1", "workers": ["w-1", "w-2"]}),
    ("grids", "g2", {"community_id": "c1", "name": "Grid 2"}),
    ("grids", "g3", {"community_id": "c2", "name": "Grid 3"}),
    ("buildings", "b1", {"grid_id": "g1", "name": "Building 1", "floors": 6}),
    ("buildings", "b2", {"grid_id": "g2", "name": "Building 2"}),
    ("buildings", "b3", {"grid_id": "g3", "name": "Building 3"}),
    ("households", "h1", {"building_id": "b1", "address": "B1 U1 101", "tags": ["elderly-alone"]}),
    ("households", "h2", {"building_id": "b1", "address": "B1 U1 102", "tags": ["elderly-alone"]}),
    ("households", "h3", {"building_id": "b2", "address": "B2 U1 101", "tags": ["elderly-alone", "veteran"]}),
    ("households", "h4", {"building_id": "b3", "address": "B3 U1 101", "tags": ["child-under-6"]}),
    (
        "residents",
        "r1",
        {"household_id": "h1", "name": "Wang Fang", "id_number": ID_NUMBER, "tags": ["volunteer"]},
    ),
    ("residents", "r2", {"household_id": "h3", "name": "Li Lei", "birth_year": 1941}),
    # The elderly households signed the curtain agreement and asked for each day's signal.
    *(
        (
            "curtain_agreements",
            f"ca-{h}",
            {"household_id": h, "circumstances": ["elderly-alone"], "daily_signal": True},
        )
        for h in ("h1", "h2", "h3")
    ),
]


def write(phone: Replica, collection: str, record_id: str, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if isinstance(value, list):
            for element in value:
                phone.add(collection, record_id, name, element)
        else:
            phone.set(collection, record_id, name, value)


def build(phone: Replica, client: Client) -> None:
    for collection, record_id, fields in TREE:
        write(phone, collection, record_id, fields)
    report = phone.sync(client)
    assert report.rejected == [], report.rejected


def view(client: Client, collection: str, record_id: str) -> dict[str, Any]:
    reply = client.get(f"/v1/records/{collection}/{record_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def as_dict(phone: Replica, collection: str, record_id: str) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(phone.record(collection, record_id))
    return body


_wall = iter(range(1_000, 10**9))


def change(
    collection: str,
    record_id: str,
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...] = (),
    op: str = "set",
    replica: str = "t",
) -> dict[str, Any]:
    """A change on the wire, as a phone would send it."""
    kind = SetChange if op == "set" else AddChange
    made: Change = kind(
        id=str(uuid.uuid4()),
        collection=collection,
        record_id=record_id,
        field=field,
        value=value,
        hlc=format_hlc(1_764_000_000_000 + next(_wall), 0, replica),
        pred=pred,
    )
    body: dict[str, Any] = msgspec.to_builtins(made)
    return body


def push(client: Client, changes: list[dict[str, Any]], replica: str = "t") -> list[dict[str, Any]]:
    reply = client.post("/v1/sync/push", json={"replica_id": replica, "changes": changes})
    assert reply.status_code == 200, reply.text
    results: list[dict[str, Any]] = reply.json()["results"]
    return results
