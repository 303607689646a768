"""Fault 6: a phone stays offline for weeks while the history is compacted.

Compaction goes only below a horizon that is older than the longest allowed offline period and
lower than every active device's acknowledged cursor; heads (tombstones included) survive. A
phone that comes back from behind the horizon is told 409 resync_required, re-offers everything
(old, compacted changes are answered `duplicate`), and loses none of its pending changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select, update

from server.app import create_app
from server.db.engine import create_engine
from server.db.tables import changes, compacted_changes, devices, records
from server.settings import Settings
from server.sync.horizon import CompactionReport, compact
from sync.client import Replica
from sync.merge import state_codec
from tests.reliability.harness import H, backend_of, compact_from_cli, record_figures, views

DAY_MS = 24 * 3600 * 1000
HOUSEHOLDS = [f"h-{n:03d}" for n in range(20)]


@pytest.fixture
def office(database_url: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    # Acknowledgements written on every pull, so the test sees each one.
    with TestClient(create_app(Settings(database_url=database_url, ack_interval_ms=0))) as client:
        yield client


def _run(database_url: str, work: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        engine = create_engine(database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _compact(database_url: str) -> CompactionReport:
    return _run(database_url, lambda engine: compact(engine, Settings(database_url=database_url)))  # type: ignore[no-any-return]


def _time_travel(database_url: str, through_seq: int, device_name: str) -> None:
    """Make the log up to ``through_seq`` and one device's last visit 61 days old."""

    async def shift(engine: Any) -> None:
        async with engine.begin() as connection:
            await connection.execute(
                update(changes)
                .where(changes.c.seq <= through_seq)
                .values(received_at_ms=changes.c.received_at_ms - 61 * DAY_MS)
            )
            await connection.execute(
                update(devices)
                .where(devices.c.name == device_name)
                .values(last_seen_at_ms=devices.c.last_seen_at_ms - 61 * DAY_MS)
            )

    _run(database_url, shift)


def _log(database_url: str) -> tuple[set[str], set[str], set[str], int]:
    """(ids in the log, compacted ids, ids of every head, last seq)."""

    async def read(engine: Any) -> tuple[set[str], set[str], set[str], int]:
        async with engine.connect() as connection:
            logged = set((await connection.execute(select(changes.c.id))).scalars())
            gone = set((await connection.execute(select(compacted_changes.c.id))).scalars())
            heads = {
                head
                for blob in (await connection.execute(select(records.c.state))).scalars()
                for head in state_codec.decode(blob).heads
            }
            last = (await connection.execute(select(func.max(changes.c.seq)))).scalar_one()
        return logged, gone, heads, int(last)

    return _run(database_url, read)  # type: ignore[no-any-return]


def _cursor_seq(replica: Replica) -> int:
    assert replica.cursor is not None
    return int(replica.cursor.rpartition(".")[2])


def test_phone_offline_for_weeks_resyncs_after_compaction_and_loses_nothing(
    office: TestClient,  # type: ignore[type-arg]
    phone: Callable[[str], Replica],
    database_url: str,
) -> None:
    head_office, walker, latecomer = phone("head-office"), phone("walker"), phone("latecomer")
    made: set[str] = set()

    # Morning: the registry entries, on every phone.
    for n, record_id in enumerate(HOUSEHOLDS):
        made.add(head_office.set(H, record_id, "address", f"Building {n}, Unit 1").id)
        made.add(head_office.set(H, record_id, "phone", f"1380000{n:04d}").id)
        made.add(head_office.add(H, record_id, "tags", "veteran").id)
    for replica in (head_office, walker, latecomer):
        replica.sync(office)
    latecomer.sync(office)  # acknowledges the morning's cursor
    acked_by_latecomer = _cursor_seq(latecomer)

    # The walker goes out of signal for weeks, with visits of her own.
    pending: set[str] = set()
    for record_id in HOUSEHOLDS[:5]:
        pending.add(walker.set(H, record_id, "notes", "visited, all well").id)
    pending.add(walker.delete(H, HOUSEHOLDS[6]).id)
    pending.add(walker.add(H, HOUSEHOLDS[2], "tags", "elderly-alone").id)
    made |= pending

    # Meanwhile the office rewrites the registry again and again, and deletes two households.
    for round_ in range(5):
        for n, record_id in enumerate(HOUSEHOLDS):
            made.add(head_office.set(H, record_id, "phone", f"139{round_:02d}00{n:04d}").id)
            made.add(head_office.set(H, record_id, "members_count", round_ + n % 4).id)
        head_office.sync(office)
    for record_id in HOUSEHOLDS[7:9]:
        made.add(head_office.delete(H, record_id).id)
    head_office.sync(office)
    head_office.sync(office)  # acknowledges everything
    # The latecomer's phone is active (it pushed today) but has not pulled since the morning.
    made.add(latecomer.set(H, HOUSEHOLDS[19], "notes", "call back tomorrow").id)
    request = latecomer.push_request()
    assert request is not None
    reply = office.post(
        "/v1/sync/push",
        content=msgspec.json.encode(request),
        headers={"authorization": f"Bearer {latecomer.token}", "content-type": "application/json"},
    )
    assert reply.status_code == 200

    _, _, _, last_seq = _log(database_url)
    served_before = views(office, HOUSEHOLDS, head_office.token or "")
    # Weeks pass for everything so far, and the walker has not been seen for 61 days.
    _time_travel(database_url, last_seq - 1, "walker")

    # First compaction: held back by the latecomer's acknowledged cursor.
    first = _compact(database_url)
    assert first.horizon == acked_by_latecomer
    assert first.acked_seq == acked_by_latecomer
    assert first.compacted > 0
    latecomer.sync(office)  # from its cursor, at the horizon: no resync needed
    latecomer.sync(office)
    assert _cursor_seq(latecomer) == _log(database_url)[3]

    # Second compaction, through the command line: now only the offline limit bounds it.
    second = compact_from_cli(database_url)
    assert second["horizon"] == last_seq - 1
    assert second["compacted"] > 0

    logged, gone, heads, _ = _log(database_url)
    assert heads <= logged, "a head was compacted"
    assert not logged & gone
    assert views(office, HOUSEHOLDS, head_office.token or "") == served_before
    assert served_before[HOUSEHOLDS[7]]["deleted"] is True  # tombstones are heads: they stay

    # The walker comes back from behind the horizon.
    assert (
        office.get(
            "/v1/sync/pull",
            params={"since": walker.cursor},
            headers={"authorization": f"Bearer {walker.token}"},
        ).json()["code"]
        == "resync_required"
    )
    report = walker.sync(office)
    assert not report.rejected, report.rejected
    assert not walker.rejected()
    assert not walker.pending()
    logged, gone, _, _ = _log(database_url)
    assert pending <= logged, "a change the walker made offline was lost"
    assert logged | gone == made, "every change is stored once, in the log or as compacted"
    assert len(logged) + len(gone) == len(made)

    for replica in (head_office, latecomer, walker):
        replica.sync(office)
    served = views(office, HOUSEHOLDS, head_office.token or "")
    for replica in (head_office, latecomer, walker):
        seen = views(replica, HOUSEHOLDS)
        differing = {key: (seen[key], served[key]) for key in served if seen[key] != served[key]}
        assert not differing, (replica.replica_id, sorted(differing))
    assert served[HOUSEHOLDS[7]]["deleted"] is True
    assert served[HOUSEHOLDS[0]]["fields"]["notes"] == "visited, all well"

    # A brand-new phone starts from a snapshot (pulling from the beginning is refused now).
    newcomer = phone("newcomer")
    newcomer.sync(office)
    assert views(newcomer, HOUSEHOLDS) == served
    backend = backend_of(database_url)
    record_figures(
        f"compaction-{backend}",
        {
            "changes_made": len(made),
            "compacted_first_pass": first.compacted,
            "compacted_second_pass": second["compacted"],
            "heads_kept": len(heads),
            "walker_pending_changes_kept": len(pending),
        },
    )
