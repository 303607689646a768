"""Rules that need the database, judged for a whole push at once before the merge.

``sync.validate`` checks one change against its declaration alone (type, range, op). What is
left needs other records or the record's history, and is declared in ``schemas/collections.py``:

* ``unknown_reference``: a required link (a visit's household, a grid's community ...) names a
  record the server does not have and the batch does not write.
* ``illegal_transition_from_<status>``: a state-machine field (a request's status) moves to a
  value its previous value does not allow. The previous value is the one *the device saw*: the
  value of the changes its ``pred`` names, not the server's current value, so a phone whose
  changes arrive late is judged by what it knew. Two legal moves made concurrently are both
  kept and shown as a conflict by the merge.
* ``one_place_only``: a value for one of a set of exclusive fields (a hazard's household,
  building or grid) while another of them holds one.
* ``append_only``: a second write of a field of a ledger entry.

Each failure rejects that change alone; the rest of the batch is applied. The store loads the
rows these rules read (the touched records and those the batch names, ``server.access.places.scope_keys``)
together with the records' states; the rules query the database only when a transition names
changes that are neither current heads nor in the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec, FieldSpec, per_schema
from schemas.protocol import Change, ChangeResult, DeleteChange, SetChange
from server.access.places import ScopeRow
from server.db.paging import chunks
from server.db.tables import changes
from sync.merge import RecordKey, RecordState, scalar_value

__all__ = ["judge_batch", "legal_moves", "transition_values"]

_json_decode = msgspec.json.Decoder().decode


def legal_moves(field_spec: FieldSpec, seen: Sequence[Any]) -> set[Any]:
    """The values a state-machine field may take next, from the value(s) a device saw.
    Writing a value it already holds is allowed (a retry, or an admin keeping one side)."""
    assert field_spec.transitions is not None
    allowed: set[Any] = set(seen)
    for value in seen:
        allowed |= field_spec.transitions.get(value, frozenset())
    return allowed


def _rejected(change: Change, code: str, message: str) -> ChangeResult:
    return ChangeResult(id=change.id, status="rejected", code=code, message=message)


async def _values_of(connection: AsyncConnection, ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in chunks(ids):
        query = select(changes.c.id, changes.c.value).where(changes.c.id.in_(chunk))
        found.update((row.id, _json_decode(row.value)) for row in await connection.execute(query))
    return found


@per_schema
def _unruled(collections: Mapping[str, CollectionSpec]) -> frozenset[tuple[str, str]]:
    """The (collection, field) pairs no rule of :meth:`_Judge.judge` looks at: a change of one is
    accepted as it is (most of a push: names, phones, notes, tags)."""
    return frozenset(
        (collection, name)
        for collection, spec in collections.items()
        if not spec.append_only
        for name, field_spec in spec.fields.items()
        if not (field_spec.ref is not None and field_spec.ref_required)
        and name not in spec.exclusive
        and field_spec.transitions is None
    )


class _Judge:
    def __init__(
        self,
        collections: Mapping[str, CollectionSpec],
        states: Mapping[RecordKey, RecordState],
        rows: Mapping[RecordKey, ScopeRow],
        written: set[RecordKey],
        logged: Mapping[str, Any],
    ) -> None:
        self.collections = collections
        self.states = states
        self.existing = set(rows) | written
        self.logged = logged
        # Accepted changes of this batch so far, and the values they give their fields.
        self.accepted: dict[str, Change] = {}
        self.values: dict[tuple[RecordKey, str], Any] = {}

    def value(self, key: RecordKey, name: str) -> Any:
        if (key, name) in self.values:
            return self.values[(key, name)]
        return scalar_value(self.states[key], name)

    def judge(self, change: Change) -> ChangeResult | None:
        spec = self.collections[change.collection]
        key = (change.collection, change.record_id)
        if isinstance(change, DeleteChange):
            return None
        field_spec = spec.fields[change.field]
        if field_spec.ref is not None and field_spec.ref_required and change.value is not None:
            target = (field_spec.ref, change.value)
            if target not in self.existing:
                return _rejected(
                    change,
                    "unknown_reference",
                    f"{change.field} names {field_spec.ref} {change.value!r}, which the server does not "
                    f"have: push that record first, or in the same batch",
                )
        if not isinstance(change, SetChange):
            return None
        if spec.append_only and (
            any(h.field == change.field for h in self.states[key].heads.values())
            or (key, change.field) in self.values
        ):
            return _rejected(
                change,
                "append_only",
                f"{spec.name} {change.record_id!r} already has a {change.field}: entries are written once; "
                "record a new entry to correct one",
            )
        if change.field in spec.exclusive and change.value is not None:
            for other in spec.exclusive:
                held = self.value(key, other) if other != change.field else None
                if held is not None:
                    return _rejected(
                        change,
                        "one_place_only",
                        f"{spec.name} {change.record_id!r} already has {other} {held!r}: set {other} to null "
                        f"before setting {change.field} (it is in one place only)",
                    )
        if field_spec.transitions is not None:
            return self._judge_transition(change, spec, field_spec)
        return None

    def _seen(self, change: SetChange) -> list[Any]:
        """The values the device saw for this field: those of the changes its pred names."""
        heads = self.states[(change.collection, change.record_id)].heads
        seen: list[Any] = []
        for named in change.pred:
            if named in heads and heads[named].field == change.field:
                seen.append(heads[named].value)
            elif named in self.accepted and self.accepted[named].field == change.field:
                seen.append(self.accepted[named].value)
            elif named in self.logged:
                seen.append(self.logged[named])
        return seen

    def _judge_transition(
        self, change: SetChange, spec: CollectionSpec, field_spec: FieldSpec
    ) -> ChangeResult | None:
        key = (change.collection, change.record_id)
        seen = self._seen(change) if change.pred else [None]
        if not seen:
            # The named changes never reached the server (e.g. they were rejected): judge from
            # what the server shows now.
            seen = [self.value(key, change.field)]
        if change.value in legal_moves(field_spec, seen):
            return None
        shown = max(seen, key=lambda v: (v is not None, str(v)))
        current = self.value(key, change.field)
        allowed = sorted(legal_moves(field_spec, [shown]) - {shown})
        now = "" if current == shown else f" (the server now shows {current!r})"
        return _rejected(
            change,
            f"illegal_transition_from_{shown or 'new'}",
            f"{spec.name} {change.record_id!r} was {shown or 'new'!r} when this change was made{now}; "
            f"its {change.field} can go to {', '.join(map(repr, allowed))}, not {change.value!r}",
        )

    def accept(self, change: Change) -> None:
        self.accepted[change.id] = change
        if isinstance(change, SetChange):
            self.values[((change.collection, change.record_id), change.field)] = change.value


def _transition_preds(
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    batch: Sequence[Change],
) -> list[str]:
    """Pred ids a transition must look up in the log: neither a current head nor in the batch."""
    in_batch = {c.id for c in batch}
    wanted: set[str] = set()
    for change in batch:
        if isinstance(change, SetChange) and collections[change.collection].fields[change.field].transitions:
            heads = states[(change.collection, change.record_id)].heads
            wanted.update(p for p in change.pred if p not in heads and p not in in_batch)
    return sorted(wanted)


async def transition_values(
    connection: AsyncConnection,
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    batch: Sequence[Change],
    written: Mapping[str, Change],
) -> dict[str, Any]:
    """What ``judge_batch`` must know of the log: the values of the changes a status move names
    in ``pred`` that are neither a current head nor in the batch. ``written``: changes of the
    same transaction not yet in the log. Usually nothing to read."""
    preds = _transition_preds(collections, states, batch)
    logged = {p: written[p].value for p in preds if p in written}
    unwritten = [p for p in preds if p not in written]
    return logged | (await _values_of(connection, unwritten) if unwritten else {})


def judge_batch(
    collections: Mapping[str, CollectionSpec],
    states: dict[RecordKey, RecordState],
    fresh: list[tuple[int, Change]],
    results: list[ChangeResult | None],
    rows: Mapping[RecordKey, ScopeRow],
    logged: Mapping[str, Any],
) -> list[tuple[int, Change]]:
    """Judge the new changes of a push (in order). ``rows`` holds the stored records among
    ``server.access.places.scope_keys(...)``; ``logged``, what ``transition_values`` read for them. No
    I/O. Rejections go into ``results``; the records that only rejected changes touched leave
    ``states``. Returns the accepted changes."""
    judge = _Judge(collections, states, rows, set(states), logged)
    unruled = _unruled(collections)
    kept: list[tuple[int, Change]] = []
    for index, change in fresh:
        rejection = None if (change.collection, change.field) in unruled else judge.judge(change)
        if rejection is None:
            judge.accept(change)
            kept.append((index, change))
        else:
            results[index] = rejection
    touched = {(c.collection, c.record_id) for _, c in kept}
    for key in [k for k in states if k not in touched]:
        del states[key]
    return kept
