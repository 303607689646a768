"""Wrong clocks over HTTP, on every storage backend: an absurd hlc is refused at the door, a
moderately fast phone is accepted and flagged, and neither moves any other replica's clock
more than the protocol's bound past its own wall time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import TestClient

from schemas.protocol import Change
from server.db.engine import create_engine
from server.settings import Settings
from server.sync.store import SyncStore
from sync.client import Replica
from sync.hlc import MAX_FOLLOW_AHEAD_MS, HybridClock, format_hlc, hlc_wall_ms, parse_hlc
from tests.factories import set_

Client = TestClient  # type: ignore[type-arg]
H = "households"
DAY_MS = 24 * 3600 * 1000
ABSURD = "999999999999999-999999-x"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _phone(tmp_path: Path, enroll: Callable[[str], str], name: str, offset_ms: int = 0) -> Replica:
    clock = HybridClock(name, now_ms=lambda: _wall_ms() + offset_ms)
    return Replica(tmp_path / f"{name}.db", name, clock=clock, token=enroll(name))


def _push(client: Client, changes: list[Any], replica: str) -> Any:
    body = {"replica_id": replica, "changes": [msgspec.to_builtins(c) for c in changes]}
    reply = client.post("/v1/sync/push", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_an_absurd_hlc_is_refused_and_a_fast_phone_moves_no_other_clock(
    client: Client, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    correct = [_phone(tmp_path, enroll, f"correct-{n}") for n in range(3)]
    for n, replica in enumerate(correct):
        replica.set(H, f"h{n}", "notes", f"visited by {replica.replica_id}")
        assert replica.sync(client).rejected == []

    fast = _phone(tmp_path, enroll, "a-day-ahead", offset_ms=DAY_MS)
    fast.set(H, "h0", "notes", "written on a phone set to tomorrow")
    fast.set(H, "h9", "phone", "13800000009")
    fast_report = fast.sync(client)
    # Moderately fast: accepted and flagged, never refused (field data is kept).
    assert fast_report.rejected == []
    assert fast_report.clock_skew_ms is not None
    assert fast_report.clock_skew_ms > DAY_MS - 60_000

    absurd = msgspec.structs.replace(set_("notes", "from a broken client", record="h1"), hlc=ABSURD)
    sane = set_("notes", "the same push's other change", record="h2")
    reply = _push(client, [absurd, sane], "broken-client")
    assert [r["status"] for r in reply["results"]] == ["rejected", "applied"]
    assert reply["results"][0]["code"] == "clock_too_far_ahead"
    assert "date" in reply["results"][0]["message"]
    assert hlc_wall_ms(reply["server_hlc"]) <= _wall_ms() + MAX_FOLLOW_AHEAD_MS
    # Refused at the door: no replica ever receives it.
    assert client.get(f"/v1/records/{H}/h1").json()["fields"]["notes"] == "visited by correct-1"

    for replica in correct:
        report = replica.sync(client)  # takes the fast phone's changes and the server's hlc
        assert report.pulled > 0
        made = replica.set(H, "h0", "notes", f"edited by {replica.replica_id}")
        assert hlc_wall_ms(made.hlc) <= _wall_ms() + MAX_FOLLOW_AHEAD_MS
        after = replica.sync(client)
        # Nothing made by a correct clock is refused or flagged, even after following a fast one.
        assert after.rejected == []
        assert after.clock_skew_ms is None
        assert parse_hlc(replica.clock.now()).wall_ms <= _wall_ms() + MAX_FOLLOW_AHEAD_MS

    # A change of the absurd phone that a correct phone somehow received (a server older than the
    # bound accepted it) still moves that phone's clock no further than the bound.
    follower = correct[0]
    follower.clock.observe(ABSURD)
    made = follower.set(H, "h3", "notes", "made after receiving an absurd hlc")
    assert hlc_wall_ms(made.hlc) <= _wall_ms() + MAX_FOLLOW_AHEAD_MS
    assert follower.sync(client).rejected == []
    for replica in (*correct, fast):
        replica.close()


async def _store_trusted(settings: Settings, changes: list[Change]) -> None:
    engine = create_engine(settings.database_url)
    try:
        outcome = await SyncStore(engine, settings).writer.push(None, "older-server", changes)
        assert [r.status for r in outcome.results] == ["applied"] * len(changes)
    finally:
        await engine.dispose()


def test_a_clock_too_far_ahead_is_refused_but_a_stored_change_sent_again_is_a_duplicate(
    client: Client, settings: Settings
) -> None:
    week_and_a_day = format_hlc(_wall_ms() + 8 * DAY_MS, 0, "phone-next-week")
    refused = msgspec.structs.replace(set_("notes", "stamped next week"), hlc=week_and_a_day)
    answer = _push(client, [refused], "phone-next-week")
    assert answer["results"][0]["code"] == "clock_too_far_ahead"
    assert answer["clock_skew_ms"] > 8 * DAY_MS - 60_000  # the device is flagged for admins
    assert client.get(f"/v1/records/{H}/h1").status_code == 404
    # Stored while the bound was wider (an older server, another setting): a phone re-offering
    # it in a resync is answered duplicate, not refused, so it keeps what the server has.
    stored = msgspec.structs.replace(
        set_("notes", "stamped next month"), hlc=format_hlc(_wall_ms() + 30 * DAY_MS, 0, "phone-next-month")
    )
    asyncio.run(_store_trusted(replace(settings, max_hlc_ahead_ms=365 * DAY_MS), [stored]))
    again = _push(client, [stored, set_("phone", "13800000001")], "phone-next-month")
    assert [r["status"] for r in again["results"]] == ["duplicate", "applied"]
