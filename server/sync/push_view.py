"""One write group's transaction as its pushes see it (server/sync/push.py): what the group
read, what its pushes wrote so far, and the rows waiting to go out together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.protocol import Change, ConflictHead
from server.access.places import Scope, ScopeRow
from server.access.policy import company_of
from server.db.engine import driver_write
from server.sync.push_sql import SAVED_COLUMNS, PushSql, while_running
from sync.merge import RecordKey, RecordState, is_deleted, op_name, state_codec

__all__ = ["GroupView", "Stored"]

_json_encode = msgspec.json.Encoder().encode


class Stored(NamedTuple):
    """A record's row as a push finds it."""

    blob: bytes
    conflict: bool
    company: str | None
    row: ScopeRow


class _Placed(NamedTuple):
    """What ``records`` holds of a record besides its state: where to write it as an update."""

    scope: Scope
    company: str | None


class GroupView:
    """One group's transaction as its pushes see it. Reads are answered from what the group
    fetched up front and from what earlier pushes of the group wrote, so each push sees the
    ones before it; the writes wait here and go out together (``flush``)."""

    def __init__(self, sql: PushSql, last_seq: int, *, looked_up: bool) -> None:
        self.sql = sql
        self.seq = last_seq
        # Rows of the change log with the ids the group's pushes carry (when ``looked_up``: else
        # the group hopes none is logged, see ``push._MaybeDuplicateError``), and compacted digests.
        self.looked_up = looked_up
        self.logged: dict[str, Any] = {}
        self.gone: dict[str, str] = {}
        # Changes earlier pushes of the group wrote (not yet in the table until a flush).
        self.accepted: dict[str, Change] = {}
        # Every record read or written so far: its state, and its row as the next push sees it.
        self.states: dict[RecordKey, RecordState] = {}
        self.current: dict[RecordKey, Stored | None] = {}
        # What the table holds of the records (after the last flush), and the records to write
        # with the seq that wrote each last.
        self.in_table: dict[RecordKey, _Placed] = {}
        self.dirty: dict[RecordKey, int] = {}
        # The records' rows planned from ``dirty`` and not yet written (``plan``).
        self.inserts: list[tuple[Any, ...]] = []
        self.upserts: list[tuple[Any, ...]] = []
        self.updates: list[tuple[Any, ...]] = []
        self.change_rows: list[tuple[Any, ...]] = []
        # The log rows' write while it runs beside the merge; nothing else may use the
        # connection until it is settled.
        self.logging: asyncio.Future[None] | None = None
        self.seen: dict[str, int] = {}

    async def settle(self, *, quietly: bool = False) -> None:
        """Wait for the log rows' write; ``quietly`` on the way out of a failure, whose own
        error is the one to report."""
        logging, self.logging = self.logging, None
        if logging is not None:
            if quietly:
                await asyncio.gather(logging, return_exceptions=True)
            else:
                await logging

    def state(self, key: RecordKey) -> RecordState:
        state = self.states.get(key)
        if state is None:
            found = self.current.get(key)
            state = self.states[key] = RecordState() if found is None else state_codec.decode(found.blob)
        return state

    def places(self) -> dict[RecordKey, ScopeRow]:
        """Every record known to exist (in the table or written by the group), with its place."""
        return {key: found.row for key, found in self.current.items() if found is not None}

    def log(self, changes: Sequence[Change], device_id: str | None, now: int) -> None:
        """The log rows of a push's accepted changes, with the seqs they take."""
        first = self.seq + 1
        self.seq += len(changes)
        self.change_rows += [
            (
                seq,
                change.id,
                change.collection,
                change.record_id,
                change.field,
                op_name(change),
                _json_encode(change.value).decode(),
                change.hlc,
                _json_encode(change.pred).decode() if change.pred else "[]",
                device_id,
                now,
            )
            for seq, change in enumerate(changes, first)
        ]

    def plan(self) -> None:
        """Make the table rows of the records written since the last plan: an insert for a
        record the table has never held, a full upsert for one that moved, a state update for
        one that stays where it is (its scope and company indexes are left alone)."""
        for key, seq in self.dirty.items():
            collection, record_id = key
            state, found = self.states[key], self.current[key]
            assert found is not None
            blob, deleted, in_conflict = state_codec.encode(state), found.row.deleted, found.conflict
            place = _Placed(found.row.scope, found.company)
            held = self.in_table.get(key)
            if held == place:
                self.updates.append((blob, deleted, in_conflict, seq, collection, record_id))
                continue
            row = (collection, record_id, blob, deleted, in_conflict, seq, place.company, *place.scope)
            (self.inserts if held is None else self.upserts).append(row)
            self.in_table[key] = place
        self.dirty.clear()

    def written(
        self,
        states: Mapping[RecordKey, RecordState],
        scopes: Mapping[RecordKey, Scope],
        conflicted: Mapping[RecordKey, dict[str, list[ConflictHead]]],
    ) -> None:
        """A push's records, as the next push of the group must see them."""
        for key, state in states.items():
            company = company_of(key[0], state)
            # No blob: the record's state is in ``states`` from now on.
            self.current[key] = Stored(
                b"", bool(conflicted[key]), company, ScopeRow(scopes[key], is_deleted(state))
            )
            self.dirty[key] = self.seq

    async def load(self, connection: AsyncConnection, keys: Iterable[RecordKey]) -> None:
        """Read the rows of ``keys`` the view does not know yet, one query per collection."""
        by_collection: dict[str, list[str]] = {}
        for key in sorted(set(keys)):
            if key not in self.current:
                by_collection.setdefault(key[0], []).append(key[1])
        for collection, record_ids in by_collection.items():
            rows = await self.sql.records(connection, collection, record_ids)
            for record_id in record_ids:
                self.current[(collection, record_id)] = None
            for row in rows:
                record_id, blob, conflict, deleted, company, *scope = tuple(row)
                key = (collection, record_id)
                found = self.current[key] = Stored(
                    blob, bool(conflict), company, ScopeRow(Scope(*scope), bool(deleted))
                )
                self.in_table[key] = _Placed(found.row.scope, company)

    async def flush(self, connection: AsyncConnection) -> None:
        """Write what the group's pushes wrote so far: the log rows, the records (see
        ``plan``), the devices' last-seen times."""
        rows, self.change_rows = self.change_rows, []
        # The log insert is the biggest statement of a push: on PostgreSQL the records' rows are
        # made meanwhile.
        if rows:
            await while_running(self.sql.insert_changes_rows(connection, rows), self.plan)
        else:
            self.plan()
        await self.settle()
        inserts, upserts, updates = self.inserts, self.upserts, self.updates
        self.inserts, self.upserts, self.updates = [], [], []
        if inserts:
            # No other writer can add them meanwhile: every push holds the counter lock from the
            # read that found them missing to its commit.
            await self.sql.insert_rows(connection, "records", SAVED_COLUMNS, self.sql.upsert_records, inserts)
        if upserts:
            await driver_write(connection, self.sql.upsert_records, upserts)
        if updates:
            await driver_write(connection, self.sql.update_states, updates)
        if self.seen:
            await driver_write(
                connection,
                self.sql.device_seen,
                [(at, device_id) for device_id, at in sorted(self.seen.items())],
            )
            self.seen.clear()
