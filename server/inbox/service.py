"""The conflict inbox: list, show and resolve the conflicts ``server.inbox.tracking`` records.

A resolution is never a side channel: it is an ordinary change (``pred`` = every head of the
field) written through ``SyncStore.push``, so it reaches every phone by pull, and the push that
writes it closes the conflict row in the same transaction. The heads an admin saw are checked
under the push's write lock; if they moved, or the conflict was closed meanwhile, nothing is
written and the caller gets 409 with the current state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from sqlalchemy import Select, and_, case, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import COLLECTIONS, CollectionSpec
from schemas.protocol import Change, ChangeResult, DeleteChange, RecordView, SetChange
from schemas.views import Flag
from server.access.accounts import AccountStore
from server.access.personal import is_sealed, mask_text, reveal, sealed_fields
from server.access.policy import mask_view
from server.access.principals import Principal
from server.db.paging import chunks, decode_page_cursor, encode_page_cursor
from server.db.tables import changes, conflict_events, conflicts, devices, records, users
from server.errors import GridsyncError
from server.inbox.tracking import KINDS, head_ids, heads_by_key, record_conflicts
from server.registry.lists import Registry, ScopeFilter
from server.registry.reports import Reports
from server.sync.store import SyncStore
from sync.client import new_change_id
from sync.hlc import format_hlc, parse_hlc
from sync.merge import (
    DELETE_CONFLICT_KEY,
    RecordKey,
    RecordState,
    record_view,
    state_codec,
)
from sync.validate import validate_change

__all__ = [
    "BulkItem",
    "BulkRequest",
    "BulkResult",
    "ConflictDetail",
    "ConflictFilter",
    "ConflictInbox",
    "ConflictPage",
    "ConflictSummary",
    "FieldChoice",
    "Resolution",
    "audit_bulk",
    "audit_resolution",
]

_json_decode = msgspec.json.Decoder().decode
# Where a conflict's record sits (kept current by the push, server/access/places.py): the filters.
_SCOPE = {"community_id": records.c.community_id, "grid_id": records.c.grid_id}
HISTORY_LIMIT = 200


class _HeadsMoved(Exception):  # noqa: N818 - raised inside the push to abort it
    def __init__(self, keys: set[RecordKey]) -> None:
        super().__init__(f"{len(keys)} records changed")
        self.keys = keys


# ---------------------------------------------------------------------------- messages


class ConflictSummary(msgspec.Struct, kw_only=True):
    id: str
    collection: str
    record_id: str
    status: str
    kinds: list[str]
    fields: list[str]
    heads: dict[str, list[str]]
    community_id: str | None = None
    grid_id: str | None = None
    opened_at_ms: int
    updated_at_ms: int
    resolved_at_ms: int | None = None
    resolved_via: str | None = None
    resolved_by_user: str | None = None
    resolved_by_device: str | None = None
    resolved_changes: list[str] = []


class ConflictCounts(msgspec.Struct):
    total: int
    by_kind: dict[str, int]
    by_collection: dict[str, int]
    by_community: dict[str, int]
    by_grid: dict[str, int]


class ConflictPage(msgspec.Struct):
    conflicts: list[ConflictSummary]
    cursor: str | None
    more: bool
    counts: ConflictCounts
    # Overspent points balances (first page of open conflicts only): derived from the
    # append-only ledger at read time, so they are listed here, not stored as conflicts.
    overspends: list[Flag] = []


class Writer(msgspec.Struct, kw_only=True):
    """Who wrote a change: the device it came from and its user, when it was made and arrived."""

    change_id: str
    op: str
    field: str | None
    value: Any
    hlc: str
    replica_id: str
    device_clock_ms: int
    received_at_ms: int | None = None
    seq: int | None = None
    device_id: str | None = None
    device_name: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    pred: list[str] = []


class HeadDetail(Writer, kw_only=True):
    # The value(s) this head's writer started from: the changes its pred names (same field).
    started_from: list[Writer] = []
    shown: bool = False


class FieldConflict(msgspec.Struct):
    field: str
    heads: list[HeadDetail]
    values_differ: bool


class ConflictEvent(msgspec.Struct):
    event: str
    at_ms: int
    seq: int
    heads: dict[str, list[str]]
    device_id: str | None
    user_name: str | None


class ConflictDetail(msgspec.Struct, kw_only=True):
    conflict: ConflictSummary
    # Send these back as ``seen_heads`` when resolving: the heads this page showed.
    seen_heads: list[str]
    fields: list[FieldConflict]
    record: RecordView
    events: list[ConflictEvent]
    history: list[Writer]
    # Every conflict this record has had, newest first (this one included).
    record_conflicts: list[ConflictSummary]


class FieldChoice(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One field's outcome: keep a head (its change id), or write a new value."""

    keep: str | None = None
    value: Any = msgspec.UNSET


class Resolution(msgspec.Struct, forbid_unknown_fields=True):
    seen_heads: list[str]
    fields: dict[str, FieldChoice] = {}
    # For delete-vs-edit: keep the record (its edits stay) or confirm the delete.
    record: Literal["keep", "delete"] | None = None


class ConflictFilter(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    status: Literal["open", "resolved"] = "open"
    community: str | None = None
    grid: str | None = None
    collection: str | None = None
    kind: str | None = None
    field: str | None = None


BulkRule = Literal["newest", "oldest", "keep", "delete"]


class BulkExpect(msgspec.Struct, forbid_unknown_fields=True):
    conflict_id: str
    heads: list[str]


class BulkRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Resolve one field of every open conflict matching ``filter`` by ``rule``.

    ``newest``/``oldest``: the head with the greatest/least device clock wins (scalar fields).
    ``keep``/``delete``: for ``field`` ``_deleted``, keep the records or confirm the deletes.
    Without ``expect`` it is a preview; to apply, send the preview's items back as ``expect``."""

    field: str
    rule: BulkRule
    filter: ConflictFilter = msgspec.field(default_factory=ConflictFilter)
    expect: list[BulkExpect] | None = None
    limit: int = 500


class BulkItem(msgspec.Struct, kw_only=True):
    conflict_id: str
    collection: str
    record_id: str
    field: str
    heads: list[str]
    value: Any = None
    chosen: str | None = None
    outcome: Literal["planned", "applied", "stale", "rejected"] = "planned"
    # Why a change was refused (``rejected``), e.g. a status move the request may not make.
    code: str | None = None


class BulkResult(msgspec.Struct):
    applied: bool
    items: list[BulkItem]


# ---------------------------------------------------------------------------- helpers


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


@dataclass(frozen=True, slots=True)
class _Planned:
    key: RecordKey
    conflict_id: str
    changes: list[Change]
    # The heads (per conflicting key) that must still be current when the push runs.
    expected: dict[str, list[str]]


class ConflictInbox:
    """The inbox service: the controllers and pages call it; it holds no HTTP."""

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
        spec = self.collections[summary.collection]
        state = await self._state(connection, summary.collection, summary.record_id)
        view = mask_view(None, self.collections, record_view(state, spec, summary.record_id))
        all_heads = head_ids(summary.heads)
        head_rows = await self._writers(connection, all_heads)
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
        return ConflictDetail(
            conflict=summary,
            seen_heads=all_heads,
            fields=fields,
            record=view,
            events=[
                ConflictEvent(e.event, e.at_ms, e.seq, _json_decode(e.heads), e.device_id, e.user_name)
                for e in event_rows
            ],
            history=[_writer(r) for r in history_rows],
            record_conflicts=[self._summary(s) for s in siblings],
        )

    # ------------------------------------------------------------------ resolve

    def _admin_hlc(self, principal: Principal) -> tuple[str, str]:
        replica = f"admin-{principal.user_id}"[:64]
        tick = parse_hlc(self.store.clock.now())
        return replica, format_hlc(tick.wall_ms, tick.counter, replica)

    def _plan(
        self,
        principal: Principal,
        key: RecordKey,
        conflict_id: str,
        state: RecordState,
        fields: Mapping[str, FieldChoice],
        record: str | None,
        *,
        partial: bool = False,
    ) -> _Planned:
        """The changes that resolve a record's conflict as chosen (validated, not written)."""
        collection, record_id = key
        spec = self.collections[collection]
        found = record_conflicts(state, spec)
        current = heads_by_key(found)
        for name in fields:
            if name not in found or name == DELETE_CONFLICT_KEY:
                raise GridsyncError(
                    400,
                    "not_in_conflict",
                    f"field {name!r} is not in conflict; conflicting: {', '.join(found)}",
                )
        if record is not None and DELETE_CONFLICT_KEY not in found:
            raise GridsyncError(400, "not_in_conflict", "this record has no delete-vs-edit conflict")
        if DELETE_CONFLICT_KEY in found and record is None:
            raise GridsyncError(
                400,
                "incomplete_resolution",
                "this record was deleted while edited: choose record keep or delete",
            )

        def stamp() -> dict[str, Any]:
            _replica, hlc = self._admin_hlc(principal)
            return {"id": new_change_id(), "collection": collection, "record_id": record_id, "hlc": hlc}

        if record == "delete":
            if fields:
                raise GridsyncError(400, "delete_with_fields", "a confirmed delete takes no field values")
            delete = DeleteChange(**stamp(), pred=tuple(sorted(state.heads)))
            return _Planned(key, conflict_id, [delete], current)

        missing = [name for name in found if name != DELETE_CONFLICT_KEY and name not in fields]
        if missing and not partial:
            raise GridsyncError(
                400,
                "incomplete_resolution",
                f"choose a head or a value for every conflicting field: {', '.join(missing)}",
            )
        field_heads: dict[str, list[Change]] = {}
        for change in state.heads.values():
            if not isinstance(change, DeleteChange):
                field_heads.setdefault(change.field, []).append(change)
        deletes = tuple(sorted(c.id for c in state.heads.values() if isinstance(c, DeleteChange)))
        planned: list[Change] = []
        for name, choice in fields.items():
            heads = field_heads[name]
            if (choice.keep is None) == (choice.value is msgspec.UNSET):
                raise GridsyncError(
                    400, "bad_choice", f"field {name!r}: give either keep (a head id) or value"
                )
            if choice.keep is not None:
                kept = next((h for h in heads if h.id == choice.keep), None)
                if kept is None:
                    raise GridsyncError(400, "unknown_head", f"field {name!r} has no head {choice.keep!r}")
                # Written again as it was typed; the push seals it again, to the same value.
                value = reveal(collection, name, kept.value)
            else:
                value = choice.value
            pred = tuple(sorted(h.id for h in heads))
            planned.append(SetChange(**stamp(), field=name, value=value, pred=pred))
        if record == "keep":
            # Restoring = any change naming the deletes: the first field write carries them, or
            # the newest live scalar value is written again.
            if planned:
                first = planned[0]
                assert isinstance(first, SetChange)
                planned[0] = SetChange(
                    id=first.id,
                    collection=collection,
                    record_id=record_id,
                    hlc=first.hlc,
                    field=first.field,
                    value=first.value,
                    pred=tuple(sorted({*first.pred, *deletes})),
                )
            else:
                scalars = [
                    h
                    for name, hs in field_heads.items()
                    if spec.fields.get(name) is not None and spec.fields[name].policy == "scalar"
                    for h in hs
                ]
                if not scalars:
                    raise GridsyncError(409, "nothing_to_keep", "the record has no field value to keep")
                # Writing the newest value again in place of that one head leaves any
                # conflict of its field exactly as it was.
                newest = max(scalars, key=lambda c: (c.hlc, c.id))
                assert newest.field is not None
                planned.append(
                    SetChange(
                        **stamp(),
                        field=newest.field,
                        value=reveal(collection, newest.field, newest.value),
                        pred=tuple(sorted({newest.id, *deletes})),
                    )
                )
        for change in planned:
            rejection = validate_change(change, self.collections)
            if rejection is not None:
                raise GridsyncError(400, rejection.code, rejection.message)
        return _Planned(key, conflict_id, planned, current)

    def _checker(self, plans: Sequence[_Planned], only_key: str | None = None) -> Any:
        """Aborts the push if any planned record's heads moved since they were read."""

        def check(states: Mapping[RecordKey, RecordState]) -> None:
            moved: set[RecordKey] = set()
            for plan in plans:
                current = heads_by_key(record_conflicts(states[plan.key], self.collections[plan.key[0]]))
                if only_key is not None:
                    if current.get(only_key) != plan.expected.get(only_key):
                        moved.add(plan.key)
                elif current != plan.expected:
                    moved.add(plan.key)
            if moved:
                raise _HeadsMoved(moved)

        return check

    async def _push(
        self, principal: Principal, planned: Sequence[Change], check: Any, via: str
    ) -> list[ChangeResult]:
        """Write the changes as the admin; returns the refused ones (each change is judged on
        its own, like a phone's: types, the status machine, scopes)."""
        replica, _ = self._admin_hlc(principal)
        outcome = await self.store.writer.push(
            principal.id, replica, planned, principal, check=check, via=via
        )
        return [r for r in outcome.results if r.status == "rejected"]

    async def resolve(self, principal: Principal, conflict_id: str, resolution: Resolution) -> ConflictDetail:
        async with self.engine.connect() as connection:
            row = await self._row(connection, conflict_id)
            if row is None:
                raise GridsyncError(404, "not_found", f"no conflict {conflict_id!r}")
            self._check_visible(principal, row)
            if row.status != "open":
                raise GridsyncError(
                    409,
                    "already_resolved",
                    "this conflict was already resolved",
                    current=await self._detail(connection, row),
                )
            key = (row.collection, row.record_id)
            state = await self._state(connection, *key)
        current = heads_by_key(record_conflicts(state, self.collections[key[0]]))
        if sorted(resolution.seen_heads) != head_ids(current):
            raise GridsyncError(
                409,
                "conflict_changed",
                "the conflict's heads changed since you loaded it: review the current values",
                current=await self.detail(principal, conflict_id),
            )
        plan = self._plan(principal, key, conflict_id, state, resolution.fields, resolution.record)
        try:
            refused = await self._push(principal, plan.changes, self._checker([plan]), "admin")
        except _HeadsMoved:
            latest = await self.detail(principal, conflict_id)
            code, message = (
                ("already_resolved", "this conflict was resolved meanwhile")
                if latest.conflict.status != "open"
                else (
                    "conflict_changed",
                    "the conflict's heads changed while resolving: review the current values",
                )
            )
            raise GridsyncError(409, code, message, current=latest) from None
        if refused:
            # The rest of the resolution stands; the conflict stays open with what is left.
            first = refused[0]
            raise GridsyncError(
                400,
                first.code or "rejected",
                f"{first.message or 'refused'}; the other choices were written",
                current=await self.detail(principal, conflict_id),
            )
        return await self.detail(principal, conflict_id)

    # ------------------------------------------------------------------ bulk

    async def bulk(self, principal: Principal, request: BulkRequest) -> BulkResult:
        """Preview (no ``expect``) or apply a rule over the open conflicts a filter selects."""
        if not 1 <= request.limit <= 1000:
            raise GridsyncError(400, "bad_limit", "limit must be between 1 and 1000")
        is_delete = request.field == DELETE_CONFLICT_KEY
        if is_delete != (request.rule in ("keep", "delete")):
            raise GridsyncError(
                400,
                "bad_rule",
                "rules newest and oldest apply to fields; keep and delete to field _deleted",
            )
        where = msgspec.structs.replace(request.filter, status="open", field=request.field)
        page = await self.search(principal, where, limit=request.limit)
        wanted = None if request.expect is None else {e.conflict_id: sorted(e.heads) for e in request.expect}
        items: list[BulkItem] = []
        plans: list[_Planned] = []
        async with self.engine.connect() as connection:
            for summary in page.conflicts:
                if wanted is not None and summary.id not in wanted:
                    continue
                key = (summary.collection, summary.record_id)
                state = await self._state(connection, *key)
                current = heads_by_key(record_conflicts(state, self.collections[key[0]]))
                heads = current.get(request.field)
                if heads is None:
                    continue
                item = BulkItem(
                    conflict_id=summary.id,
                    collection=key[0],
                    record_id=key[1],
                    field=request.field,
                    heads=heads,
                )
                items.append(item)
                if wanted is not None and wanted[summary.id] != heads:
                    item.outcome = "stale"
                    continue
                plans.append(self._bulk_plan(principal, key, summary.id, state, request, item))
        if wanted is None:
            return BulkResult(applied=False, items=items)
        items += await self._vanished(set(wanted) - {item.conflict_id for item in items}, request.field)
        # A record that moved between the read above and the write lock is dropped and the rest
        # retried; each round can only shrink the plan.
        refused: list[ChangeResult] = []
        while plans:
            try:
                refused = await self._push(
                    principal,
                    [c for p in plans for c in p.changes],
                    self._checker(plans, only_key=request.field),
                    "bulk",
                )
                break
            except _HeadsMoved as moved:
                plans = [p for p in plans if p.key not in moved.keys]
                for item in items:
                    if (item.collection, item.record_id) in moved.keys:
                        item.outcome = "stale"
        codes = {r.id: r.code for r in refused}
        for plan in plans:
            item = next(i for i in items if i.conflict_id == plan.conflict_id)
            failed = [codes[c.id] for c in plan.changes if c.id in codes]
            item.outcome, item.code = ("rejected", failed[0]) if failed else ("applied", None)
        return BulkResult(applied=True, items=items)

    async def _vanished(self, conflict_ids: set[str], field: str) -> list[BulkItem]:
        """Previewed conflicts no longer open (resolved meanwhile): reported stale, untouched."""
        if not conflict_ids:
            return []
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(conflicts.c.id, conflicts.c.collection, conflicts.c.record_id).where(
                    conflicts.c.id.in_(sorted(conflict_ids))
                )
            )
            return [
                BulkItem(
                    conflict_id=row.id,
                    collection=row.collection,
                    record_id=row.record_id,
                    field=field,
                    heads=[],
                    outcome="stale",
                )
                for row in rows
            ]

    def _bulk_plan(
        self,
        principal: Principal,
        key: RecordKey,
        conflict_id: str,
        state: RecordState,
        request: BulkRequest,
        item: BulkItem,
    ) -> _Planned:
        if request.rule in ("keep", "delete"):
            # Field conflicts of a kept record stay open for the admin.
            item.value = request.rule
            return self._plan(principal, key, conflict_id, state, {}, request.rule, partial=True)
        heads = [state.heads[i] for i in item.heads]
        pick = max if request.rule == "newest" else min
        chosen = pick(heads, key=lambda c: (c.hlc, c.id))
        item.value, item.chosen = reveal(key[0], chosen.field, chosen.value), chosen.id
        _replica, hlc = self._admin_hlc(principal)
        change = SetChange(
            id=new_change_id(),
            collection=key[0],
            record_id=key[1],
            hlc=hlc,
            field=request.field,
            value=item.value,
            pred=tuple(item.heads),
        )
        return _Planned(key, conflict_id, [change], {request.field: item.heads})


async def audit_resolution(
    accounts: AccountStore,
    principal: Principal,
    address: str,
    resolved: ConflictDetail,
    resolution: Resolution,
) -> None:
    await accounts.audit(
        principal,
        "conflict_resolve",
        resolved.conflict.id,
        address=address,
        community_id=resolved.conflict.community_id,
        collection=resolved.conflict.collection,
        record_id=resolved.conflict.record_id,
        seen_heads=resolution.seen_heads,
        record=resolution.record,
        # A value typed for a masked field (an ID number) is audited masked, never whole.
        fields={
            name: {"keep": c.keep}
            if c.keep is not None
            else {
                "value": mask_text(c.value)
                if isinstance(c.value, str)
                and (resolved.conflict.collection, name) in sealed_fields(COLLECTIONS)
                else c.value
            }
            for name, c in resolution.fields.items()
        },
        changes=resolved.conflict.resolved_changes,
    )


async def audit_bulk(
    accounts: AccountStore, principal: Principal, address: str, request: BulkRequest, result: BulkResult
) -> None:
    applied = [i for i in result.items if i.outcome == "applied"]
    await accounts.audit(
        principal,
        "conflict_bulk_resolve",
        f"{request.field}:{request.rule}",
        address=address,
        community_id=request.filter.community,
        field=request.field,
        rule=request.rule,
        filter={
            "community": request.filter.community,
            "grid": request.filter.grid,
            "collection": request.filter.collection,
            "kind": request.filter.kind,
        },
        applied=[i.conflict_id for i in applied],
        stale=[i.conflict_id for i in result.items if i.outcome == "stale"],
    )
