"""The push's statements, as plain SQL for the driver, and the helpers that run them: no
per-row parameter processing, a whole id list bound as one parameter (a JSON array read by
``json_each`` on SQLite, an array on PostgreSQL), so each step is one statement whatever the
batch size."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import driver_copy, driver_rows, driver_write
from server.db.tables import SCOPE_COLUMNS
from server.sync.horizon import compacted_digests
from server.sync.rules import NamedChange

__all__ = [
    "CHANGE_COLUMNS",
    "SAVED_COLUMNS",
    "STORED_COLUMNS",
    "PushSql",
    "started",
    "while_running",
]

_T = TypeVar("_T")
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

CHANGE_COLUMNS = (
    "seq",
    "id",
    "collection",
    "record_id",
    "field",
    "op",
    "value",
    "hlc",
    "pred",
    "device_id",
    "received_at_ms",
)
STORED_COLUMNS = ("record_id", "state", "conflict", "deleted", "company", *SCOPE_COLUMNS)
SAVED_COLUMNS = (
    "collection",
    "record_id",
    "state",
    "deleted",
    "conflict",
    "updated_seq",
    "company",
    *SCOPE_COLUMNS,
)


async def started(statement: Awaitable[None]) -> asyncio.Future[None]:
    """``statement`` running in the database while this thread goes on; await the result to
    wait for it. That is PostgreSQL's server process, and aiosqlite's thread for a commit; a
    SQLite statement under the group's write lock runs at once in this thread
    (``server.db.engine.write_locked``), so there nothing overlaps it."""
    running = asyncio.ensure_future(statement)
    await asyncio.sleep(0)  # let the statement reach the driver before the CPU is taken
    return running


async def while_running(statement: Awaitable[None], work: Callable[[], _T]) -> _T:
    """``work()`` on this thread while the database runs ``statement``; returns once both are
    done."""
    running = await started(statement)
    try:
        return work()
    finally:
        await running


class PushSql:
    """The push's statements as plain SQL for the driver: no per-row parameter processing,
    and a whole id list bound as one parameter (a JSON array read by ``json_each`` on SQLite, an
    array on PostgreSQL), so each step is one statement whatever the batch size."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        # Only this constant is spliced into the queries below; every value is a bound parameter.
        any_of = "IN (SELECT value FROM json_each(?))" if self.sqlite else "= ANY(?)"
        self.changes_by_id = self._numbered(
            f"SELECT id, collection, record_id, field, op, value, hlc, pred FROM changes WHERE id {any_of}"  # noqa: S608
        )
        self.changes_named = self._numbered(
            f"SELECT id, collection, record_id, field, op, value FROM changes WHERE id {any_of}"  # noqa: S608
        )
        # A record's state and what the rules and scopes read of it, for a list of ids of one
        # collection. On PostgreSQL the pair is matched as a row: planned as one primary-key
        # lookup per id even before the table has statistics, where ``record_id = ANY`` was
        # planned as a scan of the whole collection on a young database.
        stored = ", ".join(STORED_COLUMNS)
        self.records_by_id = (
            f"SELECT {stored} FROM records WHERE collection = ? AND record_id {any_of}"  # noqa: S608
            if self.sqlite
            else f"SELECT {stored} FROM records "  # noqa: S608
            "WHERE (collection, record_id) IN (SELECT $1::text, unnest($2::text[]))"
        )
        self.upsert_records = self._numbered(
            f"INSERT INTO records ({', '.join(SAVED_COLUMNS)}) VALUES ({', '.join('?' * len(SAVED_COLUMNS))}) "  # noqa: S608
            "ON CONFLICT (collection, record_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in SAVED_COLUMNS[2:])
        )
        # A record that stays where it was: its scope and company indexes are left alone.
        self.update_states = self._numbered(
            "UPDATE records SET state = ?, deleted = ?, conflict = ?, updated_seq = ? "
            "WHERE collection = ? AND record_id = ?"
        )
        # The push's first statement takes the counter row lock (PostgreSQL) or the write lock
        # (SQLite); the last moves the counter past the changes it wrote.
        self.lock_counter = "UPDATE sync_counter SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, epoch, compacted_seq"
        self.advance_counter = self._numbered("UPDATE sync_counter SET last_seq = ? WHERE id = 1")
        self.device_seen = self._numbered("UPDATE devices SET last_seen_at_ms = ? WHERE id = ?")
        # On SQLite only: PostgreSQL takes the log rows by COPY (insert_rows).
        self.insert_changes = (
            f"INSERT INTO changes ({', '.join(CHANGE_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(CHANGE_COLUMNS))})"
        )

    def _numbered(self, query: str) -> str:
        """SQLite takes ``?``; asyncpg takes ``$1, $2, ...``."""
        if self.sqlite:
            return query
        parts = query.split("?")
        return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]

    def id_list(self, ids: Sequence[str]) -> Any:
        return _json_encode(list(ids)).decode() if self.sqlite else list(ids)

    async def insert_rows(
        self,
        connection: AsyncConnection,
        table: str,
        columns: Sequence[str],
        statement: str,
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Rows new to ``table``, in the push's transaction: a binary COPY on PostgreSQL,
        ``statement`` as an executemany on SQLite (a loop in C inside the process already)."""
        if self.sqlite:
            await driver_write(connection, statement, rows)
        else:
            await driver_copy(connection, table, columns, rows)

    async def insert_changes_rows(self, connection: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        """Log rows, in ``CHANGE_COLUMNS`` order."""
        await self.insert_rows(connection, "changes", CHANGE_COLUMNS, self.insert_changes, rows)

    async def records(
        self, connection: AsyncConnection, collection: str, record_ids: Sequence[str]
    ) -> Sequence[Any]:
        """The ``STORED_COLUMNS`` of the records of ``collection`` among ``record_ids``."""
        return await driver_rows(connection, self.records_by_id, collection, self.id_list(record_ids))

    async def named_changes(
        self,
        connection: AsyncConnection,
        ids: Sequence[str],
        named: dict[str, NamedChange],
        *,
        compacted: bool = False,
    ) -> set[str]:
        """Which of ``ids`` (pred entries) the store has; what the log holds of them goes into
        ``named`` (of a compacted change only its id is left)."""
        found: set[str] = set()
        if ids:
            for change_id, collection, record_id, field, op, value in await driver_rows(
                connection, self.changes_named, self.id_list(ids)
            ):
                named[change_id] = NamedChange(collection, record_id, field, op, _json_decode(value))
                found.add(change_id)
        if compacted:
            found.update(await compacted_digests(connection, [i for i in ids if i not in found]))
        return found
