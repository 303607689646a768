"""On a SQLite file the hot reads (a token lookup, an unscoped pull) run on a read-only
connection in the event loop's thread, which must never wait for a lock: a read SQLite would
make wait goes through the pool's thread instead (server/db/engine.py, pooled_rows). The push
writer's statements run there too, but only while its transaction holds the write lock
(write_locked); taking that lock waits in the pool's thread."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import create_engine, driver_rows, driver_write, pooled_rows, write_locked


class _Clock:
    """Ticks every 10 ms for as long as the event loop is free to run it."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._task.cancel()


@pytest.fixture
async def sqlite_engine(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[tuple[AsyncEngine, Path]]:
    path = tmp_path / "gridsync.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield engine, path
    await engine.dispose()


async def test_a_hot_read_never_makes_the_event_loop_wait(sqlite_engine: tuple[AsyncEngine, Path]) -> None:
    engine, path = sqlite_engine
    assert [tuple(row) for row in await pooled_rows(engine, "SELECT 4")] == [(4,)]
    clock = _Clock()
    # A connection that keeps the database to itself: every other one must wait for it.
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        read = asyncio.create_task(pooled_rows(engine, "SELECT count(*) FROM devices"))
        await asyncio.sleep(0.3)
        assert not read.done()  # waiting, in the pool's thread
        assert clock.ticks >= 10  # while the event loop went on
        holder.execute("COMMIT")
    assert [tuple(row) for row in await asyncio.wait_for(read, 30)] == [(0,)]
    clock.stop()


async def test_hot_reads_cannot_write(sqlite_engine: tuple[AsyncEngine, Path]) -> None:
    engine, path = sqlite_engine
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await pooled_rows(engine, "DELETE FROM sync_counter")
    with closing(sqlite3.connect(path)) as check:
        assert check.execute("SELECT count(*) FROM sync_counter").fetchone() == (1,)


async def test_a_hot_read_sees_what_was_committed_since_its_last(
    sqlite_engine: tuple[AsyncEngine, Path],
) -> None:
    engine, path = sqlite_engine
    assert [tuple(r) for r in await pooled_rows(engine, "SELECT last_seq FROM sync_counter")] == [(0,)]
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("UPDATE sync_counter SET last_seq = 7")
    assert [tuple(r) for r in await pooled_rows(engine, "SELECT last_seq FROM sync_counter")] == [(7,)]


_LOCK = "UPDATE sync_counter SET last_seq = last_seq WHERE id = 1 RETURNING last_seq"


async def test_the_writers_statements_run_in_the_loops_thread_only_while_it_holds_the_lock(
    sqlite_engine: tuple[AsyncEngine, Path],
) -> None:
    engine, _ = sqlite_engine
    loop_thread = threading.get_ident()
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        # aiosqlite runs a registered function in whichever thread runs the statement.
        await driver.create_function("thread_id", 0, threading.get_ident)
        [(before,)] = await driver_rows(connection, "SELECT thread_id()")
        await connection.begin()
        async with write_locked(connection, _LOCK) as (last_seq,):
            assert last_seq == 0
            [(locked,)] = await driver_rows(connection, "SELECT thread_id()")
            await driver_write(connection, "UPDATE sync_counter SET last_seq = ? WHERE id = 1", [(5,)])
            await connection.commit()
            [(committed,)] = await driver_rows(connection, "SELECT thread_id()")
        [(after,)] = await driver_rows(connection, "SELECT thread_id()")
    assert locked == loop_thread
    assert loop_thread not in (before, committed, after)
    assert [tuple(r) for r in await pooled_rows(engine, "SELECT last_seq FROM sync_counter")] == [(5,)]


async def test_taking_the_write_lock_waits_outside_the_event_loop(
    sqlite_engine: tuple[AsyncEngine, Path],
) -> None:
    engine, path = sqlite_engine

    async def push_like() -> int:
        async with engine.connect() as connection:
            await connection.begin()
            async with write_locked(connection, _LOCK) as (last_seq,):
                await driver_write(connection, "UPDATE sync_counter SET last_seq = ? WHERE id = 1", [(3,)])
                await connection.commit()
                return int(last_seq)

    clock = _Clock()
    # Another process's writer holds the lock: the push waits for it without holding the loop.
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        pushing = asyncio.create_task(push_like())
        await asyncio.sleep(0.3)
        assert not pushing.done()
        assert clock.ticks >= 10
        other.execute("COMMIT")
    assert await asyncio.wait_for(pushing, 30) == 0
    clock.stop()
    assert [tuple(r) for r in await pooled_rows(engine, "SELECT last_seq FROM sync_counter")] == [(3,)]
