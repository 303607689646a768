"""On SQLite, what a push commits is copied from the WAL into the database file by a checkpoint
in a thread of its own (server/db/upkeep.py), not inside a later push's commit."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from server.db.engine import create_engine
from server.db.upkeep import WalCheckpointer
from server.settings import Settings
from server.sync.store import SyncStore
from tests.factories import set_


async def test_a_push_reaches_the_database_file_itself(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "gridsync.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    store = SyncStore(engine, Settings(database_url=url))
    try:
        outcome = await store.writer.push(None, "phone-1", [set_("notes", "kept", record="h1")])
        assert [r.status for r in outcome.results] == ["applied"]
        upkeep = store.writer.upkeep
        assert isinstance(upkeep, WalCheckpointer)
        await upkeep.idle()
        # The file without its WAL: SQLite's own checkpoint waits for 1,000 pages of WAL, so only
        # the background checkpoint can have put this one small push there already.
        alone = tmp_path / "file-alone.db"
        shutil.copy(path, alone)
        with closing(sqlite3.connect(alone)) as copy:
            assert copy.execute("SELECT record_id FROM changes").fetchall() == [("h1",)]
            assert copy.execute("SELECT record_id FROM records").fetchall() == [("h1",)]
    finally:
        await engine.dispose()
