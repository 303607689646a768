"""The pull page decoded: the changes after a cursor through the caller's read scope, masked
for its role, with the records that left the scope and the heads of those that entered it.

Every scoped pull, and every pull answered in MessagePack, comes here; an unscoped caller's
JSON page is made by the database (``server.sync.pull_json``). Either database serves the page:
a standby when it holds the cursor (``server.db.replicas``), else the primary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.protocol import Change, PulledChange, RecordFacts, RecordRef
from server.access.policy import (
    SENSITIVE_NOTES,
    TAG_FIELDS,
    hides_sensitive,
    is_hidden_json,
    is_scoped,
    mask_change,
    mask_value,
    moves_for,
    reads_filter,
    scope_fingerprint,
    visible_heads,
)
from server.access.principals import Principal
from server.db.replicas import ReadReplicas
from server.db.tables import changes, records
from server.sync.cursors import cursor_epoch, cursor_seq, sync_cursor
from server.sync.position import StoreReader, judge_cursor, read_position
from sync.merge import op_name, snapshot_facts, state_codec

__all__ = ["PullPage", "PullReader", "change_from_row"]

PullPage = tuple[list[PulledChange], str, bool, list[RecordRef], list[RecordFacts]]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

_PULLED_COLUMNS = ("seq", "id", "collection", "record_id", "field", "op", "value", "hlc", "pred")
_SENSITIVE_PAIRS = SENSITIVE_NOTES | TAG_FIELDS


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


class PullReader(StoreReader):
    """The decoded pull page (``SyncStore.pulls``)."""

    async def page(
        self,
        since: str | None,
        limit: int,
        *,
        raw_json: bool = True,
        principal: Principal | None = None,
        at_least: int = 0,
    ) -> PullPage:
        """Changes after ``since`` in server order, limited to the principal's scope, the records
        that left that scope, and what supersession knows beyond the heads of those that entered
        it: (changes, cursor, more, left, facts). With ``raw_json`` the values stay as the stored
        JSON text (for a JSON response: no decode and re-encode). ``at_least``: a seq the page's
        database must hold (the exchange's own push), whichever database serves it."""

        async def read(engine: AsyncEngine, replicas: ReadReplicas | None) -> PullPage:
            return await self._page(engine, replicas, since, limit, raw_json, principal, at_least)

        return await self.replicas.serve(self.engine, read)

    async def _page(
        self,
        engine: AsyncEngine,
        replicas: ReadReplicas | None,
        since: str | None,
        limit: int,
        raw_json: bool,
        principal: Principal | None,
        at_least: int,
    ) -> PullPage:
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
            epoch, last_seq, floor = await read_position(
                connection, replicas, cursor_epoch(since), max(cursor_seq(since), at_least)
            )
            after = judge_cursor(since, epoch, last_seq, principal, floor)
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
        pulled = self._page_changes(rows, entered, principal, raw_json=raw_json)
        heads, facts = self._entered(entered, end, principal)
        pulled += heads
        return pulled, sync_cursor(epoch, end, scope_fingerprint(principal)), more, left, facts

    def _page_changes(
        self,
        rows: Sequence[Any],
        entered: Sequence[tuple[str, str, bytes]],
        principal: Principal | None,
        *,
        raw_json: bool,
    ) -> list[PulledChange]:
        """A pull page's changes, masked for the principal."""
        wrap: Callable[[str], Any] = (lambda raw: msgspec.Raw(raw.encode())) if raw_json else _json_decode
        # ID numbers are masked, or opened for admins; the unscoped caller's go through here too.
        masked = self._masked
        hiding = hides_sensitive(principal)
        pulled = []
        # A record that entered the scope comes whole, as its heads and facts (``_entered``): its
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
        return pulled

    def _entered(
        self,
        entered: Sequence[tuple[str, str, bytes]],
        end: int,
        principal: Principal | None,
    ) -> tuple[list[PulledChange], list[RecordFacts]]:
        """The records that entered the scope: their heads (masked), sent at the page's end,
        and what supersession knows beyond them."""
        heads: list[PulledChange] = []
        facts: list[RecordFacts] = []
        for collection, record_id, blob in entered:
            state = state_codec.decode(blob)
            for head in visible_heads(principal, list(state.heads.values())):
                heads.append(_as_pulled(mask_change(principal, self.collections, head), end))
            if state.covered or state.pending:
                covered, pending = snapshot_facts(state)
                facts.append(
                    RecordFacts(collection=collection, id=record_id, covered=covered, pending=pending)
                )
        return heads, facts
