"""Reading the conflict inbox: the filtered, counted list and one conflict's full detail.

An admin sees the conflicts of the communities they administer (a district admin: all); another
community's conflict answers like an unknown id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Select, and_, case, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import CollectionSpec
from schemas.inbox import (
    ConflictCounts,
    ConflictDetail,
    ConflictEvent,
    ConflictFilter,
    ConflictPage,
    ConflictSummary,
    FieldConflict,
    HeadDetail,
    Writer,
)
from schemas.views import Flag
from server.access.personal import is_sealed, reveal
from server.access.policy import mask_view
from server.access.principals import Principal
from server.db.paging import chunks, decode_page_cursor, encode_page_cursor
from server.db.tables import changes, conflict_events, conflicts, devices, records, users
from server.errors import GridsyncError
from server.inbox.tracking import KINDS, head_ids
from server.registry.lists import Registry, ScopeFilter
from server.registry.reports import Reports
from server.sync.store import SyncStore
from sync.hlc import parse_hlc
from sync.merge import DELETE_CONFLICT_KEY, RecordState, record_view, state_codec

__all__ = ["HISTORY_LIMIT", "InboxQuery"]

_json_decode = msgspec.json.Decoder().decode
# Where a conflict's record sits (kept current by the push, server/access/places.py): the filters.
_SCOPE = {"community_id": records.c.community_id, "grid_id": records.c.grid_id}
HISTORY_LIMIT = 200


def _fence_filter(column: Any, name: str) -> Any:
    return column.like(f"%,{name},%")


def _unfence(raw: str) -> list[str]:
    return [part for part in raw.split(",") if part]


def _encode_cursor(opened_seq: int, conflict_id: str) -> str:
    return encode_page_cursor([opened_seq, conflict_id])


def _decode_cursor(cursor: str) -> tuple[int, str]:
    return decode_page_cursor(cursor, tuple[int, str], "conflict list")


def _writer(row: Any, cls: type[Writer] = Writer) -> Any:
    parsed = parse_hlc(row.hlc)
    # The inbox is an admin's: an ID number shows whole (opened from its seal).
    value = _json_decode(row.value)
    return cls(
        change_id=row.id,
        op=row.op,
        field=row.field,
        value=reveal(row.collection, row.field, value) if is_sealed(value) else value,
        hlc=row.hlc,
        replica_id=parsed.replica_id,
        device_clock_ms=parsed.wall_ms,
        received_at_ms=row.received_at_ms,
        seq=row.seq,
        device_id=row.device_id,
        device_name=row.device_name,
        user_id=row.user_id,
        user_name=row.user_name,
        pred=list(_json_decode(row.pred)),
    )


def _change_query() -> Select[Any]:
    return select(
        changes.c.seq,
        changes.c.id,
        changes.c.collection,
        changes.c.field,
        changes.c.op,
        changes.c.value,
        changes.c.hlc,
        changes.c.pred,
        changes.c.device_id,
        changes.c.received_at_ms,
        devices.c.name.label("device_name"),
        users.c.id.label("user_id"),
        users.c.name.label("user_name"),
    ).select_from(
        changes.outerjoin(devices, devices.c.id == changes.c.device_id).outerjoin(
            users, users.c.id == devices.c.user_id
        )
    )


class InboxQuery:
    """The inbox's reads: the controllers and pages call it through ``ConflictInbox``; no HTTP."""

    def __init__(self, engine: AsyncEngine, store: SyncStore) -> None:
        self.engine = engine
        self.store = store
        self.collections: Mapping[str, CollectionSpec] = store.collections

    # ------------------------------------------------------------------ visibility

    def _visible(self, principal: Principal) -> Any:
        """A where-clause for the conflicts this admin may see (None: all of them)."""
        if principal.is_district_admin:
            return None
        mine = list(principal.scope.communities)
        if not mine or not principal.is_admin:
            return false()
        return records.c.community_id.in_(mine)

    def _base(self, principal: Principal, where: ConflictFilter, skip: str | None = None) -> list[Any]:
        clauses: list[Any] = [conflicts.c.status == where.status]
        visible = self._visible(principal)
        if visible is not None:
            clauses.append(visible)
        if where.collection and skip != "collection":
            clauses.append(conflicts.c.collection == where.collection)
        if where.kind and skip != "kind":
            clauses.append(_fence_filter(conflicts.c.kinds, where.kind))
        if where.field:
            clauses.append(_fence_filter(conflicts.c.fields, where.field))
        for name, value in (("community_id", where.community), ("grid_id", where.grid)):
            if value and skip != name:
                clauses.append(_SCOPE[name] == value)
        return clauses

    def _from(self) -> Any:
        return conflicts.outerjoin(
            records,
            and_(
                records.c.collection == conflicts.c.collection, records.c.record_id == conflicts.c.record_id
            ),
        )

    def _summary_query(self) -> Select[Any]:
        extra = [column.label(name) for name, column in _SCOPE.items()]
        return select(
            conflicts,
            *extra,
            users.c.name.label("resolver_user"),
            devices.c.name.label("resolver_device"),
        ).select_from(
            self._from()
            .outerjoin(devices, devices.c.id == conflicts.c.resolved_by_device_id)
            .outerjoin(users, users.c.id == devices.c.user_id)
        )

    @staticmethod
    def _summary(row: Any) -> ConflictSummary:
        mapping = row._mapping
        return ConflictSummary(
            id=row.id,
            collection=row.collection,
            record_id=row.record_id,
            status=row.status,
            kinds=_unfence(row.kinds),
            fields=_unfence(row.fields),
            heads=_json_decode(row.heads),
            community_id=mapping.get("community_id"),
            grid_id=mapping.get("grid_id"),
            opened_at_ms=row.opened_at_ms,
            updated_at_ms=row.updated_at_ms,
            resolved_at_ms=row.resolved_at_ms,
            resolved_via=row.resolved_via,
            resolved_by_user=row.resolver_user,
            resolved_by_device=row.resolver_device,
            resolved_changes=_json_decode(row.resolved_changes) if row.resolved_changes else [],
        )

    # ------------------------------------------------------------------ list

    async def search(
        self, principal: Principal, where: ConflictFilter, cursor: str | None = None, limit: int = 50
    ) -> ConflictPage:
        """Newest first, paged by an opaque cursor; counts per kind, collection, community, grid
        (each facet counted under every filter but its own)."""
        if where.kind is not None and where.kind not in KINDS:
            raise GridsyncError(400, "unknown_kind", f"kind must be one of: {', '.join(KINDS)}")
        query = self._summary_query().where(*self._base(principal, where))
        if cursor:
            seq, conflict_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    conflicts.c.opened_seq < seq,
                    and_(conflicts.c.opened_seq == seq, conflicts.c.id < conflict_id),
                )
            )
        query = query.order_by(conflicts.c.opened_seq.desc(), conflicts.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
            counts = await self._counts(connection, principal, where)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].opened_seq, rows[-1].id) if more else None
        overspends: list[Flag] = []
        if where.status == "open" and where.kind in (None, "overspend") and not where.field:
            overspends = await self.overspends(principal, where)
            counts.by_kind["overspend"] = len(overspends)
            if not cursor and where.kind == "overspend":
                counts.total = len(overspends)
        return ConflictPage([self._summary(r) for r in rows], next_cursor, more, counts, overspends)

    async def overspends(self, principal: Principal, where: ConflictFilter) -> list[Flag]:
        """Residents whose offline redemptions together overspent their points balance."""
        if where.collection not in (None, "residents", "points"):
            return []
        reports = Reports(Registry(self.store), self.store.settings)
        scope = ScopeFilter(where.community, where.grid, principal=principal)
        found = (await reports.flags(scope, "overspend")).flags
        if principal.is_district_admin:
            return found
        return [flag for flag in found if principal.administers_community(flag.community_id)]

    async def _counts(self, connection: Any, principal: Principal, where: ConflictFilter) -> ConflictCounts:
        total = (
            await connection.execute(
                select(func.count()).select_from(self._from()).where(*self._base(principal, where))
            )
        ).scalar_one()
        kind_columns = [
            func.sum(case((_fence_filter(conflicts.c.kinds, kind), 1), else_=0)).label(kind) for kind in KINDS
        ]
        kind_row = (
            await connection.execute(
                select(*kind_columns).select_from(self._from()).where(*self._base(principal, where, "kind"))
            )
        ).one()
        by_kind = {kind: int(getattr(kind_row, kind) or 0) for kind in KINDS}

        async def grouped(column: Any, skip: str) -> dict[str, int]:
            query = (
                select(column, func.count())
                .select_from(self._from())
                .where(*self._base(principal, where, skip))
                .group_by(column)
            )
            return {str(key) if key is not None else "": n for key, n in await connection.execute(query)}

        by_collection = await grouped(conflicts.c.collection, "collection")
        by_community = await grouped(records.c.community_id, "community_id")
        by_grid = await grouped(records.c.grid_id, "grid_id")
        return ConflictCounts(int(total), by_kind, by_collection, by_community, by_grid)

    # ------------------------------------------------------------------ detail

    async def _row(self, connection: Any, conflict_id: str) -> Any:
        return (
            await connection.execute(self._summary_query().where(conflicts.c.id == conflict_id))
        ).one_or_none()

    def _check_visible(self, principal: Principal, row: Any) -> None:
        if principal.is_district_admin:
            return
        community = row._mapping.get("community_id")
        if not principal.administers_community(community):
            # The same answer as for an unknown id: another community's conflict ids reveal nothing.
            raise GridsyncError(404, "not_found", f"no conflict {row.id!r}")

    async def _state(self, connection: Any, collection: str, record_id: str) -> RecordState:
        blob = (
            await connection.execute(
                select(records.c.state).where(
                    records.c.collection == collection, records.c.record_id == record_id
                )
            )
        ).scalar_one_or_none()
        return RecordState() if blob is None else state_codec.decode(blob)

    async def _writers(self, connection: Any, ids: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        unique = sorted(set(ids))
        for chunk in chunks(unique):
            query = _change_query().where(changes.c.id.in_(chunk))
            found.update((row.id, row) for row in await connection.execute(query))
        return found

    async def detail(self, principal: Principal, conflict_id: str) -> ConflictDetail:
        async with self.engine.connect() as connection:
            row = await self._row(connection, conflict_id)
            if row is None:
                raise GridsyncError(404, "not_found", f"no conflict {conflict_id!r}")
            self._check_visible(principal, row)
            return await self._detail(connection, row)

    async def _detail(self, connection: Any, row: Any) -> ConflictDetail:
        summary = self._summary(row)
        state = await self._state(connection, summary.collection, summary.record_id)
        history, events, siblings = await self._activity(connection, summary)
        return ConflictDetail(
            conflict=summary,
            seen_heads=head_ids(summary.heads),
            fields=await self._field_conflicts(connection, summary),
            record=mask_view(
                None,
                self.collections,
                record_view(state, self.collections[summary.collection], summary.record_id),
            ),
            events=events,
            history=history,
            record_conflicts=siblings,
        )

    async def _field_conflicts(self, connection: Any, summary: ConflictSummary) -> list[FieldConflict]:
        """Each conflicting field's heads, newest first, with who wrote them and what they started from."""
        head_rows = await self._writers(connection, head_ids(summary.heads))
        preds = [p for r in head_rows.values() for p in _json_decode(r.pred)]
        pred_rows = await self._writers(connection, preds)
        fields: list[FieldConflict] = []
        for key, ids in summary.heads.items():
            heads: list[HeadDetail] = []
            for change_id in ids:
                head_row = head_rows.get(change_id)
                if head_row is None:
                    continue
                head: HeadDetail = _writer(head_row, HeadDetail)
                head.started_from = [
                    _writer(pred_rows[p])
                    for p in head.pred
                    if p in pred_rows and (key == DELETE_CONFLICT_KEY or pred_rows[p].field == key)
                ]
                heads.append(head)
            heads.sort(key=lambda h: (h.hlc, h.change_id), reverse=True)
            if heads and key != DELETE_CONFLICT_KEY:
                heads[0].shown = True
            distinct = {msgspec.json.encode(h.value) for h in heads}
            fields.append(FieldConflict(key, heads, len(distinct) > 1 or key == DELETE_CONFLICT_KEY))
        return fields

    async def _activity(
        self, connection: Any, summary: ConflictSummary
    ) -> tuple[list[Writer], list[ConflictEvent], list[ConflictSummary]]:
        """The record's latest changes, this conflict's events, and every conflict of the record."""
        history_rows = (
            await connection.execute(
                _change_query()
                .where(changes.c.collection == summary.collection, changes.c.record_id == summary.record_id)
                .order_by(changes.c.seq.desc())
                .limit(HISTORY_LIMIT)
            )
        ).all()
        event_rows = (
            await connection.execute(
                select(conflict_events, users.c.name.label("user_name"))
                .select_from(
                    conflict_events.outerjoin(devices, devices.c.id == conflict_events.c.device_id).outerjoin(
                        users, users.c.id == devices.c.user_id
                    )
                )
                .where(conflict_events.c.conflict_id == summary.id)
                .order_by(conflict_events.c.id)
            )
        ).all()
        siblings = (
            await connection.execute(
                self._summary_query()
                .where(
                    conflicts.c.collection == summary.collection, conflicts.c.record_id == summary.record_id
                )
                .order_by(conflicts.c.opened_seq.desc())
            )
        ).all()
        events = [
            ConflictEvent(e.event, e.at_ms, e.seq, _json_decode(e.heads), e.device_id, e.user_name)
            for e in event_rows
        ]
        return [_writer(r) for r in history_rows], events, [self._summary(s) for s in siblings]
