"""Storage upkeep after the push writer's commits, off the push's path: SQLite's WAL
checkpoints, PostgreSQL's planner statistics while the database is young (docs/protocol.md,
Storage)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import sqlite_file

__all__ = ["PlannerStatistics", "StorageUpkeep", "WalCheckpointer", "storage_upkeep"]

logger = logging.getLogger("gridsync")


class StorageUpkeep(Protocol):
    def after_commit(self, last_seq: int) -> None:
        """Called by the push writer after each group commit, with the log's last seq."""

    async def idle(self) -> None:
        """Wait for the upkeep started so far."""


class _Background:
    """One piece of upkeep at a time, in the background; asked for again while it runs, it runs
    once more after. A failure is logged: upkeep loses nothing by not running."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._running: asyncio.Future[None] | None = None
        self._again = False

    def start(self) -> None:
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.ensure_future(self.run())
        self._running.add_done_callback(self._finished)

    async def run(self) -> None:
        raise NotImplementedError

    async def idle(self) -> None:
        while self._running is not None and not self._running.done():
            await asyncio.wait([self._running])
            await asyncio.sleep(0)  # the done callback may start the next one

    def _finished(self, finished: asyncio.Future[None]) -> None:
        if not finished.cancelled() and (error := finished.exception()) is not None:
            logger.warning("background %s failed: %s", self._what, error)
        if self._again:
            self._again = False
            self.start()


class WalCheckpointer(_Background):
    """Copies what the push writer committed from SQLite's WAL back into the database file, in
    a thread of its own, after each group commit, while the writer goes on with the next push.

    SQLite would otherwise do it inside a commit, every 1,000 pages (about two pushes of 500),
    and the push waiting on that commit paid for it. The writer's own automatic checkpoint
    stays on as the backstop: if this one falls behind, SQLite catches up as before, and pages
    a failed checkpoint left in the WAL stay there until one succeeds."""

    def __init__(self, path: Path) -> None:
        super().__init__("WAL checkpoint")
        self._path = path

    def after_commit(self, last_seq: int) -> None:
        self.start()

    async def run(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._checkpoint)

    def _checkpoint(self) -> None:
        # A connection of its own for each checkpoint: nothing to close when the server stops;
        # mode=rw: a database file that is gone is not made anew. PASSIVE never waits for the
        # writer or the readers; it copies what it can.
        uri = f"{self._path.resolve().as_uri()}?mode=rw"
        with closing(sqlite3.connect(uri, uri=True, timeout=0)) as connection:
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


# Statistics are refreshed each time the log doubles, up to this size; autovacuum's own
# analyses (after 10% of a table changed) keep a grown database's statistics.
_YOUNG_UNTIL = 1_000_000
_FIRST_ANALYZE_AT = 1_000


class PlannerStatistics(_Background):
    """``ANALYZE`` of the log and the records each time the log doubles while it is young, on a
    pooled connection, beside the pushes.

    The writer's lookups by id list are prepared statements. PostgreSQL plans one generically
    after a few runs and keeps that plan until the table's statistics change; made while a new
    database's tables were nearly empty, it is a sequential scan, and a push of 500 took 0.4 s
    instead of 40 ms until autovacuum (at most once a minute, after 10% of a table changed)
    analysed the table. Fresh statistics invalidate the plan, and the next one uses the index."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__("ANALYZE")
        self._engine = engine
        self._next_at = _FIRST_ANALYZE_AT

    def after_commit(self, last_seq: int) -> None:
        if self._next_at <= last_seq < _YOUNG_UNTIL:
            self._next_at = 2 * last_seq
            self.start()

    async def run(self) -> None:
        async with self._engine.connect() as connection:
            await connection.exec_driver_sql("ANALYZE changes, records")
            await connection.commit()


def storage_upkeep(engine: AsyncEngine) -> StorageUpkeep | None:
    """The upkeep ``engine``'s database needs after the push writer's commits."""
    if engine.dialect.name == "postgresql":
        return PlannerStatistics(engine)
    path = sqlite_file(engine.url)
    return None if path is None else WalCheckpointer(path)
