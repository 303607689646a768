"""SQLite's WAL checkpoints, off the push's path (docs/reliability.md, Storage)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import closing
from pathlib import Path

__all__ = ["WalCheckpointer"]

logger = logging.getLogger("gridsync")


class WalCheckpointer:
    """Copies what the push writer committed from the WAL back into the database file, in a
    thread of its own, after each group commit, while the writer goes on with the next push.

    SQLite would otherwise do it inside a commit, every 1,000 pages (about two pushes of 500),
    and the push waiting on that commit paid for it. The writer's own automatic checkpoint
    stays on as the backstop: if this one falls behind, SQLite catches up as before."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._running: asyncio.Future[None] | None = None
        self._again = False

    def after_commit(self) -> None:
        """Start a checkpoint, or another one right after the one running."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        self._running.add_done_callback(self._finished)

    async def idle(self) -> None:
        """Wait for the checkpoints started so far."""
        while self._running is not None and not self._running.done():
            await asyncio.wait([self._running])
            await asyncio.sleep(0)  # the done callback may start the next one

    def _finished(self, checkpoint: asyncio.Future[None]) -> None:
        if not checkpoint.cancelled() and (error := checkpoint.exception()) is not None:
            # Nothing is lost: the pages stay in the WAL and SQLite's own checkpoint copies them.
            logger.warning("background WAL checkpoint failed: %s", error)
        if self._again:
            self._again = False
            self.after_commit()

    def _checkpoint(self) -> None:
        # A connection of its own for each checkpoint: nothing to close when the server stops.
        # PASSIVE never waits for the writer or the readers; it copies what it can.
        # mode=rw: a database file that is gone is not made anew.
        with closing(
            sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=rw", uri=True, timeout=0)
        ) as connection:
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
