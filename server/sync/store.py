"""The sync store: push, pull, snapshot and record reads over SQLAlchemy Core.

The hot paths batch their database work: one statement per step for a whole push or page, no
ORM object per change. The merge itself is ``sync.merge``; pushes are written by
``server.sync.push``, and this module serves the reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Select, and_, bindparam, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.collections import COLLECTIONS, CollectionSpec
from schemas.protocol import (
    Change,
    PulledChange,
    RecordFacts,
    RecordRef,
    RecordView,
    SnapshotRecord,
)
from server.access.personal import SEALED_PREFIX, load_sealer
from server.access.policy import (
    SENSITIVE_NOTES,
    TAG_FIELDS,
    hides_sensitive,
    is_hidden_json,
    is_scoped,
    mask_change,
    mask_value,
    mask_view,
    moves_for,
    reads_filter,
    scope_fingerprint,
    visible_heads,
)
from server.access.principals import Principal
from server.db.engine import classify_database_error, driver_rows, pooled_rows
from server.db.paging import decode_page_cursor, encode_page_cursor
from server.db.replicas import ReadReplicas, ReplicaBehindError
from server.db.tables import changes, records
from server.errors import GridsyncError
from server.inbox.tracking import ConflictTracker
from server.settings import Settings
from server.sync.cursors import sync_cursor
from server.sync.horizon import PullAcknowledgements
from server.sync.push import PushWriter
from sync.hlc import HybridClock
from sync.merge import (
    op_name,
    record_view,
    snapshot_facts,
    state_codec,
)
from sync.validate import RECORD_ID_PATTERN

__all__ = ["SyncStore", "change_from_row"]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


# The single counter row, read straight from the driver (same text for both).
_POSITION = "SELECT epoch, last_seq, compacted_seq FROM sync_counter WHERE id = 1"


_PULLED_COLUMNS = ("seq", "id", "collection", "record_id", "field", "op", "value", "hlc", "pred")
# An unscoped pull in one statement of one text column: the counter's row (a JSON array of epoch,
# last seq and floor), then each change as JSON text made by the database, ``seq`` last
# (``_seq_of``). The log has no gaps above the floor, so bounding seq on both sides drops no row
# and lets PostgreSQL plan the prepared statement once (tests/reliability/test_young_database.py).
_PULL_JSON_SQLITE = (
    "SELECT json_array(epoch, last_seq, compacted_seq) FROM sync_counter WHERE id = 1 UNION ALL "
    "SELECT * FROM (SELECT json_object('id', id, 'collection', collection, 'record_id', "
    "record_id, 'field', field, 'op', op, 'value', json(value), 'hlc', hlc, 'pred', json(pred), "
    "'seq', seq) FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?)"
)
# Concatenated rather than row_to_json: value and pred go in as stored, unparsed.
_PULL_JSON_POSTGRES = (
    "(SELECT json_build_array(epoch, last_seq, compacted_seq)::text FROM sync_counter WHERE id = 1) "
    """UNION ALL (SELECT '{"id":' || to_json(id)::text || ',"collection":' """
    """|| to_json(collection)::text || ',"record_id":' || to_json(record_id)::text """
    """|| ',"field":' || coalesce(to_json(field)::text, 'null') || ',"op":' || to_json(op)::text """
    """|| ',"value":' || value || ',"hlc":' || to_json(hlc)::text || ',"pred":' || pred """
    """|| ',"seq":' || seq::text || '}' FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3)"""
)
_position_decode = msgspec.json.Decoder(tuple[str, int, int]).decode
# A sealed value (an ID number at rest, server/access/personal.py) as it shows in a pulled row's JSON.
_SEALED_JSON = f'"{SEALED_PREFIX}'
_SENSITIVE_PAIRS = SENSITIVE_NOTES | TAG_FIELDS
# On a standby the position also says whether it still follows the primary (server/replicas.py).
_PULL_JSON_REPLICA = _PULL_JSON_POSTGRES.replace(
    "json_build_array(epoch, last_seq, compacted_seq)",
    "json_build_array(epoch, last_seq, compacted_seq, pg_is_in_recovery())",
)
_POSITION_REPLICA = (
    "SELECT epoch, last_seq, compacted_seq, pg_is_in_recovery() FROM sync_counter WHERE id = 1"
)
_replica_position_decode = msgspec.json.Decoder(tuple[str, int, int, bool]).decode


def _cursor_epoch(cursor: str | None) -> str | None:
    return cursor.partition(".")[0] if cursor else None


def _take_position(rows: list[str]) -> str:
    """Remove and return the pull query's counter row: the only one that is not an object (the
    union keeps it first)."""
    at = 0 if rows[0][0] == "[" else next(i for i, row in enumerate(rows) if row[0] == "[")
    return rows.pop(at)


def _seq_of(pulled: str) -> int:
    """The seq of a change as the pull query writes it: its last key, an integer, so the last
    colon comes right before it."""
    return int(pulled[pulled.rindex(":") + 1 : -1])


# The greatest seq either database takes: a cursor naming more is judged (409), not queried.
_MAX_SEQ = 2**63 - 1


def _cursor_seq(cursor: str | None) -> int:
    """The seq a pull cursor names (0 for none), read without judging it; a cursor that is not
    of this server's form is a 400."""
    if not cursor:
        return 0
    raw_seq = cursor.partition(".")[2].partition(".")[0]
    # isascii: str.isdigit also accepts digits that int() refuses (superscripts).
    if not (raw_seq.isascii() and raw_seq.isdigit()):
        raise GridsyncError(400, "bad_cursor", f"cursor {cursor!r} was not issued by this server")
    return int(raw_seq)


def _as_pulled(change: Change, seq: int) -> PulledChange:
    return PulledChange(
        id=change.id,
        collection=change.collection,
        record_id=change.record_id,
        field=change.field,
        op=op_name(change),
        value=change.value,
        hlc=change.hlc,
        pred=list(change.pred),
        seq=seq,
    )


def change_from_row(row: Any) -> Change:
    """A change as pushed, from its row in the ``changes`` log."""
    change: Change = msgspec.convert(
        {
            "id": row.id,
            "collection": row.collection,
            "record_id": row.record_id,
            "field": row.field,
            "op": row.op,
            "value": _json_decode(row.value),
            "hlc": row.hlc,
            "pred": _json_decode(row.pred),
        },
        Change,
    )
    return change


class SyncStore:
    """Everything the sync protocol reads and writes. One instance per app, shared by requests."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        collections: dict[str, CollectionSpec] | None = None,
        *,
        read_engines: Sequence[AsyncEngine] = (),
    ) -> None:
        self.engine = engine
        # PostgreSQL hot standbys for the reads; every write goes to ``engine``.
        self.replicas = ReadReplicas(read_engines)
        self.settings = settings
        self.collections = COLLECTIONS if collections is None else collections
        # Like every replica's, the server's clock never moves more than the protocol's bound
        # past its own wall time (sync.hlc.MAX_FOLLOW_AHEAD_MS), whatever a device stamps.
        self.clock = HybridClock(f"server-{uuid.uuid4().hex[:8]}")
        # Each device's acknowledged pull position, which bounds history compaction.
        self.acks = PullAcknowledgements(engine, settings.ack_interval_ms)
        self.conflict_tracker = ConflictTracker(self.collections)
        # The key that seals ID numbers; None when none is configured (server/access/personal.py).
        self.sealer = load_sealer(settings)
        self._masked = frozenset(
            (spec.name, field.name)
            for spec in self.collections.values()
            for field in spec.fields.values()
            if field.masked
        )
        self._sqlite = engine.dialect.name == "sqlite"
        self._pull_json = _PULL_JSON_SQLITE if self._sqlite else _PULL_JSON_POSTGRES
        self.writer = PushWriter(
            engine, settings, self.collections, self.clock, self.conflict_tracker, self.sealer
        )
        # Pushing is the writer's alone (server/sync/push.py): callers push through ``writer``.
        # The hot reads need no transaction of their own: on PostgreSQL, autocommit spares them
        # a BEGIN and a ROLLBACK round trip each. (SQLite's driver opens none for a read.)
        self._reader = engine if self._sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")

    # ------------------------------------------------------------------ cursors

    async def _position(
        self,
        connection: AsyncConnection,
        on_replica: bool = False,
        wanted_epoch: str | None = None,
        wanted_seq: int = 0,
    ) -> tuple[str, int, int]:
        """(epoch, last seq, compaction floor), for the reads (every pull and snapshot page). On
        a standby, ``ReplicaBehindError`` unless it holds ``wanted_seq`` of ``wanted_epoch``."""
        if not on_replica:
            [(epoch, last_seq, floor)] = await driver_rows(connection, _POSITION)
            return epoch, last_seq, floor
        [(epoch, last_seq, floor, in_recovery)] = await driver_rows(connection, _POSITION_REPLICA)
        self.replicas.check(
            in_recovery=in_recovery,
            epoch=epoch,
            last_seq=last_seq,
            wanted_epoch=wanted_epoch,
            wanted_seq=wanted_seq,
        )
        return epoch, last_seq, floor

    def read_engine(self) -> AsyncEngine:
        """The engine for a read that needs no position (a record, a list): a standby when there
        are any, else the primary."""
        return self.replicas.engine_or(self.engine) if self.replicas else self.engine

    def _parse_cursor(
        self,
        cursor: str | None,
        epoch: str,
        last_seq: int,
        principal: Principal | None = None,
        floor: int = 0,
    ) -> int:
        if not cursor:
            if floor > 0:
                raise GridsyncError(
                    409,
                    "resync_required",
                    "the change log before this server's compaction point is gone: start from "
                    "/v1/sync/snapshot and pull from its sync_cursor",
                )
            return 0
        cursor_epoch, _, rest = cursor.partition(".")
        fingerprint = rest.partition(".")[2]
        seq = _cursor_seq(cursor)
        if cursor_epoch != epoch or seq > last_seq or seq < floor:
            raise GridsyncError(
                409,
                "resync_required",
                "this cursor belongs to another history of the database (it was restored or "
                "compacted): start again from /v1/sync/snapshot; pending local changes are kept "
                "and can be pushed as they are",
            )
        if fingerprint != scope_fingerprint(principal):
            raise GridsyncError(
                409,
                "scope_changed",
                "the grids or buildings assigned to this user changed: drop the records you hold "
                "that have no pending changes and start again from /v1/sync/snapshot",
            )
        return seq

    # ------------------------------------------------------------------ pull

    @staticmethod
    def cursor_seq(cursor: str | None) -> int:
        """The seq a cursor of this server names (0 for none)."""
        return _cursor_seq(cursor)

    @staticmethod
    def check_cursor_form(cursor: str | None) -> None:
        """The pull's 400 ``bad_cursor`` for a cursor not of this server's form, raised before an
        exchange writes its push (whether the cursor is still valid is judged with the page)."""
        _cursor_seq(cursor)

    async def pull(
        self,
        since: str | None,
        limit: int,
        *,
        raw_json: bool = True,
        principal: Principal | None = None,
        at_least: int = 0,
    ) -> tuple[list[PulledChange], str, bool, list[RecordRef], list[RecordFacts]]:
        """Changes after ``since`` in server order, limited to the principal's scope, the records
        that left that scope, and what supersession knows beyond the heads of those that entered
        it. With ``raw_json`` the values stay as the stored JSON text (for a JSON response: no
        decode and re-encode). ``at_least``: a seq the page's database must hold (the
        exchange's own push), whichever database serves it."""
        if self.replicas and (replica := self.replicas.pick()) is not None:
            try:
                return await self._pull(replica.engine, since, limit, raw_json, principal, at_least)
            except ReplicaBehindError:
                pass
            except Exception as error:
                if classify_database_error(error) != "unavailable":
                    raise
                replica.mark_down(error)
        return await self._pull(self.engine, since, limit, raw_json, principal, 0)

    async def _pull(
        self,
        engine: AsyncEngine,
        since: str | None,
        limit: int,
        raw_json: bool,
        principal: Principal | None,
        at_least: int,
    ) -> tuple[list[PulledChange], str, bool, list[RecordRef], list[RecordFacts]]:
        on_replica = engine is not self.engine
        scoped = is_scoped(principal)
        columns = [getattr(changes.c, name) for name in _PULLED_COLUMNS]
        query = select(*columns).where(changes.c.seq > bindparam("after")).order_by(changes.c.seq)
        if scoped:
            on_record = and_(
                records.c.collection == changes.c.collection, records.c.record_id == changes.c.record_id
            )
            query = query.select_from(changes.join(records, on_record)).where(
                changes.c.seq <= bindparam("until"), reads_filter(principal)
            )
        left: list[RecordRef] = []
        entered: list[tuple[str, str, bytes]] = []
        async with engine.connect() as connection:
            epoch, last_seq, floor = await self._position(
                connection, on_replica, _cursor_epoch(since), max(_cursor_seq(since), at_least)
            )
            after = self._parse_cursor(since, epoch, last_seq, principal, floor)
            params = {"after": after, "until": last_seq, "limit": limit + 1}
            rows = (await connection.execute(query.limit(bindparam("limit")), params)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            if scoped:
                assert principal is not None
                # Scoped pulls skip rows outside the scope, so without more rows the cursor
                # moves to the end of the log as it was read.
                end = rows[-1].seq if more else last_seq
                gone, entered = await moves_for(connection, principal, after, end)
                left = [RecordRef(collection=c, id=r) for c, r in gone]
            else:
                end = rows[-1].seq if rows else after
        pulled, facts = self._page_changes(rows, entered, end, principal, raw_json=raw_json)
        return pulled, sync_cursor(epoch, end, scope_fingerprint(principal)), more, left, facts

    def _page_changes(
        self,
        rows: Sequence[Any],
        entered: Sequence[tuple[str, str, bytes]],
        end: int,
        principal: Principal | None,
        *,
        raw_json: bool,
    ) -> tuple[list[PulledChange], list[RecordFacts]]:
        """A pull page's changes (masked for the principal) and the heads and facts of the
        records that entered its scope."""
        wrap = (lambda raw: msgspec.Raw(raw.encode())) if raw_json else _json_decode
        # ID numbers are masked, or opened for admins; the unscoped caller's go through here too.
        masked = self._masked
        hiding = hides_sensitive(principal)
        pulled = []
        # A record that entered the scope comes whole, as its heads and facts (below): its
        # changes of this page are in that state already, and merged again a change born
        # superseded would come back as a head.
        whole = {(collection, record_id) for collection, record_id, _ in entered}
        for row in rows:
            if whole and (row.collection, row.record_id) in whole:
                continue
            if (
                hiding
                and (row.collection, row.field) in _SENSITIVE_PAIRS
                and is_hidden_json(row.collection, row.field, row.value)
            ):
                continue
            value = wrap(row.value)
            if (row.collection, row.field) in masked:
                shown = mask_value(
                    principal, self.collections, row.collection, row.field, _json_decode(row.value)
                )
                value = msgspec.Raw(_json_encode(shown)) if raw_json else shown
            pulled.append(
                PulledChange(
                    id=row.id,
                    collection=row.collection,
                    record_id=row.record_id,
                    field=row.field,
                    op=row.op,
                    value=value,
                    hlc=row.hlc,
                    pred=wrap(row.pred),
                    seq=row.seq,
                )
            )
        facts: list[RecordFacts] = []
        for collection, record_id, blob in entered:
            state = state_codec.decode(blob)
            for head in visible_heads(principal, list(state.heads.values())):
                pulled.append(_as_pulled(mask_change(principal, self.collections, head), end))
            if state.covered or state.pending:
                covered, pending = snapshot_facts(state)
                facts.append(
                    RecordFacts(collection=collection, id=record_id, covered=covered, pending=pending)
                )
        return pulled, facts

    async def pull_json(
        self, since: str | None, limit: int, *, principal: Principal | None = None, at_least: int = 0
    ) -> tuple[list[str], str, bool]:
        """``pull`` for an unscoped caller and a JSON response: each change as its JSON text, made
        by the database, so the response is the rows joined, with no object per change and
        nothing re-encoded. Scoped callers go through ``pull`` (filters, masks, moves)."""
        assert not is_scoped(principal), "scoped pulls filter and mask: use pull()"
        # One round trip: the page after the cursor's seq, and the position to judge the cursor
        # by (its epoch, the last seq, the compaction floor); a page of a cursor judged wrong is
        # dropped unsent.
        after = min(_cursor_seq(since), _MAX_SEQ)
        upper = min(after + limit + 1, _MAX_SEQ)
        params = (after, upper, limit + 1)
        read = await self._replica_pull(since, max(after, at_least), params) if self.replicas else None
        if read is None:
            rows = [row[0] for row in await pooled_rows(self._reader, self._pull_json, *params)]
            epoch, last_seq, floor = _position_decode(_take_position(rows))
        else:
            rows, (epoch, last_seq, floor) = read
        after = self._parse_cursor(since, epoch, last_seq, principal, floor)
        more = len(rows) > limit
        del rows[limit:]
        # Without more rows than the page, every seq up to the bound was read: the cursor moves
        # there, past any gap an erasure left (server/registry/erasure.py), and says whether there is more.
        end = _seq_of(rows[-1]) if more else max(after, min(upper, last_seq))
        more = more or end < last_seq
        for index, row in enumerate(rows):
            if _SEALED_JSON in row:
                rows[index] = self._opened(row)
        return rows, sync_cursor(epoch, end, scope_fingerprint(principal)), more

    def _opened(self, row: str) -> str:
        """A pulled row (JSON text) with its sealed ID number opened, for the unscoped caller."""
        change = _json_decode(row)
        change["value"] = mask_value(
            None, self.collections, change["collection"], change["field"], change["value"]
        )
        return _json_encode(change).decode()

    async def _replica_pull(
        self, since: str | None, wanted_seq: int, params: tuple[int, int, int]
    ) -> tuple[list[str], tuple[str, int, int]] | None:
        """``pull_json``'s page from a standby that holds ``wanted_seq`` of the cursor's epoch;
        None when none can serve it (the primary does)."""
        replica = self.replicas.pick()
        if replica is None:
            return None
        try:
            rows = [row[0] for row in await pooled_rows(replica.reader, _PULL_JSON_REPLICA, *params)]
        except Exception as error:
            if classify_database_error(error) != "unavailable":
                raise
            replica.mark_down(error)
            return None
        epoch, last_seq, floor, in_recovery = _replica_position_decode(_take_position(rows))
        try:
            self.replicas.check(
                in_recovery=in_recovery,
                epoch=epoch,
                last_seq=last_seq,
                wanted_epoch=_cursor_epoch(since),
                wanted_seq=wanted_seq,
            )
        except ReplicaBehindError:
            return None
        return rows, (epoch, last_seq, floor)

    # ------------------------------------------------------------------ snapshot

    def _encode_page(self, epoch: str, sync_seq: int, collection: str, record_id: str) -> str:
        return encode_page_cursor([epoch, sync_seq, collection, record_id])

    def _decode_page(self, page: str) -> tuple[str, int, str, str]:
        epoch, sync_seq, collection, record_id = decode_page_cursor(
            page, tuple[str, int, str, str], "snapshot"
        )
        # A forged page must not carry text the database refuses (PostgreSQL: NUL) into a query.
        if (collection and collection not in self.collections) or (
            record_id and not RECORD_ID_PATTERN.match(record_id)
        ):
            raise GridsyncError(400, "bad_cursor", "snapshot cursor was not issued by this server")
        return epoch, sync_seq, collection, record_id

    def _with_states(self, page_keys: Select[tuple[str, str]]) -> Select[tuple[str, str, bytes, int]]:
        """The page's records with their states and the seqs they were last written at, in key
        order."""
        if not self._sqlite:
            # PostgreSQL's top-N sort carries the states cheaply; a join back costs more here.
            return page_keys.add_columns(records.c.state, records.c.updated_seq)
        # SQLite would sort whole rows, states included, of everything after the cursor (the
        # scope's OR of indexes comes unordered): sort the keys alone, then fetch the page's
        # states by primary key.
        found = page_keys.subquery()
        same = and_(records.c.collection == found.c.collection, records.c.record_id == found.c.record_id)
        return (
            select(records.c.collection, records.c.record_id, records.c.state, records.c.updated_seq)
            .select_from(records.join(found, same))
            .order_by(records.c.collection, records.c.record_id)
        )

    async def snapshot(
        self, collection: str | None, page: str | None, limit: int, principal: Principal | None = None
    ) -> tuple[list[SnapshotRecord], str, bool, str]:
        """One page of current record heads: (records, next page cursor, more, pull cursor).

        The pull cursor is read before the first page and carried in the page cursor, so every
        page names the same one; pulling from it afterwards catches all later changes. A
        standby serves a page only if it holds that pull cursor (its heads are then at least as
        new)."""
        if collection is not None and collection not in self.collections:
            known = ", ".join(sorted(self.collections))
            raise GridsyncError(
                404, "unknown_collection", f"unknown collection {collection!r}; known: {known}"
            )
        if self.replicas and (replica := self.replicas.pick()) is not None:
            try:
                return await self._snapshot(replica.engine, collection, page, limit, principal)
            except ReplicaBehindError:
                pass
            except Exception as error:
                if classify_database_error(error) != "unavailable":
                    raise
                replica.mark_down(error)
        return await self._snapshot(self.engine, collection, page, limit, principal)

    async def _snapshot(
        self,
        engine: AsyncEngine,
        collection: str | None,
        page: str | None,
        limit: int,
        principal: Principal | None,
    ) -> tuple[list[SnapshotRecord], str, bool, str]:
        wanted = self._decode_page(page) if page else None
        async with engine.connect() as connection:
            epoch, last_seq, floor = await self._position(
                connection,
                engine is not self.engine,
                wanted[0] if wanted else None,
                wanted[1] if wanted else 0,
            )
            if page:
                page_epoch, sync_seq, after_collection, after_id = self._decode_page(page)
                self._parse_cursor(sync_cursor(page_epoch, sync_seq), epoch, last_seq, floor=floor)
            else:
                sync_seq, after_collection, after_id = last_seq, collection or "", ""
            key = tuple_(records.c.collection, records.c.record_id)
            page_keys = select(records.c.collection, records.c.record_id).where(
                key > tuple_(bindparam("after_collection"), bindparam("after_id"))
            )
            if collection is not None:
                page_keys = page_keys.where(records.c.collection == collection)
            if is_scoped(principal):
                page_keys = page_keys.where(reads_filter(principal))
            page_keys = page_keys.order_by(records.c.collection, records.c.record_id).limit(limit + 1)
            query = self._with_states(page_keys)
            params = {"after_collection": after_collection, "after_id": after_id}
            rows = (await connection.execute(query, params)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        page_records = [self._snapshot_record(row, sync_seq, principal) for row in rows]
        last_collection, last_id = (
            (rows[-1].collection, rows[-1].record_id)
            if rows
            else (
                after_collection,
                after_id,
            )
        )
        next_page = self._encode_page(epoch, sync_seq, last_collection, last_id)
        return page_records, next_page, more, sync_cursor(epoch, sync_seq, scope_fingerprint(principal))

    def _snapshot_record(self, row: Any, sync_seq: int, principal: Principal | None) -> SnapshotRecord:
        """One record of a snapshot page: its heads (masked for the principal) and facts."""
        state = state_codec.decode(row.state)
        heads = visible_heads(principal, list(state.heads.values()))
        # Only the heads of masked fields go through the mask (most heads of a page are not): masked
        # for most roles, opened from their seal for admins.
        if self._masked:
            heads = [
                mask_change(principal, self.collections, head)
                if (head.collection, head.field) in self._masked
                else head
                for head in heads
            ]
        record = SnapshotRecord(collection=row.collection, id=row.record_id, heads=heads)
        # What supersession knows beyond the heads (sync.merge.absorb_snapshot); usually
        # nothing, and then left out of the page.
        if state.covered or state.pending:
            record.covered, record.pending = snapshot_facts(state)
        if row.updated_seq > sync_seq:
            # Written while the snapshot was paged: the pull from sync_cursor sends again
            # changes this state already holds, which the phone must not merge twice.
            record.seq = row.updated_seq
        return record

    # ------------------------------------------------------------------ records

    async def record(self, collection: str, record_id: str, principal: Principal | None = None) -> RecordView:
        spec = self.collections.get(collection)
        if spec is None:
            known = ", ".join(sorted(self.collections))
            raise GridsyncError(
                404, "unknown_collection", f"unknown collection {collection!r}; known: {known}"
            )
        if not RECORD_ID_PATTERN.match(record_id):
            # No such id can exist, and PostgreSQL refuses some of them (NUL) in a query.
            raise GridsyncError(404, "not_found", f"no record {record_id!r} in {collection!r}")
        async with self.read_engine().connect() as connection:
            query = select(records.c.state).where(
                records.c.collection == collection, records.c.record_id == record_id, reads_filter(principal)
            )
            blob = (await connection.execute(query)).scalar_one_or_none()
        if blob is None:
            # Out of scope answers like a missing record: existence itself is not disclosed.
            raise GridsyncError(404, "not_found", f"no record {record_id!r} in {collection!r}")
        return mask_view(principal, self.collections, record_view(state_codec.decode(blob), spec, record_id))

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def change_count(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(changes))).scalar_one())
