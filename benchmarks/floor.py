"""The push taken apart: how far below the raw limit the storage alone puts it, and what our own
code adds on top.

The throughput workload is pushed in-process (no HTTP) while every statement the writer sends
is recorded. The recording is then replayed on the bare driver (``sqlite3``, ``asyncpg``) into a
fresh database of the same schema, with nothing of ours in between: that is the push's SQL
floor, what it would cost with no Python at all. Each is measured next to the raw limit in the
same run, so three ratios come out: floor / raw (the log and the registry a push must write),
in-process / raw (the floor plus the merge), and the HTTP push of the throughput scenario.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import asyncpg

from benchmarks.harness import (
    Database,
    Measure,
    bare_sqlite,
    enroll,
    fresh_database,
    in_process_store,
    pushed_in_process,
    remove_sqlite,
)
from benchmarks.scenarios import BATCH, raw_postgres_push, raw_sqlite_push
from benchmarks.workload import HouseholdWorkload, change_row, place_of
from schemas.protocol import Change
from server.access.principals import Principal, UserScope
from server.sync import push as writer
from server.sync import push_sql, push_view

__all__ = ["push_floor"]

# The building, grid and community of the grid worker's households.
_PLACE = ("b-bench", "g-bench", "c-bench")


@dataclass(frozen=True)
class _Step:
    """One thing a group's transaction did: ``begin`` (with the counter lock), ``commit``, a
    ``read`` (query, parameters), a ``write`` (query, rows) or a ``copy`` (table, columns, rows)."""

    kind: str
    args: tuple[Any, ...] = ()


@contextmanager
def _recording(steps: list[_Step]) -> Iterator[None]:
    """The writer's driver calls and transactions, appended to ``steps`` as they run. The
    throughput workload's pushes make no other statement (no conflicts, moves or compaction)."""
    # Every module of the push that calls the driver: the flow, its statements, its group view.
    modules = (writer, push_sql, push_view)
    rows, write, copy = (getattr(push_sql, name) for name in ("driver_rows", "driver_write", "driver_copy"))
    group = writer.PushWriter._write_group

    async def recorded_rows(connection: Any, query: str, *params: Any) -> list[Any]:
        steps.append(_Step("read", (query, params)))
        found: list[Any] = await rows(connection, query, *params)
        return found

    async def recorded_write(connection: Any, query: str, params: Any) -> None:
        steps.append(_Step("write", (query, [tuple(p) for p in params])))
        await write(connection, query, params)

    async def recorded_copy(connection: Any, table: str, columns: Any, params: Any) -> None:
        steps.append(_Step("copy", (table, tuple(columns), [tuple(p) for p in params])))
        await copy(connection, table, columns, params)

    async def recorded_group(self: writer.PushWriter, connection: Any, jobs: Any) -> None:
        steps.append(_Step("begin"))
        await group(self, connection, jobs)
        steps.append(_Step("commit"))

    with ExitStack() as patches:
        for module in modules:
            for name, recorded in (
                ("driver_rows", recorded_rows),
                ("driver_write", recorded_write),
                ("driver_copy", recorded_copy),
            ):
                if hasattr(module, name):
                    patches.enter_context(patch.object(module, name, recorded))
        patches.enter_context(patch.object(writer.PushWriter, "_write_group", recorded_group))
        yield


_COUNTS = "SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM records)"


def _check_replayed(counts: Any, steps: list[_Step]) -> None:
    """The replay wrote what the push wrote: every log row and every record."""
    changes = records = 0
    for step in steps:
        target = step.args[0] if step.kind in ("write", "copy") else ""
        if target.startswith("INSERT INTO changes") or target == "changes":
            changes += len(step.args[-1])
        elif target.startswith("INSERT INTO records") or target == "records":
            records += len(step.args[-1])
    if tuple(counts) != (changes, records):
        raise AssertionError(
            f"the replay holds {tuple(counts)} (changes, records), the push wrote {(changes, records)}"
        )


def _replay_sqlite(path: Path, steps: list[_Step], lock: str) -> float:
    """``steps`` on a bare sqlite3 connection with the server's durability."""
    db = bare_sqlite(path)
    try:
        start = time.perf_counter()
        for step in steps:
            if step.kind == "begin":
                db.execute("BEGIN")
                db.execute(lock).fetchall()
            elif step.kind == "commit":
                db.execute("COMMIT")
            elif step.kind == "read":
                db.execute(step.args[0], step.args[1]).fetchall()
            else:
                db.executemany(step.args[0], step.args[1])
        seconds = time.perf_counter() - start
        _check_replayed(db.execute(_COUNTS).fetchone(), steps)
        return seconds
    finally:
        db.close()


async def _replay_postgres(database: Database, steps: list[_Step], lock: str) -> float:
    """``steps`` on a bare asyncpg connection."""
    db = await asyncpg.connect(database.asyncpg_dsn)
    try:
        start = time.perf_counter()
        for step in steps:
            if step.kind == "begin":
                await db.execute("BEGIN")
                await db.fetch(lock)
            elif step.kind == "commit":
                await db.execute("COMMIT")
            elif step.kind == "read":
                await db.fetch(step.args[0], *step.args[1])
            elif step.kind == "write":
                await db.executemany(step.args[0], step.args[1])
            else:
                table, columns, rows = step.args
                await db.copy_records_to_table(table, records=rows, columns=columns)
        seconds = time.perf_counter() - start
        _check_replayed(tuple(await db.fetchrow(_COUNTS)), steps)
        return seconds
    finally:
        await db.close()


async def push_floor(backend: str, workdir: Path, count: int, runs: int) -> dict[str, Any]:
    """The throughput workload in-process and as its bare SQL, each next to the raw limit."""
    changes = HouseholdWorkload(seed=11).changes(count)
    lock = push_sql.PushSql(backend).lock_counter
    in_process, floor, raw = Measure(), Measure(), Measure()
    floor_ratio, in_process_ratio = Measure(), Measure()
    for run in range(runs):
        steps: list[_Step] = []
        async with fresh_database(backend, workdir, f"fl{run}") as database:
            [(device_id, _)] = await enroll(database, 1)
            async with in_process_store(database) as store:
                # As the server does after start-up: the workload's own objects, alive in this
                # process only, are kept out of the garbage collector's walks.
                gc.freeze()
                try:
                    with _recording(steps):
                        start = time.perf_counter()
                        for offset in range(0, count, BATCH):
                            await store.writer.push(
                                device_id, "bench-phone", changes[offset : offset + BATCH]
                            )
                        in_process_seconds = time.perf_counter() - start
                finally:
                    gc.unfreeze()
        async with fresh_database(backend, workdir, f"fr{run}") as database:
            await enroll(database, 1)
            if backend == "sqlite":
                assert database.path is not None
                floor_seconds = _replay_sqlite(database.path, steps, lock)
            else:
                floor_seconds = await _replay_postgres(database, steps, lock)
            rows = [
                change_row(seq, c, device_id, time.time_ns() // 1_000_000) for seq, c in enumerate(changes, 1)
            ]
            if backend == "sqlite":
                raw_seconds = raw_sqlite_push(workdir / f"floor-raw-{run}.db", rows)
                remove_sqlite(workdir / f"floor-raw-{run}.db")
            else:
                raw_seconds = await raw_postgres_push(database, rows)
        in_process.add(count / in_process_seconds)
        floor.add(count / floor_seconds)
        raw.add(count / raw_seconds)
        floor_ratio.add(raw_seconds / floor_seconds)
        in_process_ratio.add(raw_seconds / in_process_seconds)
    worker = await _grid_worker_push(backend, workdir, count, runs)
    return {
        "changes": count,
        "statements": sum(1 for step in steps if step.kind not in ("begin", "commit")),
        "groups": sum(1 for step in steps if step.kind == "commit"),
        "in_process_changes_per_s": in_process.summary(),
        "floor_changes_per_s": floor.summary(),
        "raw_executemany_rows_per_s": raw.summary(),
        "floor_ratio": floor_ratio.summary(),
        "in_process_ratio": in_process_ratio.summary(),
        "grid_worker": worker,
    }


async def _pushed_in_process(
    backend: str, workdir: Path, label: str, changes: list[Change], principal: Principal | None
) -> float:
    """Seconds to push ``changes`` into a fresh database holding their place, as ``principal``
    (None: a district-wide device)."""
    async with fresh_database(backend, workdir, label) as database:
        return await pushed_in_process(database, place_of(*_PLACE), changes, principal, BATCH)


async def _grid_worker_push(backend: str, workdir: Path, count: int, runs: int) -> dict[str, Any]:
    """What a phone's push costs in the field, where it is a grid worker's: every change checked
    against the worker's grid, where the throughput workload pushes as a district-wide device.
    The same households, placed in a building of the worker's grid, pushed both ways (fresh
    databases, interleaved)."""
    changes = HouseholdWorkload(seed=11, building=_PLACE[0]).changes(count)
    worker = Principal(
        user_id="bench-worker",
        user_name="bench-worker",
        role="grid_worker",
        scope=UserScope(communities=(_PLACE[2],), grids=(_PLACE[1],)),
    )
    scoped, unscoped, ratio = Measure(), Measure(), Measure()
    for run in range(runs):
        district_seconds = await _pushed_in_process(backend, workdir, f"gd{run}", changes, None)
        worker_seconds = await _pushed_in_process(backend, workdir, f"gw{run}", changes, worker)
        unscoped.add(count / district_seconds)
        scoped.add(count / worker_seconds)
        ratio.add(district_seconds / worker_seconds)
    return {
        "changes": count,
        "grid_worker_changes_per_s": scoped.summary(),
        "district_device_changes_per_s": unscoped.summary(),
        "grid_worker_ratio": ratio.summary(),
    }
