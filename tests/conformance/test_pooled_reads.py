"""The hot reads (a token lookup, an unscoped pull) take a pooled connection with one hop and
give it back with none: every connection must go back, and one whose read failed must not. (On
a SQLite file they go the pooled way only when SQLite would make them wait:
tests/reliability/test_sqlite_hot_reads.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from server.db import engine as database
from server.db.engine import pooled_rows
from server.sync.store import SyncStore


async def test_hot_reads_give_their_connections_back(store: SyncStore) -> None:
    pool = store.engine.sync_engine.pool
    for n in range(40):  # more reads than the pool has connections
        assert [tuple(row) for row in await pooled_rows(store.engine, f"SELECT {n}")] == [(n,)]
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_failed_hot_read_drops_its_connection_and_the_pool_serves_on(
    store: SyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite, as when its own connection would have waited: the read goes the pooled way.
    monkeypatch.setattr(database._SqliteReads, "rows", lambda *_: None)
    opened: list[Any] = []
    event.listen(store.engine.sync_engine, "connect", lambda connection, _record: opened.append(connection))
    assert [tuple(row) for row in await pooled_rows(store.engine, "SELECT 1")] == [(1,)]
    assert len(opened) == 1
    with pytest.raises(Exception, match="no_such_table"):
        await pooled_rows(store.engine, "SELECT x FROM no_such_table")  # on that same connection
    assert store.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # The next read does not get the connection that failed: a new one is opened for it.
    assert [tuple(row) for row in await pooled_rows(store.engine, "SELECT 2")] == [(2,)]
    assert len(opened) == 2


async def test_a_failed_hot_read_fails_alone(store: SyncStore) -> None:
    with pytest.raises(Exception, match="no_such_table"):
        await pooled_rows(store.engine, "SELECT x FROM no_such_table")
    assert [tuple(row) for row in await pooled_rows(store.engine, "SELECT 3")] == [(3,)]


async def test_connections_opened_for_a_burst_stay_open_for_the_next(store: SyncStore) -> None:
    """A storm's burst of reads opens connections up to the pool's size; they stay in the pool,
    so the next burst connects (and prepares its statements) again for none of them."""
    engine = store.engine
    on_postgres = engine.dialect.name == "postgresql"
    opened: list[Any] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
    size = engine.sync_engine.pool.size()  # type: ignore[attr-defined]
    query = "SELECT pg_sleep(0.05)" if on_postgres else "SELECT 1"
    for _ in range(2):
        await asyncio.gather(*(pooled_rows(engine, query) for _ in range(3 * size)))
    if on_postgres:
        assert engine.sync_engine.pool.checkedin() == len(opened) <= size  # type: ignore[attr-defined]
    else:
        assert opened == []  # SQLite's hot reads run on the event loop thread's own connection
