"""Every collection syncs through push, pull and snapshot with its merge policy, and its records
carry the scope columns of their place in the tree."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from schemas.collections import COLLECTIONS
from server.db.engine import create_engine
from server.db.tables import records
from sync.client import Replica
from tests.domain.district import Client, as_dict, build, view, write

SHA = "a" * 64
# One record of every collection below the tree of district.TREE, with a set field where it has one.
FIELD_RECORDS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "visits",
        "v1",
        {
            "household_id": "h1",
            "worker": "w-1",
            "visited_at": "2026-11-20T09:30:00+08:00",
            "purpose": "elderly-care",
            "follow_up": True,
            "request_ids": ["q1"],
        },
    ),
    (
        "hazards",
        "z1",
        {
            "grid_id": "g1",
            "area": "Underground garage",
            "category": "water-leak",
            "severity": "high",
            "status": "open",
            "photos": [SHA],
        },
    ),
    (
        "requests",
        "q1",
        {
            "household_id": "h1",
            "category": "plumbing",
            "title": "Pipe leaks",
            "status": "submitted",
            "due_date": "2026-11-30",
            "photos": [SHA],
        },
    ),
    ("checkins", "k1", {"household_id": "h1", "day": "2026-11-25", "signal": True, "checked_by": "w-1"}),
    ("points", "p1", {"resident_id": "r1", "kind": "earned", "points": 10, "reason": "Stairwell cleaning"}),
    (
        "tasks",
        "t1",
        {
            "household_id": "h1",
            "kind": "visit",
            "assignee": "w-1",
            "due_date": "2026-11-30",
            "status": "open",
        },
    ),
]
# A scalar field of each collection two phones can disagree on.
DISPUTED = {
    "communities": ("c1", "code"),
    "grids": ("g1", "party_branch"),
    "buildings": ("b1", "notes"),
    "households": ("h1", "phone"),
    "residents": ("r1", "phone"),
    "visits": ("v1", "notes"),
    "hazards": ("z1", "severity"),
    "requests": ("q1", "title"),
    "checkins": ("k1", "notes"),
    "tasks": ("t1", "reason"),
}
VALUES = {"code": ("A1", "B2"), "severity": ("low", "critical"), "phone": ("13800000001", "13900000002")}


def test_every_collection_syncs_through_push_pull_and_snapshot(
    client: Client, phone: Callable[[str], Replica], database_url: str
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    build(a, client)
    for collection, record_id, fields in FIELD_RECORDS:
        write(a, collection, record_id, fields)
    assert a.sync(client).rejected == []
    assert {c for c, _, _ in FIELD_RECORDS} | {
        "communities",
        "grids",
        "buildings",
        "households",
        "residents",
    } == set(COLLECTIONS)
    b.sync(client)
    # Both offline: each writes every disputed field, and adds to every set field.
    for collection, (record_id, name) in DISPUTED.items():
        first, second = VALUES.get(name, ("from a", "from b"))
        a.set(collection, record_id, name, first)
        b.set(collection, record_id, name, second)
    b.add("households", "h1", "tags", "disability")
    a.remove("households", "h1", "tags", "elderly-alone")
    for replica in (a, b, a):
        assert replica.sync(client).rejected == []
    fresh = phone("phone-new")
    fresh.bootstrap(client)
    for collection, (record_id, name) in DISPUTED.items():
        server = view(client, collection, record_id)
        assert len(server["conflicts"][name]) == 2, (collection, server)
        for replica in (a, b, fresh):
            mine = as_dict(replica, collection, record_id)
            if collection == "residents":
                mine["fields"].pop("id_number")
                server["fields"].pop("id_number", None)
            assert mine == server
    assert view(client, "households", "h1")["fields"]["tags"] == ["disability"]
    assert view(client, "hazards", "z1")["fields"]["photos"] == [SHA]

    async def places() -> dict[tuple[str, str], tuple[Any, ...]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    select(
                        records.c.collection,
                        records.c.record_id,
                        records.c.community_id,
                        records.c.grid_id,
                        records.c.building_id,
                        records.c.household_id,
                    )
                )
                return {(r[0], r[1]): tuple(r[2:]) for r in rows}
        finally:
            await engine.dispose()

    found = asyncio.run(places())
    assert found[("communities", "c1")] == ("c1", None, None, None)
    assert found[("grids", "g1")] == ("c1", "g1", None, None)
    assert found[("buildings", "b1")] == ("c1", "g1", "b1", None)
    assert found[("households", "h1")] == ("c1", "g1", "b1", "h1")
    for key in (
        ("residents", "r1"),
        ("visits", "v1"),
        ("requests", "q1"),
        ("checkins", "k1"),
        ("points", "p1"),
    ):
        assert found[key] == ("c1", "g1", "b1", "h1"), key
    assert found[("hazards", "z1")] == ("c1", "g1", None, None)


def test_a_household_that_moves_takes_its_records_along(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    a = phone("phone-a")
    build(a, client)
    for collection, record_id, fields in FIELD_RECORDS:
        write(a, collection, record_id, fields)
    a.sync(client)
    a.set("households", "h1", "building_id", "b3")  # another community altogether
    assert a.sync(client).rejected == []
    in_c2 = client.get("/v1/records/visits", params={"community": "c2"}).json()["records"]
    assert [r["id"] for r in in_c2] == ["v1"]
    for collection in ("residents", "requests", "checkins", "points"):
        page = client.get(f"/v1/records/{collection}", params={"grid": "g3"}).json()
        assert len(page["records"]) == 1, collection
        assert client.get(f"/v1/records/{collection}", params={"grid": "g1"}).json()["records"] == []
    # The grid moves to the other community: everything below it follows.
    a.set("grids", "g1", "community_id", "c2")
    a.sync(client)
    assert [
        r["id"] for r in client.get("/v1/records/buildings", params={"community": "c2"}).json()["records"]
    ] == [
        "b1",
        "b3",
    ]
    assert [
        r["id"] for r in client.get("/v1/records/hazards", params={"community": "c2"}).json()["records"]
    ] == ["z1"]
