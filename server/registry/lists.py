"""Reading the registry back: scoped record lists, and the scoped scans reports build on.

Scoped reads use the scope columns of ``records`` (``server/access/places.py``): a filter by community,
grid or building is an index range scan. Filters on values inside a record (status, tag) decode
the state blobs of the rows the scope selects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec
from schemas.protocol import RecordView
from schemas.views import RecordPage
from server.access.policy import is_scoped, mask_view, reads_filter
from server.access.principals import Principal
from server.db.paging import decode_page_cursor, encode_page_cursor
from server.db.tables import records
from server.errors import GridsyncError
from server.sync.position import judge_cursor, read_position
from server.sync.records import collection_spec
from server.sync.store import SyncStore
from sync.merge import RecordState, field_values, record_view, state_codec

__all__ = ["Registry", "ScopeFilter", "Scoped", "masked_view", "scan"]

# Rows read per round while a value filter (status, tag) discards some of them.
_SCAN = 500


def masked_view(
    view: RecordView, principal: Principal | None, collections: Mapping[str, CollectionSpec]
) -> RecordView:
    """The view as ``principal`` may see it: ID numbers masked for non-admins (opened for
    admins), sensitive data left out for the roles kept from it, in the conflicts too; the same
    as the single-record endpoint."""
    return mask_view(principal, collections, view)


@dataclass(frozen=True, slots=True)
class ScopeFilter:
    community: str | None = None
    grid: str | None = None
    building: str | None = None
    household: str | None = None
    # Only what this caller may read (docs/security.md); None: everything (server-side tools).
    principal: Principal | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if is_scoped(self.principal):
            query = query.where(reads_filter(self.principal))
        for column, value in (
            (records.c.community_id, self.community),
            (records.c.grid_id, self.grid),
            (records.c.building_id, self.building),
            (records.c.household_id, self.household),
        ):
            if value is not None:
                query = query.where(column == value)
        return query


@dataclass(slots=True)
class Scoped:
    """A record read by a scoped scan: its id, scope columns and decoded state."""

    record_id: str
    state: RecordState
    deleted: bool
    community_id: str | None
    grid_id: str | None
    building_id: str | None
    household_id: str | None


async def scan(
    connection: AsyncConnection, collection: str, where: ScopeFilter, *, include_deleted: bool = False
) -> AsyncIterator[Scoped]:
    """Every record of ``collection`` in scope, decoded, in no particular order."""
    query = where.apply(
        select(
            records.c.record_id,
            records.c.state,
            records.c.deleted,
            records.c.community_id,
            records.c.grid_id,
            records.c.building_id,
            records.c.household_id,
        ).where(records.c.collection == collection)
    )
    if not include_deleted:
        query = query.where(records.c.deleted.is_(False))
    result = await connection.stream(query.execution_options(yield_per=2000))
    async for row in result:
        yield Scoped(
            row.record_id,
            state_codec.decode(row.state),
            bool(row.deleted),
            row.community_id,
            row.grid_id,
            row.building_id,
            row.household_id,
        )


# A list cursor is the last record id of the page, marked so another kind of cursor is refused.
def _encode_cursor(record_id: str) -> str:
    return encode_page_cursor(["list", record_id])


def _decode_cursor(cursor: str) -> str:
    _, record_id = decode_page_cursor(cursor, tuple[Literal["list"], str], "list")
    return record_id


class Registry:
    """The read side of the registry, over the sync store's engine."""

    def __init__(self, store: SyncStore) -> None:
        self.store = store
        # Lists and reports only read: a standby serves them when there is one.
        self.engine = store.replicas.engine_or(store.engine)
        self.collections = store.collections

    def spec(self, collection: str) -> CollectionSpec:
        return collection_spec(self.collections, collection)

    async def since_seq(
        self, connection: AsyncConnection, updated_since: str | None, principal: Principal | None
    ) -> int:
        """A pull or push cursor as a seq (0 for None); 409 resync_required from another history."""
        if not updated_since:
            return 0
        # The pull's own judge (server/sync/position.py): cursors are checked against the
        # caller's scope like pull's. Record filters read records.updated_seq, which compaction
        # never touches: no floor here.
        epoch, last_seq, _ = await read_position(connection)
        return judge_cursor(updated_since, epoch, last_seq, principal)

    async def page(
        self,
        collection: str,
        *,
        limit: int,
        cursor: str | None = None,
        where: ScopeFilter = ScopeFilter(),
        status: str | None = None,
        tag: str | None = None,
        updated_since: str | None = None,
        include_deleted: bool = False,
    ) -> RecordPage:
        """One page of records by id, filtered; each in the shape of ``GET /v1/records/{c}/{id}``."""
        spec = self.spec(collection)
        if status is not None and "status" not in spec.fields:
            raise GridsyncError(400, "bad_filter", f"{collection} have no status to filter by")
        if tag is not None and "tags" not in spec.fields:
            raise GridsyncError(400, "bad_filter", f"{collection} have no tags to filter by")
        after = _decode_cursor(cursor) if cursor else ""
        found: list[RecordView] = []
        async with self.engine.connect() as connection:
            since = await self.since_seq(connection, updated_since, where.principal)
            base = where.apply(
                select(records.c.record_id, records.c.state).where(records.c.collection == collection)
            )
            if since:
                base = base.where(records.c.updated_seq > since)
            if not include_deleted:
                base = base.where(records.c.deleted.is_(False))
            exhausted = False
            while len(found) <= limit and not exhausted:
                query = base.where(records.c.record_id > after).order_by(records.c.record_id).limit(_SCAN)
                rows = (await connection.execute(query)).all()
                exhausted = len(rows) < _SCAN
                for row in rows:
                    after = row.record_id
                    # Filtered as the caller may read it: a filter must not tell what is hidden.
                    view = masked_view(
                        record_view(state_codec.decode(row.state), spec, row.record_id),
                        where.principal,
                        self.collections,
                    )
                    if status is not None and view.fields.get("status") != status:
                        continue
                    if tag is not None and tag not in view.fields.get("tags", ()):
                        continue
                    found.append(view)
                    if len(found) > limit:
                        break
        more = len(found) > limit
        found = found[:limit]
        next_cursor = _encode_cursor(found[-1].id) if found and more else _encode_cursor(after)
        return RecordPage(records=found, cursor=next_cursor, more=more)

    async def values(self, collection: str, record_id: str, where: ScopeFilter) -> dict[str, Any] | None:
        """The merged fields of one record in scope (None when absent, deleted or out of scope)."""
        spec = self.spec(collection)
        query = where.apply(
            select(records.c.state).where(
                records.c.collection == collection,
                records.c.record_id == record_id,
                records.c.deleted.is_(False),
            )
        )
        async with self.engine.connect() as connection:
            blob = (await connection.execute(query)).scalar_one_or_none()
        return None if blob is None else field_values(state_codec.decode(blob), spec)
