"""The record-creating push: a day's visits and check-ins as phones make them, one or two changes
per new record, each record and change id a time-ordered UUIDv7, pushed in-process 500 changes
a push as a district device and as a grid worker of the households' grid. Each is measured next
to its own raw limit in the same run: the same log rows and one record row per new record (the
columns the server stores), inserted with the plain driver into a migrated database, one
transaction per 500 changes, with the server's durability."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.harness import Database, Measure, bare_sqlite, fresh_database, pushed_in_process
from benchmarks.workload import HouseholdWorkload, change_row, place_of
from schemas.protocol import Change, SetChange
from server.access.principals import Principal, UserScope
from sync.client import uuid7
from sync.hlc import format_hlc
from sync.merge import RecordState, apply_batch, state_codec

__all__ = ["new_records", "visits_and_checkins"]

BATCH = 500
# The building, grid and community of the households the visits and check-ins are about.
_PLACE = ("b-visits", "g-visits", "c-visits")
_HOUSEHOLDS = 40
_WORKER = Principal(
    user_id="bench-worker",
    user_name="bench-worker",
    role="grid_worker",
    scope=UserScope(communities=(_PLACE[2],), grids=(_PLACE[1],)),
)
_SAVED = (
    "collection, record_id, state, deleted, conflict, updated_seq, company, "
    "community_id, grid_id, building_id, household_id"
)
_LOGGED = "seq, id, collection, record_id, field, op, value, hlc, pred, device_id, received_at_ms"


def _households() -> list[Change]:
    """The households visited, placed in the grid worker's building, as the office entered them."""
    workload = HouseholdWorkload(seed=5, prefix="hv", building=_PLACE[0])
    return [change for number in range(1, _HOUSEHOLDS + 1) for change in workload.household(number)]


def visits_and_checkins(count: int, per_record: int, seed: int = 17) -> list[Change]:
    """``count`` changes making new records, ``per_record`` changes each: a visit (its household,
    then whether it needs a follow-up) or a check-in (its household, then the signal seen)."""
    rnd = random.Random(seed)
    wall_ms = 1_765_000_000_000
    made: list[Change] = []
    tick = 0

    def stamp() -> tuple[str, str]:
        nonlocal tick
        tick += 1
        at = wall_ms + tick // 1000
        return uuid7(at, rnd.randbytes(10)), format_hlc(at, tick % 1000, "bench-phone")

    while len(made) < count:
        collection, second = rnd.choice((("visits", "follow_up"), ("checkins", "signal")))
        record_id, _ = stamp()
        household = f"hv-{rnd.randint(1, _HOUSEHOLDS):07d}"
        fields = [("household_id", household), (second, rnd.random() < 0.5)][:per_record]
        for name, value in fields:
            change_id, hlc = stamp()
            made.append(
                SetChange(
                    id=change_id, collection=collection, record_id=record_id, hlc=hlc, field=name, value=value
                )
            )
    return made[:count]


async def _pushed(
    backend: str, workdir: Path, label: str, changes: list[Change], principal: Principal | None
) -> float:
    """Seconds to push ``changes`` into a fresh database holding their households."""
    async with fresh_database(backend, workdir, label) as database:
        return await pushed_in_process(database, place_of(*_PLACE) + _households(), changes, principal, BATCH)


def _raw_batches(changes: list[Change]) -> list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Per 500 changes: their log rows, and the row of each record they create, as the server
    stores it (its encoded state, its place)."""
    now = time.time_ns() // 1_000_000
    batches = []
    for offset in range(0, len(changes), BATCH):
        batch = changes[offset : offset + BATCH]
        log = [change_row(seq, change, "bench-device", now) for seq, change in enumerate(batch, offset + 1)]
        states: dict[tuple[str, str], RecordState] = {}
        households: dict[tuple[str, str], Any] = {}
        for change in batch:
            states.setdefault((change.collection, change.record_id), RecordState())
            if change.field == "household_id":
                households[(change.collection, change.record_id)] = change.value
        apply_batch(states, batch, set())
        seq = offset + len(batch)
        community, grid, building = _PLACE[::-1]
        records = [
            (
                *key,
                state_codec.encode(state),
                False,
                False,
                seq,
                None,
                community,
                grid,
                building,
                households[key],
            )
            for key, state in states.items()
        ]
        batches.append((log, records))
    return batches


def _raw_sqlite(
    database: Database, batches: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]
) -> float:
    assert database.path is not None
    db = bare_sqlite(database.path)
    try:
        start = time.perf_counter()
        for log, records in batches:
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO changes ({_LOGGED}) VALUES ({', '.join('?' * 11)})", log)
            db.executemany(f"INSERT INTO records ({_SAVED}) VALUES ({', '.join('?' * 11)})", records)
            db.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        db.close()


async def _raw_postgres(
    database: Database, batches: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]
) -> float:
    db = await asyncpg.connect(database.asyncpg_dsn)
    marks = ", ".join(f"${n}" for n in range(1, 12))
    try:
        start = time.perf_counter()
        for log, records in batches:
            async with db.transaction():
                await db.executemany(f"INSERT INTO changes ({_LOGGED}) VALUES ({marks})", log)
                await db.executemany(f"INSERT INTO records ({_SAVED}) VALUES ({marks})", records)
        return time.perf_counter() - start
    finally:
        await db.close()


async def _raw(backend: str, workdir: Path, label: str, changes: list[Change]) -> float:
    batches = _raw_batches(changes)
    async with fresh_database(backend, workdir, label) as database:
        if backend == "sqlite":
            return _raw_sqlite(database, batches)
        return await _raw_postgres(database, batches)


async def new_records(backend: str, workdir: Path, count: int, runs: int) -> dict[str, Any]:
    """One and two changes per new record, as a district device and as a grid worker, each
    run next to the raw limit (fresh databases, interleaved)."""
    found: dict[str, Any] = {"changes": count, "batch": BATCH}
    for per_record, label in ((1, "one_change"), (2, "two_changes")):
        changes = visits_and_checkins(count, per_record)
        raw, district, worker, district_ratio, worker_ratio = (Measure() for _ in range(5))
        for run in range(runs):
            raw_seconds = await _raw(backend, workdir, f"nr{per_record}{run}", changes)
            district_seconds = await _pushed(backend, workdir, f"nd{per_record}{run}", changes, None)
            worker_seconds = await _pushed(backend, workdir, f"nw{per_record}{run}", changes, _WORKER)
            raw.add(count / raw_seconds)
            district.add(count / district_seconds)
            worker.add(count / worker_seconds)
            district_ratio.add(raw_seconds / district_seconds)
            worker_ratio.add(raw_seconds / worker_seconds)
        found[label] = {
            "records": len({(c.collection, c.record_id) for c in changes}),
            "raw_changes_per_s": raw.summary(),
            "district_changes_per_s": district.summary(),
            "district_ratio": district_ratio.summary(),
            "grid_worker_changes_per_s": worker.summary(),
            "grid_worker_ratio": worker_ratio.summary(),
        }
    return found
