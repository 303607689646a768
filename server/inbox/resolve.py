"""Resolving conflicts: one conflict as an admin chose, or many by a rule (preview, then apply).

A resolution is never a side channel: it is an ordinary change (``pred`` = every head of the
field) written through ``SyncStore.push``, so it reaches every phone by pull, and the push that
writes it closes the conflict row in the same transaction. The heads an admin saw are checked
under the push's write lock; if they moved, or the conflict was closed meanwhile, nothing is
written and the caller gets 409 with the current state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select

from schemas.collections import COLLECTIONS
from schemas.inbox import (
    BulkItem,
    BulkRequest,
    BulkResult,
    ConflictDetail,
    FieldChoice,
    Resolution,
)
from schemas.protocol import Change, ChangeResult, DeleteChange, SetChange
from server.access.accounts import AccountStore
from server.access.personal import mask_text, reveal, sealed_fields
from server.access.principals import Principal
from server.db.tables import conflicts
from server.errors import GridsyncError
from server.inbox.query import InboxQuery
from server.inbox.tracking import head_ids, heads_by_key, record_conflicts
from sync.hlc import format_hlc, parse_hlc
from sync.ids import new_change_id
from sync.merge import DELETE_CONFLICT_KEY, RecordKey, RecordState
from sync.validate import validate_change

__all__ = ["ConflictInbox", "audit_bulk", "audit_resolution"]


class _HeadsMoved(Exception):  # noqa: N818 - raised inside the push to abort it
    def __init__(self, keys: set[RecordKey]) -> None:
        super().__init__(f"{len(keys)} records changed")
        self.keys = keys


@dataclass(frozen=True, slots=True)
class _Planned:
    key: RecordKey
    conflict_id: str
    changes: list[Change]
    # The heads (per conflicting key) that must still be current when the push runs.
    expected: dict[str, list[str]]


class ConflictInbox(InboxQuery):
    """The inbox service: its reads (``InboxQuery``) and resolutions; it holds no HTTP."""

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
        found = record_conflicts(state, self.collections[collection])
        current = heads_by_key(found)
        _check_choices(found, fields, record, partial=partial)

        def stamp() -> dict[str, Any]:
            _replica, hlc = self._admin_hlc(principal)
            return {"id": new_change_id(), "collection": collection, "record_id": record_id, "hlc": hlc}

        if record == "delete":
            delete = DeleteChange(**stamp(), pred=tuple(sorted(state.heads)))
            return _Planned(key, conflict_id, [delete], current)
        field_heads: dict[str, list[Change]] = {}
        for change in state.heads.values():
            if not isinstance(change, DeleteChange):
                field_heads.setdefault(change.field, []).append(change)
        planned = [
            SetChange(**stamp(), field=name, value=_chosen_value(name, choice, field_heads[name]), pred=pred)
            for name, choice in fields.items()
            for pred in [tuple(sorted(h.id for h in field_heads[name]))]
        ]
        if record == "keep":
            deletes = tuple(sorted(c.id for c in state.heads.values() if isinstance(c, DeleteChange)))
            self._restore(planned, field_heads, deletes, collection, stamp)
        for change in planned:
            rejection = validate_change(change, self.collections)
            if rejection is not None:
                raise GridsyncError(400, rejection.code, rejection.message)
        return _Planned(key, conflict_id, list(planned), current)

    def _restore(
        self,
        planned: list[SetChange],
        field_heads: Mapping[str, list[Change]],
        deletes: tuple[str, ...],
        collection: str,
        stamp: Callable[[], dict[str, Any]],
    ) -> None:
        """Make ``planned`` keep a deleted record: restoring is any change naming the deletes, so
        the first field write carries them, or the newest live scalar value is written again."""
        if planned:
            first = planned[0]
            planned[0] = msgspec.structs.replace(first, pred=tuple(sorted({*first.pred, *deletes})))
            return
        spec = self.collections[collection]
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
        await self._apply_bulk(principal, request.field, plans, items)
        return BulkResult(applied=True, items=items)

    async def _apply_bulk(
        self, principal: Principal, field: str, plans: list[_Planned], items: list[BulkItem]
    ) -> None:
        """Write the plans, marking each item applied, rejected (with the code) or stale."""
        # A record that moved between the read above and the write lock is dropped and the rest
        # retried; each round can only shrink the plan.
        refused: list[ChangeResult] = []
        while plans:
            try:
                refused = await self._push(
                    principal,
                    [c for p in plans for c in p.changes],
                    self._checker(plans, only_key=field),
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


def _check_choices(
    found: Mapping[str, Any], fields: Mapping[str, FieldChoice], record: str | None, *, partial: bool
) -> None:
    """Refuse a resolution that names fields not in conflict or leaves a conflicting one out."""
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
    if record == "delete":
        if fields:
            raise GridsyncError(400, "delete_with_fields", "a confirmed delete takes no field values")
        return
    missing = [name for name in found if name != DELETE_CONFLICT_KEY and name not in fields]
    if missing and not partial:
        raise GridsyncError(
            400,
            "incomplete_resolution",
            f"choose a head or a value for every conflicting field: {', '.join(missing)}",
        )


def _chosen_value(name: str, choice: FieldChoice, heads: Sequence[Change]) -> Any:
    if (choice.keep is None) == (choice.value is msgspec.UNSET):
        raise GridsyncError(400, "bad_choice", f"field {name!r}: give either keep (a head id) or value")
    if choice.keep is None:
        return choice.value
    kept = next((h for h in heads if h.id == choice.keep), None)
    if kept is None:
        raise GridsyncError(400, "unknown_head", f"field {name!r} has no head {choice.keep!r}")
    # Written again as it was typed; the push seals it again, to the same value.
    return reveal(kept.collection, name, kept.value)


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
