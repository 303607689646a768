"""Reading the registry back: scoped record lists, and the scoped scans reports build on.

Scoped reads use the scope columns of ``records`` (``server/scope.py``): a filter by community,
grid or building is an index range scan. Filters on values inside a record (status, tag) decode
the state blobs of the rows the scope selects.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec
from schemas.protocol import ConflictHead, RecordView
from schemas.views import RecordPage
from server.store import SyncError, SyncStore
from server.tables import records
from sync.merge import RecordState, field_values, record_view, state_codec

__all__ = ["Registry", "ScopeFilter", "Scoped", "mask_id_number", "masked_view"]

# Rows read per round while a value filter (status, tag) discards some of them.
_SCAN = 500


def mask_id_number(value: Any) -> Any:
    """``110101195001011234`` -> ``110101********1234``: region and last four only."""
    if not isinstance(value, str) or len(value) < 10:
        return value
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def masked_view(view: RecordView, spec: CollectionSpec) -> RecordView:
    """The view with its masked fields (a resident's ID number) masked, conflicts included."""
    names = [name for name, f in spec.fields.items() if f.masked]
    if not names:
        return view
    fields = {k: mask_id_number(v) if k in names else v for k, v in view.fields.items()}
    conflicts = {
        k: [
            ConflictHead(
                change_id=h.change_id,
                value=mask_id_number(h.value),
                hlc=h.hlc,
                replica_id=h.replica_id,
                op=h.op,
                field=h.field,
            )
            for h in heads
        ]
        if k in names
        else heads
        for k, heads in view.conflicts.items()
    }
    return RecordView(view.collection, view.id, view.deleted, fields, conflicts)


@dataclass(frozen=True, slots=True)
class ScopeFilter:
    community: str | None = None
    grid: str | None = None
    building: str | None = None
    household: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
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


def _encode_cursor(record_id: str) -> str:
    return base64.urlsafe_b64encode(record_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise SyncError(400, "bad_cursor", "list cursor was not issued by this server") from None


class Registry:
    """The read side of the registry, over the sync store's engine."""

    def __init__(self, store: SyncStore) -> None:
        self.store = store
        self.engine = store.engine
        self.collections = store.collections

    def spec(self, collection: str) -> CollectionSpec:
        spec = self.collections.get(collection)
        if spec is None:
            known = ", ".join(sorted(self.collections))
            raise SyncError(404, "unknown_collection", f"unknown collection {collection!r}; known: {known}")
        return spec

    async def since_seq(self, connection: AsyncConnection, updated_since: str | None) -> int:
        """A pull or push cursor as a seq (0 for None); 409 resync_required from another history."""
        if not updated_since:
            return 0
        # The store owns the cursor format; reuse its parser rather than a copy.
        epoch, last_seq = await self.store._position(connection)
        return self.store._parse_cursor(updated_since, epoch, last_seq)

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
            raise SyncError(400, "bad_filter", f"{collection} have no status to filter by")
        if tag is not None and "tags" not in spec.fields:
            raise SyncError(400, "bad_filter", f"{collection} have no tags to filter by")
        after = _decode_cursor(cursor) if cursor else ""
        found: list[RecordView] = []
        async with self.engine.connect() as connection:
            since = await self.since_seq(connection, updated_since)
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
                    view = record_view(state_codec.decode(row.state), spec, row.record_id)
                    if status is not None and view.fields.get("status") != status:
                        continue
                    if tag is not None and tag not in view.fields.get("tags", ()):
                        continue
                    found.append(masked_view(view, spec))
                    if len(found) > limit:
                        break
        more = len(found) > limit
        found = found[:limit]
        next_cursor = _encode_cursor(found[-1].id) if found and more else _encode_cursor(after)
        return RecordPage(records=found, cursor=next_cursor, more=more)

    async def values(self, collection: str, record_id: str) -> dict[str, Any] | None:
        """The merged fields of one record (None when absent or deleted)."""
        spec = self.spec(collection)
        async with self.engine.connect() as connection:
            blob = (
                await connection.execute(
                    select(records.c.state).where(
                        records.c.collection == collection,
                        records.c.record_id == record_id,
                        records.c.deleted.is_(False),
                    )
                )
            ).scalar_one_or_none()
        return None if blob is None else field_values(state_codec.decode(blob), spec)
