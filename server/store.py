"""The sync store: push, pull, snapshot and record reads over SQLAlchemy Core.

The hot paths batch their database work: one statement per step for a whole push, no ORM
object per change. The merge itself is ``sync.merge``; this module only loads and saves.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.codec import MalformedChange
from schemas.collections import COLLECTIONS, CollectionSpec
from schemas.protocol import (
    Change,
    ChangeResult,
    PulledChange,
    RecordView,
    SnapshotRecord,
)
from server.settings import Settings
from server.tables import changes, devices, records, sync_counter
from sync.hlc import HybridClock, parse_hlc
from sync.merge import (
    RecordKey,
    RecordState,
    apply_batch,
    conflicts,
    is_deleted,
    op_name,
    preds_to_look_up,
    record_view,
    state_codec,
)
from sync.validate import validate_change

__all__ = ["Device", "PushOutcome", "SyncError", "SyncStore"]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class SyncError(Exception):
    """A request the store cannot serve, with a stable code for the app and an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    name: str


@dataclass(slots=True)
class _PushBatch:
    """One push on its way through the group commit: its valid changes in, its outcome out."""

    device_id: str | None
    candidates: list[tuple[int, Change]]
    results: list[ChangeResult | None]
    now: int
    clock_skew_ms: int | None
    fresh: list[tuple[int, Change]] = field(default_factory=list)
    conflicted: dict[RecordKey, dict[str, Any]] = field(default_factory=dict)
    epoch: str = ""
    seq: int = 0
    done: bool = False
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class PushOutcome:
    results: list[ChangeResult]
    server_hlc: str
    cursor: str
    clock_skew_ms: int | None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough to make a leaked table useless.
    return hashlib.sha256(token.encode()).hexdigest()


def _same_content(row: Any, change: Change) -> bool:
    return bool(
        row.collection == change.collection
        and row.record_id == change.record_id
        and row.field == change.field
        and row.op == op_name(change)
        and row.hlc == change.hlc
        and _json_decode(row.value) == change.value
        and _json_decode(row.pred) == list(change.pred)
    )


def _rejected(change_id: str | None, code: str, message: str) -> ChangeResult:
    return ChangeResult(id=change_id, status="rejected", code=code, message=message)


class _HotSql:
    """The push and pull hot paths as plain SQL for the driver: no per-row parameter processing,
    and a whole id list bound as one parameter (a JSON array read by ``json_each`` on SQLite, an
    array on PostgreSQL), so each step is one statement whatever the batch size."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        # Only this constant is spliced into the queries below; every value is a bound parameter.
        any_of = "IN (SELECT value FROM json_each(?))" if self.sqlite else "= ANY(?)"
        self.changes_by_id = self._numbered(
            f"SELECT id, collection, record_id, field, op, value, hlc, pred FROM changes WHERE id {any_of}"  # noqa: S608
        )
        self.ids_known = self._numbered(f"SELECT id FROM changes WHERE id {any_of}")  # noqa: S608
        self.states = self._numbered(
            f"SELECT collection, record_id, state FROM records WHERE collection = ? AND record_id {any_of}"  # noqa: S608
        )
        self.device_by_token = self._numbered(
            "SELECT id, name FROM devices WHERE token_hash = ? AND revoked_at_ms IS NULL"
        )
        self.insert_changes = self._numbered(
            "INSERT INTO changes (seq, id, collection, record_id, field, op, value, hlc, pred, device_id, "
            "received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.save_states = self._numbered(
            "INSERT INTO records (collection, record_id, state, deleted, conflict, updated_seq) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection, record_id) DO UPDATE SET "
            "state = excluded.state, deleted = excluded.deleted, conflict = excluded.conflict, "
            "updated_seq = excluded.updated_seq"
        )

        # Each change as ready JSON text, made by the database from its row (value and pred are
        # stored as JSON already), with the keys of PulledChange in their order.
        if self.sqlite:
            self.pull_json = (
                "SELECT seq, json_object('id', id, 'collection', collection, 'record_id', record_id, "
                "'field', field, 'op', op, 'value', json(value), 'hlc', hlc, 'pred', json(pred), 'seq', seq) "
                "FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"
            )
        else:
            self.pull_json = (
                "SELECT c.seq, row_to_json(c)::text FROM (SELECT id, collection, record_id, field, op, "
                "value::json AS value, hlc, pred::json AS pred, seq FROM changes WHERE seq > $1 "
                "ORDER BY seq LIMIT $2) AS c ORDER BY c.seq"
            )

    def _numbered(self, query: str) -> str:
        """SQLite takes ``?``; asyncpg takes ``$1, $2, ...``."""
        if self.sqlite:
            return query
        parts = query.split("?")
        return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]

    def id_list(self, ids: Sequence[str]) -> Any:
        return _json_encode(list(ids)).decode() if self.sqlite else list(ids)


class SyncStore:
    """Everything the sync protocol reads and writes. One instance per app, shared by requests."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        collections: dict[str, CollectionSpec] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.collections = COLLECTIONS if collections is None else collections
        # The server's own clock never follows a device that is far ahead.
        self.clock = HybridClock(f"server-{uuid.uuid4().hex[:8]}", max_ahead_ms=settings.max_clock_ahead_ms)
        self._upsert = (
            sqlite.insert(records) if engine.dialect.name == "sqlite" else postgresql.insert(records)
        )
        self._sql = _HotSql(engine.dialect.name)
        # The hot reads (token lookup, pull) need no transaction of their own: on PostgreSQL,
        # autocommit spares them a BEGIN and a ROLLBACK round trip each. (SQLite's driver never
        # opens a transaction for a read.)
        self._reader = engine if self._sql.sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")
        # Pushes take turns here (see _write): in order, without SQLite's busy handler, which
        # sleeps and polls, and grouped into one transaction when they arrive together.
        self._write_turn = asyncio.Lock()
        self._waiting: list[_PushBatch] = []

    # ------------------------------------------------------------------ cursors

    @staticmethod
    def _cursor(epoch: str, seq: int) -> str:
        return f"{epoch}.{seq}"

    async def _position(self, connection: AsyncConnection) -> tuple[str, int]:
        row = (await connection.execute(select(sync_counter.c.epoch, sync_counter.c.last_seq))).one()
        return row.epoch, row.last_seq

    def _parse_cursor(self, cursor: str | None, epoch: str, last_seq: int) -> int:
        if not cursor:
            return 0
        cursor_epoch, _, raw_seq = cursor.partition(".")
        if not raw_seq.isdigit():
            raise SyncError(400, "bad_cursor", f"cursor {cursor!r} was not issued by this server")
        if cursor_epoch != epoch or int(raw_seq) > last_seq:
            raise SyncError(
                409,
                "resync_required",
                "this cursor belongs to another history of the database (it was restored or "
                "compacted): start again from /v1/sync/snapshot; pending local changes are kept "
                "and can be pushed as they are",
            )
        return int(raw_seq)

    # ------------------------------------------------------------------ push

    async def push(
        self, device_id: str | None, replica_id: str, items: Sequence[Change | MalformedChange]
    ) -> PushOutcome:
        results: list[ChangeResult | None] = [None] * len(items)
        candidates: list[tuple[int, Change]] = []
        for index, item in enumerate(items):
            if isinstance(item, MalformedChange):
                results[index] = _rejected(item.id, "malformed_change", item.message)
                continue
            rejection = validate_change(item, self.collections)
            if rejection is not None:
                results[index] = _rejected(item.id, rejection.code, rejection.message)
            else:
                candidates.append((index, item))

        now = _now_ms()
        walls = {c.id: parse_hlc(c.hlc).wall_ms for _, c in candidates}
        max_skew = max((wall - now for wall in walls.values()), default=None)
        clock_ahead = max_skew is not None and max_skew > self.settings.max_clock_ahead_ms
        batch = _PushBatch(device_id, candidates, results, now, max_skew if clock_ahead else None)
        await self._write(batch)

        for index, change in batch.fresh:
            found = batch.conflicted[(change.collection, change.record_id)]
            in_conflict = "_deleted" in found or (change.field is not None and change.field in found)
            result = ChangeResult(id=change.id, status="applied", conflict=in_conflict)
            if walls[change.id] - now > self.settings.max_clock_ahead_ms:
                result.code = "clock_ahead"
                result.message = (
                    "accepted, but this change is stamped ahead of the server's clock: "
                    "check the phone's date, time and time zone"
                )
            else:
                self.clock.observe(change.hlc)
            results[index] = result
        return PushOutcome(
            results=[r for r in results if r is not None],
            server_hlc=self.clock.now(),
            cursor=self._cursor(batch.epoch, batch.seq),
            clock_skew_ms=batch.clock_skew_ms,
        )

    async def _write(self, batch: _PushBatch) -> None:
        """Group commit: the pushes that arrive while another is being written wait for their
        turn, and the next one to get it writes all of them in one transaction, one after the
        other in arrival order, exactly as if each had had a transaction of its own. The same
        work costs one lock, one set of statements and one commit instead of one per push."""
        self._waiting.append(batch)
        async with self._write_turn:
            if not batch.done:
                group, self._waiting = self._waiting, []
                try:
                    await self._write_group(group)
                except BaseException as error:
                    for other in group:
                        other.error = error
                    raise
                finally:
                    for other in group:
                        other.done = True
        if batch.error is not None:
            raise batch.error

    async def _write_group(self, group: list[_PushBatch]) -> None:
        async with self.engine.begin() as connection:
            # First statement: takes the counter row lock (PostgreSQL) or the write lock (SQLite).
            locked = await connection.execute(
                update(sync_counter)
                .where(sync_counter.c.id == 1)
                .values(last_seq=sync_counter.c.last_seq)
                .returning(sync_counter.c.last_seq, sync_counter.c.epoch)
            )
            last_seq, epoch = locked.one()
            existing = await self._rows_by_id(
                connection, [c.id for batch in group for _, c in batch.candidates]
            )
            in_log: dict[str, Change] = {}
            for batch in group:
                batch.fresh = self._drop_duplicates(batch.candidates, batch.results, existing, in_log)
            fresh_changes = [c for batch in group for _, c in batch.fresh]
            states = await self._load_states(connection, {(c.collection, c.record_id) for c in fresh_changes})
            # A head is in the log by definition; so is every change of an earlier push of the group.
            known = {change_id for state in states.values() for change_id in state.heads}
            known |= await self._existing_ids(connection, sorted(preds_to_look_up(states, fresh_changes)))
            rows: list[tuple[Any, ...]] = []
            record_seqs: dict[RecordKey, int] = {}
            conflicted: dict[RecordKey, dict[str, Any]] = {}
            seq = last_seq
            for batch in group:
                changes_of_push = [c for _, c in batch.fresh]
                apply_batch(states, changes_of_push, known)
                known.update(c.id for c in changes_of_push)
                for change in changes_of_push:
                    seq += 1
                    rows.append(
                        (
                            seq,
                            change.id,
                            change.collection,
                            change.record_id,
                            change.field,
                            op_name(change),
                            _json_encode(change.value).decode(),
                            change.hlc,
                            _json_encode(change.pred).decode(),
                            batch.device_id,
                            batch.now,
                        )
                    )
                touched = {(c.collection, c.record_id) for c in changes_of_push}
                batch.conflicted = {key: conflicts(states[key], self.collections[key[0]]) for key in touched}
                conflicted |= batch.conflicted
                record_seqs |= dict.fromkeys(touched, seq)
                batch.epoch, batch.seq = epoch, seq
            if rows:
                await connection.exec_driver_sql(self._sql.insert_changes, rows)
                await self._save_states(connection, states, conflicted, record_seqs)
                await connection.execute(
                    update(sync_counter).where(sync_counter.c.id == 1).values(last_seq=seq)
                )
            for batch in group:
                if batch.device_id is not None:
                    values: dict[str, Any] = {"last_seen_at_ms": batch.now}
                    if batch.clock_skew_ms is not None:
                        values |= {"clock_skew_ms": batch.clock_skew_ms, "clock_flagged_at_ms": batch.now}
                    await connection.execute(
                        update(devices).where(devices.c.id == batch.device_id).values(**values)
                    )

    async def _rows_by_id(self, connection: AsyncConnection, ids: list[str]) -> dict[str, Any]:
        if not ids:
            return {}
        found = await connection.exec_driver_sql(self._sql.changes_by_id, (self._sql.id_list(ids),))
        return {row.id: row for row in found}

    def _drop_duplicates(
        self,
        candidates: list[tuple[int, Change]],
        results: list[ChangeResult | None],
        existing: dict[str, Any],
        in_log: dict[str, Change],
    ) -> list[tuple[int, Change]]:
        """Judge ids seen before (in the log, or earlier in this batch or group); return the new
        changes and add them to ``in_log``."""
        fresh: list[tuple[int, Change]] = []
        for index, change in candidates:
            row: Any = existing.get(change.id)
            earlier = in_log.get(change.id)
            if row is None and earlier is None:
                in_log[change.id] = change
                fresh.append((index, change))
            elif (row is not None and _same_content(row, change)) or earlier == change:
                results[index] = ChangeResult(id=change.id, status="duplicate")
            else:
                results[index] = _rejected(
                    change.id,
                    "id_reused",
                    "this change id was already used for a different change; "
                    "give every new change a new UUID",
                )
        return fresh

    async def _load_states(
        self, connection: AsyncConnection, keys: set[RecordKey]
    ) -> dict[RecordKey, RecordState]:
        states: dict[RecordKey, RecordState] = {}
        ordered = sorted(keys)
        by_collection: dict[str, list[str]] = {}
        for collection, record_id in ordered:
            by_collection.setdefault(collection, []).append(record_id)
        for collection, record_ids in by_collection.items():
            found = await connection.exec_driver_sql(
                self._sql.states, (collection, self._sql.id_list(record_ids))
            )
            for row in found:
                states[(row.collection, row.record_id)] = state_codec.decode(row.state)
        for key in ordered:
            states.setdefault(key, RecordState())
        return states

    async def _existing_ids(self, connection: AsyncConnection, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        result = await connection.exec_driver_sql(self._sql.ids_known, (self._sql.id_list(ids),))
        return set(result.scalars())

    async def _save_states(
        self,
        connection: AsyncConnection,
        states: dict[RecordKey, RecordState],
        conflicted: dict[RecordKey, dict[str, Any]],
        record_seqs: dict[RecordKey, int],
    ) -> None:
        rows = [
            (
                key[0],
                key[1],
                state_codec.encode(state),
                is_deleted(state),
                bool(conflicted[key]),
                record_seqs[key],
            )
            for key, state in states.items()
        ]
        await connection.exec_driver_sql(self._sql.save_states, rows)

    # ------------------------------------------------------------------ pull

    async def pull(
        self, since: str | None, limit: int, *, raw_json: bool = True
    ) -> tuple[list[PulledChange], str, bool]:
        """Changes after ``since`` in server order. With ``raw_json`` the values stay as the
        stored JSON text (for a JSON response: no decode and re-encode)."""
        async with self.engine.connect() as connection:
            epoch, last_seq = await self._position(connection)
            after = self._parse_cursor(since, epoch, last_seq)
            query = (
                select(
                    changes.c.seq,
                    changes.c.id,
                    changes.c.collection,
                    changes.c.record_id,
                    changes.c.field,
                    changes.c.op,
                    changes.c.value,
                    changes.c.hlc,
                    changes.c.pred,
                )
                .where(changes.c.seq > bindparam("after"))
                .order_by(changes.c.seq)
                .limit(bindparam("limit"))
            )
            rows = (await connection.execute(query, {"after": after, "limit": limit + 1})).all()
        more = len(rows) > limit
        rows = rows[:limit]
        wrap = (lambda raw: msgspec.Raw(raw.encode())) if raw_json else _json_decode
        pulled = [
            PulledChange(
                id=row.id,
                collection=row.collection,
                record_id=row.record_id,
                field=row.field,
                op=row.op,
                value=wrap(row.value),
                hlc=row.hlc,
                pred=wrap(row.pred),
                seq=row.seq,
            )
            for row in rows
        ]
        end = rows[-1].seq if rows else after
        return pulled, self._cursor(epoch, end), more

    async def pull_json(self, since: str | None, limit: int) -> tuple[list[str], str, bool]:
        """``pull`` for a JSON response: each change as its JSON text, made by the database, so
        the response is the rows joined, with no object per change and nothing re-encoded."""
        async with self._reader.connect() as connection:
            epoch, last_seq = await self._position(connection)
            after = self._parse_cursor(since, epoch, last_seq)
            found = await connection.exec_driver_sql(self._sql.pull_json, (after, limit + 1))
            rows: list[Any] = list(found)
        more = len(rows) > limit
        del rows[limit:]
        end = rows[-1][0] if rows else after
        return [row[1] for row in rows], self._cursor(epoch, end), more

    # ------------------------------------------------------------------ snapshot

    def _encode_page(self, epoch: str, sync_seq: int, collection: str, record_id: str) -> str:
        raw = _json_encode([epoch, sync_seq, collection, record_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_page(self, page: str) -> tuple[str, int, str, str]:
        try:
            raw = base64.urlsafe_b64decode(page + "=" * (-len(page) % 4))
            epoch, sync_seq, collection, record_id = msgspec.json.decode(raw, type=tuple[str, int, str, str])
        except (ValueError, msgspec.DecodeError):
            raise SyncError(400, "bad_cursor", "snapshot cursor was not issued by this server") from None
        return epoch, sync_seq, collection, record_id

    async def snapshot(
        self, collection: str | None, page: str | None, limit: int
    ) -> tuple[list[SnapshotRecord], str, bool, str]:
        """One page of current record heads: (records, next page cursor, more, pull cursor).

        The pull cursor is read before the first page and carried in the page cursor, so every
        page names the same one; pulling from it afterwards catches all later changes."""
        if collection is not None and collection not in self.collections:
            known = ", ".join(sorted(self.collections))
            raise SyncError(404, "unknown_collection", f"unknown collection {collection!r}; known: {known}")
        async with self.engine.connect() as connection:
            epoch, last_seq = await self._position(connection)
            if page:
                page_epoch, sync_seq, after_collection, after_id = self._decode_page(page)
                self._parse_cursor(self._cursor(page_epoch, sync_seq), epoch, last_seq)
            else:
                sync_seq, after_collection, after_id = last_seq, collection or "", ""
            key = tuple_(records.c.collection, records.c.record_id)
            query = select(records.c.collection, records.c.record_id, records.c.state).where(
                key > tuple_(bindparam("after_collection"), bindparam("after_id"))
            )
            if collection is not None:
                query = query.where(records.c.collection == collection)
            query = query.order_by(records.c.collection, records.c.record_id).limit(limit + 1)
            params = {"after_collection": after_collection, "after_id": after_id}
            rows = (await connection.execute(query, params)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        page_records = [
            SnapshotRecord(
                collection=row.collection,
                id=row.record_id,
                heads=list(state_codec.decode(row.state).heads.values()),
            )
            for row in rows
        ]
        last_collection, last_id = (
            (rows[-1].collection, rows[-1].record_id)
            if rows
            else (
                after_collection,
                after_id,
            )
        )
        next_page = self._encode_page(epoch, sync_seq, last_collection, last_id)
        return page_records, next_page, more, self._cursor(epoch, sync_seq)

    # ------------------------------------------------------------------ records

    async def record(self, collection: str, record_id: str) -> RecordView:
        spec = self.collections.get(collection)
        if spec is None:
            known = ", ".join(sorted(self.collections))
            raise SyncError(404, "unknown_collection", f"unknown collection {collection!r}; known: {known}")
        async with self.engine.connect() as connection:
            blob = (
                await connection.execute(
                    select(records.c.state).where(
                        records.c.collection == collection, records.c.record_id == record_id
                    )
                )
            ).scalar_one_or_none()
        if blob is None:
            raise SyncError(404, "not_found", f"no record {record_id!r} in {collection!r}")
        return record_view(state_codec.decode(blob), spec, record_id)

    # ------------------------------------------------------------------ devices

    async def enroll_device(self, name: str) -> tuple[str, str]:
        """Create a device; returns (device_id, token). Only the token's hash is stored."""
        device_id = str(uuid.uuid4())
        token = f"gs_{secrets.token_urlsafe(32)}"
        async with self.engine.begin() as connection:
            await connection.execute(
                devices.insert().values(
                    id=device_id, name=name, token_hash=hash_token(token), created_at_ms=_now_ms()
                )
            )
        return device_id, token

    async def authenticate(self, token: str) -> Device | None:
        async with self._reader.connect() as connection:
            found = await connection.exec_driver_sql(self._sql.device_by_token, (hash_token(token),))
            row = found.one_or_none()
        return None if row is None else Device(id=row.id, name=row.name)

    async def revoke_device(self, device_id: str) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(devices)
                .where(devices.c.id == device_id, devices.c.revoked_at_ms.is_(None))
                .values(revoked_at_ms=_now_ms())
            )
        return bool(result.rowcount)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def change_count(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(changes))).scalar_one())
