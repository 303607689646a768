"""Bad input, each rejected on its own with a code and a message; the rest of the batch applies.
Attachments: idempotent, verified against their hash, size-limited, stored once."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.db.engine import create_engine
from server.db.tables import attachments
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import Client, build, change, push, view
from tests.factories import photo

PHOTO = photo(place=None)
PHOTO_HASH = hashlib.sha256(PHOTO).hexdigest()


def test_each_bad_change_is_rejected_alone(client: Client, phone: Callable[[str], Replica]) -> None:
    build(phone("office"), client)
    batch = [
        (change("households", "h1", "members_count", -1), "invalid_value"),
        (change("households", "h1", "notes", "applied"), None),
        (change("residents", "r1", "birth_year", 1850), "invalid_value"),
        (change("residents", "r1", "id_number", "12345"), "invalid_value"),
        (change("hazards", "z1", "status", "solved"), "invalid_value"),
        (change("hazards", "z1", "category", "flood"), "invalid_value"),
        (change("hazards", "z1", "grid_id", "g1"), None),
        (change("hazards", "z1", "building_id", "b1"), "one_place_only"),
        (change("hazards", "z1", "photos", "not-a-hash", op="add"), "invalid_value"),
        (change("visits", "v1", "household_id", "h404"), "unknown_reference"),
        (change("visits", "v2", "household_id", "h2"), None),
        (change("visits", "v2", "visited_at", "2026-11-25 09:00"), "invalid_value"),
        (change("visits", "v2", "visited_at", "2026-11-25T09:00:00"), "invalid_value"),  # no offset
        (change("checkins", "k1", "day", "2026-02-30"), "invalid_value"),
        (change("grids", "g9", "community_id", "c404"), "unknown_reference"),
        (change("requests", "q1", "household_id", "h1"), None),
        (change("requests", "q1", "status", "dispatched"), "illegal_transition_from_new"),
        (change("requests", "q1", "satisfaction", 9), "invalid_value"),
        (change("requests", "q1", "status", "submitted"), None),
        (change("buildings", "b1", "leaders", "r-not-yet", op="add"), None),  # a soft reference
        (change("communities", "c1", "notes", "applied too"), None),
    ]
    results = push(client, [c for c, _ in batch])
    assert [r["code"] for r in results] == [code for _, code in batch]
    assert all(r["message"] for r in results if r["status"] == "rejected")
    assert [r["status"] == "applied" for r in results] == [code is None for _, code in batch]
    assert "one place" in results[7]["message"]
    assert "h404" in results[9]["message"]
    assert view(client, "households", "h1")["fields"]["notes"] == "applied"
    assert view(client, "hazards", "z1")["fields"] == {"grid_id": "g1"}
    # A rejected change never makes a record on its own.
    assert client.get("/v1/records/visits/v1").status_code == 404
    # A hazard moves by clearing its place first, in the same push.
    moved = push(
        client,
        [
            change("hazards", "z1", "grid_id", None, pred=(batch[6][0]["id"],)),
            change("hazards", "z1", "building_id", "b1"),
        ],
    )
    assert [r["code"] for r in moved] == [None, None]
    assert view(client, "hazards", "z1")["fields"]["building_id"] == "b1"


def test_list_and_report_queries_refuse_bad_parameters(client: Client) -> None:
    cases = [
        ("/v1/records/nothing", {}, 404, "unknown_collection"),
        ("/v1/records/households", {"status": "open"}, 400, "bad_filter"),
        ("/v1/records/visits", {"tag": "x"}, 400, "bad_filter"),
        ("/v1/records/households", {"cursor": "%%%"}, 400, "bad_cursor"),
        ("/v1/records/households", {"limit": 0}, 400, "bad_limit"),
        ("/v1/records/households", {"updated_since": "nonsense"}, 400, "bad_cursor"),
        ("/v1/records/households", {"updated_since": "abc.5"}, 409, "resync_required"),
        ("/v1/reports/summary", {"days": 0}, 400, "bad_limit"),
        ("/v1/flags", {"kind": "nope"}, 400, "bad_filter"),
        ("/v1/points/r404", {}, 404, "not_found"),
    ]
    for path, params, status, code in cases:
        reply = client.get(path, params=params)
        assert (reply.status_code, reply.json().get("code")) == (status, code), (path, params, reply.text)


@pytest.fixture
def small_limit_client(settings: Settings, enroll: Callable[[str], str]) -> Iterator[Client]:
    with TestClient(create_app(replace(settings, max_attachment_bytes=len(PHOTO)))) as test_client:
        test_client.headers["authorization"] = f"Bearer {enroll('camera')}"
        yield test_client


def test_attachments_are_verified_stored_once_and_served(
    client: Client, small_limit_client: Client, database_url: str
) -> None:
    first = client.put(f"/v1/attachments/{PHOTO_HASH}", content=PHOTO)
    assert first.status_code == 201
    assert first.json() == {
        "sha256": PHOTO_HASH,
        "size": len(PHOTO),
        "media_type": "image/jpeg",
        "created": True,
    }
    again = small_limit_client.put(f"/v1/attachments/{PHOTO_HASH}", content=PHOTO)
    assert (again.status_code, again.json()["created"]) == (200, False)
    # Served once a record names it.
    assert push(client, [change("hazards", "z0", "photos", PHOTO_HASH, op="add")])[0]["status"] == "applied"
    got = client.get(f"/v1/attachments/{PHOTO_HASH}")
    assert (got.status_code, got.content, got.headers["content-type"]) == (200, PHOTO, "image/jpeg")

    damaged = client.put(f"/v1/attachments/{PHOTO_HASH}", content=PHOTO[:-1])
    assert (damaged.status_code, damaged.json()["code"]) == (422, "hash_mismatch")
    big = PHOTO + b"!"
    too_big = small_limit_client.put(f"/v1/attachments/{hashlib.sha256(big).hexdigest()}", content=big)
    assert (too_big.status_code, too_big.json()["code"]) == (413, "attachment_too_large")
    for bad in ("ABC", "g" * 64):
        reply = client.put(f"/v1/attachments/{bad}", content=b"x")
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_hash")
    missing = client.get(f"/v1/attachments/{'0' * 64}")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    # A record references the photo by its hash.
    assert push(client, [change("hazards", "z1", "photos", PHOTO_HASH, op="add")])[0]["status"] == "applied"

    async def stored() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                return int(
                    (await connection.execute(select(func.count()).select_from(attachments))).scalar_one()
                )
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == 1
