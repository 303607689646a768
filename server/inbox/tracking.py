"""Conflict records, kept by the push that changes a record's conflict state.

A record is *in conflict* when the merge shows it so (``sync.merge.conflicts``): a scalar field
with concurrent heads that disagree, or a delete with edits made concurrently with it. The
inbox needs more than the ``records.conflict`` flag: when a conflict opened, which heads it had
as it grew, and who closed it with which change. ``ConflictTracker.track`` writes that in the
push's own transaction, with a handful of batched statements for the whole push, and only for
the records that are in conflict now or were before it (usually none: zero statements).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec, per_schema
from schemas.protocol import Change, ConflictHead, DeleteChange
from server.db.paging import chunks
from server.db.tables import conflict_events, conflicts
from server.observability.metrics import count_conflicts
from sync.hlc import parse_hlc
from sync.merge import DELETE_CONFLICT_KEY, RecordKey, RecordState
from sync.merge import conflicts as merge_conflicts

__all__ = [
    "KINDS",
    "ConflictTracker",
    "conflict_kinds",
    "fenced",
    "head_ids",
    "heads_by_key",
    "record_conflicts",
    "with_concurrent_moves",
]

# What a conflict can hold: concurrent values of a field, a delete concurrent with edits, two
# concurrent legal moves of a state-machine field (a request's status), and an overspent
# points balance.
KINDS = ("field", "delete", "transition", "overspend")
_json_encode = msgspec.json.Encoder().encode


def fenced(names: Iterable[str]) -> str:
    """``",a,b,"``: a list one ``LIKE '%,a,%'`` can search."""
    return "," + ",".join(sorted(set(names))) + ","


def conflict_kinds(found: Mapping[str, Sequence[ConflictHead]], spec: CollectionSpec) -> set[str]:
    kinds: set[str] = set()
    for name in found:
        if name == DELETE_CONFLICT_KEY:
            kinds.add("delete")
        elif getattr(spec.fields.get(name), "transitions", None):
            kinds.add("transition")
        else:
            kinds.add("field")
    return kinds


def record_conflicts(state: RecordState, spec: CollectionSpec) -> dict[str, list[ConflictHead]]:
    """What the inbox shows for a record: the merge's conflicts, and every state-machine field
    (a request's status) that two devices moved concurrently, even to the same value (two
    handlers accepting one request): the merge keeps both moves, a person decides."""
    return with_concurrent_moves(merge_conflicts(state, spec), state, spec)


def with_concurrent_moves(
    merged: Mapping[str, list[ConflictHead]], state: RecordState, spec: CollectionSpec
) -> dict[str, list[ConflictHead]]:
    """``record_conflicts`` from the merge's own conflicts of ``state`` (``merged``)."""
    found = dict(merged)
    for name, field_spec in spec.fields.items():
        if name in found or not getattr(field_spec, "transitions", None):
            continue
        heads = [h for h in state.heads.values() if not isinstance(h, DeleteChange) and h.field == name]
        if len(heads) > 1:
            found[name] = [
                ConflictHead(
                    change_id=h.id,
                    value=h.value,
                    hlc=h.hlc,
                    replica_id=parse_hlc(h.hlc).replica_id,
                    op="set",
                    field=name,
                )
                for h in sorted(heads, key=lambda c: (c.hlc, c.id), reverse=True)
            ]
    return found


@per_schema
def _state_machine_fields(collections: Mapping[str, CollectionSpec]) -> frozenset[tuple[str, str]]:
    """The (collection, field) pairs with transitions (a request's status)."""
    return frozenset(
        (collection, name)
        for collection, spec in collections.items()
        for name, field_spec in spec.fields.items()
        if field_spec.transitions
    )


def transition_keys(batch: Iterable[Change], collections: Mapping[str, CollectionSpec]) -> set[RecordKey]:
    """Records whose state-machine field this batch wrote: their transition conflicts may have
    opened or closed, which the ``records.conflict`` flag does not show."""
    pairs = _state_machine_fields(collections)
    return {(c.collection, c.record_id) for c in batch if (c.collection, c.field) in pairs}


def heads_by_key(found: Mapping[str, Sequence[ConflictHead]]) -> dict[str, list[str]]:
    """Each conflicting key (a field, or ``_deleted``) with the ids of its heads, sorted."""
    return {key: sorted(head.change_id for head in heads) for key, heads in sorted(found.items())}


def head_ids(heads: Mapping[str, Sequence[str]]) -> list[str]:
    """Every head id of a conflict once: what an admin sends back as the heads they saw."""
    return sorted({change_id for ids in heads.values() for change_id in ids})


class ConflictTracker:
    """Opens, updates and closes conflict rows inside the push transaction."""

    def __init__(self, collections: Mapping[str, CollectionSpec]) -> None:
        self.collections = collections

    async def track(
        self,
        connection: AsyncConnection,
        states: Mapping[RecordKey, RecordState],
        merged: Mapping[RecordKey, Mapping[str, list[ConflictHead]]],
        flagged_before: set[RecordKey],
        batch: Sequence[Change],
        *,
        seq: int,
        now_ms: int,
        device_id: str | None,
        via: str,
    ) -> None:
        """Bring the conflict rows of a push's records up to date. ``merged``: the merge's
        conflicts of every record the push touched, ``flagged_before``: those whose
        ``records.conflict`` flag was set before it."""
        conflicting = {key for key, found in merged.items() if found}
        keys = sorted(conflicting | flagged_before | transition_keys(batch, self.collections))
        if not keys:
            return
        open_rows = await self._open_rows(connection, keys)
        batch_ids: dict[RecordKey, list[str]] = {}
        for change in batch:
            batch_ids.setdefault((change.collection, change.record_id), []).append(change.id)
        writes = _ConflictWrites()
        for key in keys:
            row = open_rows.get(key)
            spec = self.collections[key[0]]
            found = with_concurrent_moves(merged.get(key, {}), states[key], spec)
            if found:
                writes.found(key, row, found, spec, seq=seq, now_ms=now_ms, device_id=device_id)
            elif row is not None:
                writes.closed(
                    row, batch_ids.get(key, []), seq=seq, now_ms=now_ms, device_id=device_id, via=via
                )
        count_conflicts(len(writes.opened), len(writes.closed_rows), via)
        await writes.write(connection)

    @staticmethod
    async def _open_rows(connection: AsyncConnection, keys: list[RecordKey]) -> dict[RecordKey, Any]:
        open_rows: dict[RecordKey, Any] = {}
        for chunk in chunks(keys):
            query = select(
                conflicts.c.id, conflicts.c.collection, conflicts.c.record_id, conflicts.c.heads
            ).where(
                conflicts.c.status == "open",
                tuple_(conflicts.c.collection, conflicts.c.record_id).in_(chunk),
            )
            open_rows.update(
                ((row.collection, row.record_id), row) for row in await connection.execute(query)
            )
        return open_rows


class _ConflictWrites:
    """The conflict rows and events one push opens, changes and closes, written together."""

    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.changed: list[dict[str, Any]] = []
        self.closed_rows: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def found(
        self,
        key: RecordKey,
        row: Any,
        found: Mapping[str, list[ConflictHead]],
        spec: CollectionSpec,
        *,
        seq: int,
        now_ms: int,
        device_id: str | None,
    ) -> None:
        """A record in conflict after the push: its row opened, or updated if its heads moved."""
        heads_json = _json_encode(heads_by_key(found)).decode()
        shape = {
            "kinds": fenced(conflict_kinds(found, spec)),
            "fields": fenced(found),
            "heads": heads_json,
            "updated_at_ms": now_ms,
            "updated_seq": seq,
        }
        if row is None:
            conflict_id = str(uuid.uuid4())
            self.opened.append(
                {
                    "id": conflict_id,
                    "collection": key[0],
                    "record_id": key[1],
                    "status": "open",
                    "opened_at_ms": now_ms,
                    "opened_seq": seq,
                    **shape,
                }
            )
            self.events.append(_event(conflict_id, "opened", now_ms, seq, device_id, heads_json))
        elif row.heads != heads_json:
            self.changed.append({"b_id": row.id, **shape})
            self.events.append(_event(row.id, "updated", now_ms, seq, device_id, heads_json))

    def closed(
        self, row: Any, resolved_by: list[str], *, seq: int, now_ms: int, device_id: str | None, via: str
    ) -> None:
        """An open conflict the push resolved."""
        self.closed_rows.append(
            {
                "b_id": row.id,
                "status": "resolved",
                "resolved_at_ms": now_ms,
                "resolved_seq": seq,
                "resolved_by_device_id": device_id,
                "resolved_via": via,
                "resolved_changes": _json_encode(resolved_by).decode(),
            }
        )
        self.events.append(_event(row.id, "resolved", now_ms, seq, device_id, row.heads))

    async def write(self, connection: AsyncConnection) -> None:
        if self.opened:
            await connection.execute(conflicts.insert(), self.opened)
        by_id = conflicts.c.id == bindparam("b_id")
        # Core derives the SET clause from the parameter keys.
        if self.changed:
            await connection.execute(update(conflicts).where(by_id), self.changed)
        if self.closed_rows:
            await connection.execute(update(conflicts).where(by_id), self.closed_rows)
        if self.events:
            await connection.execute(conflict_events.insert(), self.events)


def _event(
    conflict_id: str, event: str, now_ms: int, seq: int, device_id: str | None, heads: str
) -> dict[str, Any]:
    return {
        "conflict_id": conflict_id,
        "event": event,
        "at_ms": now_ms,
        "seq": seq,
        "device_id": device_id,
        "heads": heads,
    }
