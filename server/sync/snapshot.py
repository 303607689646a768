"""The snapshot: every record's current heads, paged by key, to start a new phone.

The pull cursor is read before the first page and carried in the page cursor, so every page
names the same one; pulling from it afterwards catches all later changes. A standby serves a
page only if it holds that pull cursor (its heads are then at least as new).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, bindparam, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import CollectionSpec
from schemas.protocol import SnapshotRecord
from server.access.policy import is_scoped, mask_change, reads_filter, scope_fingerprint, visible_heads
from server.access.principals import Principal
from server.db.paging import decode_page_cursor, encode_page_cursor
from server.db.replicas import ReadReplicas
from server.db.tables import records
from server.errors import GridsyncError
from server.sync.cursors import sync_cursor
from server.sync.position import StoreReader, judge_cursor, read_position
from server.sync.records import collection_spec
from sync.merge import snapshot_facts, state_codec
from sync.validate import RECORD_ID_PATTERN

__all__ = ["SnapshotPage", "SnapshotReader"]

# (records, next page cursor, more, pull cursor)
SnapshotPage = tuple[list[SnapshotRecord], str, bool, str]


class SnapshotReader(StoreReader):
    """The snapshot's pages (``SyncStore.snapshots``)."""

    def __init__(
        self, engine: AsyncEngine, replicas: ReadReplicas, collections: dict[str, CollectionSpec]
    ) -> None:
        super().__init__(engine, replicas, collections)
        self._sqlite = engine.dialect.name == "sqlite"

    async def page(
        self, collection: str | None, page: str | None, limit: int, principal: Principal | None = None
    ) -> SnapshotPage:
        """One page of current record heads: (records, next page cursor, more, pull cursor)."""
        if collection is not None:
            collection_spec(self.collections, collection)

        async def read(engine: AsyncEngine, replicas: ReadReplicas | None) -> SnapshotPage:
            return await self._page(engine, replicas, collection, page, limit, principal)

        return await self.replicas.serve(self.engine, read)

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

    async def _page(
        self,
        engine: AsyncEngine,
        replicas: ReadReplicas | None,
        collection: str | None,
        page: str | None,
        limit: int,
        principal: Principal | None,
    ) -> SnapshotPage:
        wanted = self._decode_page(page) if page else None
        async with engine.connect() as connection:
            epoch, last_seq, floor = await read_position(
                connection, replicas, wanted[0] if wanted else None, wanted[1] if wanted else 0
            )
            if page:
                page_epoch, sync_seq, after_collection, after_id = self._decode_page(page)
                judge_cursor(sync_cursor(page_epoch, sync_seq), epoch, last_seq, floor=floor)
            else:
                sync_seq, after_collection, after_id = last_seq, collection or "", ""
            query = self._with_states(self._page_keys(collection, limit, principal))
            params = {"after_collection": after_collection, "after_id": after_id}
            rows = (await connection.execute(query, params)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        page_records = [self._record(row, sync_seq, principal) for row in rows]
        last_collection, last_id = (
            (rows[-1].collection, rows[-1].record_id) if rows else (after_collection, after_id)
        )
        next_page = encode_page_cursor([epoch, sync_seq, last_collection, last_id])
        return page_records, next_page, more, sync_cursor(epoch, sync_seq, scope_fingerprint(principal))

    @staticmethod
    def _page_keys(
        collection: str | None, limit: int, principal: Principal | None
    ) -> Select[tuple[str, str]]:
        """The keys of the page's records (one more than the page: is there more?), after the
        key bound as ``after_collection`` and ``after_id``, in the caller's read scope."""
        key = tuple_(records.c.collection, records.c.record_id)
        page_keys = select(records.c.collection, records.c.record_id).where(
            key > tuple_(bindparam("after_collection"), bindparam("after_id"))
        )
        if collection is not None:
            page_keys = page_keys.where(records.c.collection == collection)
        if is_scoped(principal):
            page_keys = page_keys.where(reads_filter(principal))
        return page_keys.order_by(records.c.collection, records.c.record_id).limit(limit + 1)

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

    def _record(self, row: Any, sync_seq: int, principal: Principal | None) -> SnapshotRecord:
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
