"""A JS phone that was away while the server compacted its history: its next sync is answered
409 ``resync_required``; it offers its changes again, starts over from a snapshot, loses none of
its offline edits, and shows the server's views."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

from server.db.engine import create_engine
from server.db.tables import changes, devices
from sync.client import Replica
from tests.reliability.harness import compact_from_cli
from tests.sdk.conftest import phone_turn

H = "households"
HOUSEHOLDS = [f"h-{n}" for n in range(6)]
DAY_MS = 24 * 3600 * 1000


def _weeks_pass(database_url: str, device_name: str) -> None:
    """The log but its newest change, and one device's last visit, 61 days old."""

    async def shift() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:
                last = (await connection.execute(select(func.max(changes.c.seq)))).scalar_one()
                await connection.execute(
                    update(changes)
                    .where(changes.c.seq < last)
                    .values(received_at_ms=changes.c.received_at_ms - 61 * DAY_MS)
                )
                await connection.execute(
                    update(devices)
                    .where(devices.c.name == device_name)
                    .values(last_seen_at_ms=devices.c.last_seen_at_ms - 61 * DAY_MS)
                )
        finally:
            await engine.dispose()

    asyncio.run(shift())


def test_a_js_phone_behind_the_compaction_resyncs_and_loses_nothing(
    server_url: str, database_url: str, enroll: Callable[[str], str], tmp_path: Path
) -> None:
    office = Replica(tmp_path / "office.db", "office", token=enroll("office"))
    job: dict[str, Any] = {"url": server_url, "token": enroll("js-walker"), "replicaId": "js-walker"}
    job["storePath"] = str(tmp_path / "walker.json")
    job["records"] = HOUSEHOLDS
    with httpx.Client(base_url=server_url, timeout=30) as http:
        for n, record_id in enumerate(HOUSEHOLDS):
            office.set(H, record_id, "address", f"Building {n}")
            office.set(H, record_id, "phone", f"1380000{n:04d}")
        office.sync(http)
        assert phone_turn({**job, "sync": True})["pending"] == 0

        # Out of signal for weeks: edits of her own, while the office rewrites the registry.
        offline = [[H, record_id, "notes", "visited, all well"] for record_id in HOUSEHOLDS[:3]]
        assert phone_turn({**job, "writes": offline, "sync": False})["pending"] == 3
        for round_ in range(4):
            for n, record_id in enumerate(HOUSEHOLDS):
                office.set(H, record_id, "phone", f"139{round_:02d}00{n:04d}")
            office.sync(http)
        office.delete(H, HOUSEHOLDS[5])
        office.sync(http)
        office.sync(http)  # acknowledges the end of the log

        _weeks_pass(database_url, "js-walker")
        assert compact_from_cli(database_url)["compacted"] > 0

        back = phone_turn({**job, "sync": True})
        assert back["report"]["resynced"] is True
        assert (back["report"]["rejected"], back["pending"]) == ([], 0)
        office.sync(http)
        served = {
            record_id: http.get(
                f"/v1/records/{H}/{record_id}", headers={"authorization": f"Bearer {office.token}"}
            ).json()
            for record_id in HOUSEHOLDS
        }
    assert back["views"] == served
    assert all(served[record_id]["fields"]["notes"] == "visited, all well" for record_id in HOUSEHOLDS[:3])
    assert served[HOUSEHOLDS[5]]["deleted"] is True
    office.close()
