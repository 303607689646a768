"""The merge rules, as pure functions over one record's state.

The state of a record is a function of the *set* of changes it has received: any arrival
order, any duplication, and a ``pred`` naming a change that has not arrived yet all give the
same state. A record keeps only what the rules need, not its history:

* ``heads``: the field changes that no change of the same field supersedes, and the deletes
  that no change supersedes. A ``remove`` only supersedes the adds it names; it is never a head.
* ``covered``: the heads named by some delete (a deleted value that may still come back).
* ``pending``: ids named in a ``pred`` before the change itself arrived, with the kind of each
  namer (a field name, or ``""`` for a delete), so the late change is born superseded.

Whether a named id has already arrived is asked of a ``known`` callback: the caller answers it
from its store (the server's change log, the phone's local database).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from schemas.collections import CollectionSpec
from schemas.protocol import (
    AddChange,
    Change,
    ConflictHead,
    DeleteChange,
    RecordView,
    RemoveChange,
    SetChange,
)
from sync.hlc import parse_hlc

__all__ = [
    "DELETE_CONFLICT_KEY",
    "RecordKey",
    "RecordState",
    "absorb_snapshot",
    "apply_batch",
    "apply_change",
    "conflicts",
    "copy_state",
    "field_values",
    "has_conflict",
    "is_deleted",
    "op_name",
    "preds_to_look_up",
    "record_heads",
    "record_view",
    "scalar_value",
    "snapshot_facts",
    "state_codec",
]

DELETE_KIND = ""
# Key of the conflicts map that holds a delete and the edits made concurrently with it.
DELETE_CONFLICT_KEY = "_deleted"


class RecordState(msgspec.Struct, array_like=True):
    """One record's merge state, small enough to store as one blob per record."""

    heads: dict[str, Change] = msgspec.field(default_factory=dict)
    covered: set[str] = msgspec.field(default_factory=set)
    pending: dict[str, set[str]] = msgspec.field(default_factory=dict)


class _StateCodec:
    """One reused msgpack encoder/decoder for stored record states."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(RecordState)

    def encode(self, state: RecordState) -> bytes:
        return self._encoder.encode(state)

    def decode(self, blob: bytes) -> RecordState:
        return self._decoder.decode(blob)


state_codec = _StateCodec()


def copy_state(state: RecordState) -> RecordState:
    """A copy of ``state`` that ``apply_change`` can fold changes into, leaving ``state`` as it
    is: changes are immutable, so only the containers are copied."""
    return RecordState(
        heads=dict(state.heads),
        covered=set(state.covered),
        pending={named: set(kinds) for named, kinds in state.pending.items()},
    )


def _kind(change: Change) -> str:
    return DELETE_KIND if isinstance(change, DeleteChange) else change.field


def apply_change(state: RecordState, change: Change, known: Callable[[str], bool]) -> None:
    """Fold one new change into ``state`` (in place).

    ``known(id)`` tells whether a change with that id has already been applied to this store;
    the caller must not apply the same change twice (duplicates are filtered by id before).
    """
    heads, covered, pending = state.heads, state.covered, state.pending
    namers = pending.pop(change.id, ())
    kind = _kind(change)
    for named in change.pred:
        head = heads.get(named)
        if head is None:
            if not known(named):
                pending.setdefault(named, set()).add(kind)
            continue
        _name_head(state, head, kind)

    if isinstance(change, RemoveChange):
        return
    if isinstance(change, DeleteChange):
        if not namers:
            heads[change.id] = change
        return
    if kind not in namers:
        heads[change.id] = change
        if DELETE_KIND in namers:
            covered.add(change.id)


def _name_head(state: RecordState, head: Change, kind: str) -> None:
    """What a change of ``kind`` naming the present ``head`` in its pred does to it."""
    if isinstance(head, DeleteChange) or (kind != DELETE_KIND and head.field == kind):
        # Any change that saw a delete supersedes it (a restore); a field change
        # supersedes the heads of its own field only.
        del state.heads[head.id]
        state.covered.discard(head.id)
    elif kind == DELETE_KIND:
        state.covered.add(head.id)


def absorb_snapshot(
    state: RecordState,
    covered: Iterable[str],
    pending: Mapping[str, Iterable[str]],
    known: Callable[[str], bool],
) -> None:
    """Fold into ``state``, which holds a snapshot's heads of the record (and whatever this
    replica had), what the server's state knows beyond its heads: ``covered`` (heads a delete
    named, possibly a delete no longer a head) and ``pending`` (ids named before they arrived,
    with their namers' kinds). The state is then the one a replica replaying the whole log
    holds. ``known(id)``: whether this replica already holds that change."""
    for head_id in covered:
        head = state.heads.get(head_id)
        if head is not None and not isinstance(head, DeleteChange):
            state.covered.add(head_id)
    for named, kinds in pending.items():
        head = state.heads.get(named)
        if head is not None:
            # This replica holds it already (its own change, not yet pushed): the changes that
            # named it supersede it now, as they will on the server when it arrives there.
            for kind in sorted(kinds):
                if named in state.heads:
                    _name_head(state, head, kind)
        elif not known(named):
            state.pending.setdefault(named, set()).update(kinds)


def snapshot_facts(state: RecordState) -> tuple[list[str], dict[str, list[str]]]:
    """(covered, pending) of ``state`` as a snapshot sends them: what ``absorb_snapshot``
    needs beyond the heads. Sorted, so a page is the same bytes for the same state."""
    covered = sorted(state.covered) if state.covered else []
    pending = (
        {named: sorted(kinds) for named, kinds in sorted(state.pending.items())} if state.pending else {}
    )
    return covered, pending


def record_heads(state: RecordState) -> list[Change]:
    """Every head of the record: what a delete or a record-wide resolution names in ``pred``."""
    return list(state.heads.values())


def _order_key(change: Change) -> tuple[str, str]:
    return (change.hlc, change.id)


def _conflict_head(change: Change) -> ConflictHead:
    return ConflictHead(
        change_id=change.id,
        value=change.value,
        hlc=change.hlc,
        replica_id=parse_hlc(change.hlc).replica_id,
        op=op_name(change),
        field=change.field,
    )


_OP_NAMES: dict[type, str] = {
    SetChange: "set",
    AddChange: "add",
    RemoveChange: "remove",
    DeleteChange: "delete",
}


def op_name(change: Change) -> str:
    return _OP_NAMES[type(change)]


def _distinct(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _status(state: RecordState) -> tuple[list[Change], list[Change]]:
    """(delete heads, field heads no delete has named)."""
    deletes: list[Change] = []
    live: list[Change] = []
    for change in state.heads.values():
        if isinstance(change, DeleteChange):
            deletes.append(change)
        elif change.id not in state.covered:
            live.append(change)
    return deletes, live


def is_deleted(state: RecordState) -> bool:
    if not any(isinstance(change, DeleteChange) for change in state.heads.values()):
        return False  # the common case, without building the lists
    deletes, live = _status(state)
    return bool(deletes) and not live


def _may_conflict(state: RecordState, spec: CollectionSpec) -> bool:
    """False when the record has no delete and one head per scalar field: then nothing
    disagrees (a set field's many heads are its elements, not a disagreement)."""
    fields: set[str] = set()
    for change in state.heads.values():
        if isinstance(change, DeleteChange):
            return True
        name = change.field
        if name in fields:
            field_spec = spec.fields.get(name)
            if field_spec is not None and field_spec.policy == "scalar":
                return True
        fields.add(name)
    return False


def _field_heads(state: RecordState) -> dict[str, list[Change]]:
    by_field: dict[str, list[Change]] = {}
    for change in state.heads.values():
        if not isinstance(change, DeleteChange):
            by_field.setdefault(change.field, []).append(change)
    return by_field


def conflicts(state: RecordState, spec: CollectionSpec) -> dict[str, list[ConflictHead]]:
    """Fields whose heads disagree, and a delete with the edits made concurrently with it."""
    found: dict[str, list[ConflictHead]] = {}
    if not _may_conflict(state, spec):
        return found
    for name, heads in _field_heads(state).items():
        field_spec = spec.fields.get(name)
        if field_spec is None or field_spec.policy != "scalar" or len(heads) < 2:
            continue
        if len(_distinct(h.value for h in heads)) > 1:
            found[name] = [_conflict_head(h) for h in sorted(heads, key=_order_key, reverse=True)]
    deletes, live = _status(state)
    if deletes and live:
        both = sorted([*deletes, *live], key=_order_key, reverse=True)
        found[DELETE_CONFLICT_KEY] = [_conflict_head(h) for h in both]
    return found


def has_conflict(state: RecordState, spec: CollectionSpec, field: str | None) -> bool:
    """Whether ``field`` (or, for None, the record's existence) is in conflict."""
    found = conflicts(state, spec)
    return DELETE_CONFLICT_KEY in found or (field is not None and field in found)


def scalar_value(state: RecordState, name: str) -> Any:
    """The value shown for one scalar field (None when it has none): what ``field_values``
    gives for it, without computing the others."""
    best: Change | None = None
    for change in state.heads.values():
        if change.field == name and (best is None or _order_key(change) > _order_key(best)):
            best = change
    return None if best is None else best.value


def field_values(state: RecordState, spec: CollectionSpec) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, heads in _field_heads(state).items():
        field_spec = spec.fields.get(name)
        if field_spec is None:
            continue
        if field_spec.policy == "set":
            elements = _distinct(h.value for h in sorted(heads, key=_order_key))
            values[name] = sorted(elements, key=msgspec.json.encode)
        else:
            values[name] = max(heads, key=_order_key).value
    return values


def record_view(state: RecordState, spec: CollectionSpec, record_id: str) -> RecordView:
    deleted = is_deleted(state)
    return RecordView(
        collection=spec.name,
        id=record_id,
        deleted=deleted,
        fields={} if deleted else field_values(state, spec),
        conflicts=conflicts(state, spec),
    )


RecordKey = tuple[str, str]


def preds_to_look_up(states: dict[RecordKey, RecordState], changes: Iterable[Change]) -> set[str]:
    """The pred ids whose arrival ``apply_batch`` must be told about: those that are neither a
    current head of their record nor a change of this batch. Usually none."""
    batch_ids = set()
    wanted: set[str] = set()
    for change in changes:
        batch_ids.add(change.id)
        heads = states[(change.collection, change.record_id)].heads
        wanted.update(named for named in change.pred if named not in heads)
    return wanted - batch_ids


def apply_batch(
    states: dict[RecordKey, RecordState], changes: Iterable[Change], known_before: set[str]
) -> None:
    """Apply new changes in order. ``known_before`` holds the ids among
    ``preds_to_look_up(...)`` that the store already has."""
    applied: set[str] = set()
    # Heads are present by definition, and an earlier change of the batch may supersede one
    # that a later change names again: it must still count as arrived.
    present_heads = {change_id for state in states.values() for change_id in state.heads}

    def known(change_id: str) -> bool:
        return change_id in applied or change_id in known_before or change_id in present_heads

    for change in changes:
        apply_change(states[(change.collection, change.record_id)], change, known)
        applied.add(change.id)
