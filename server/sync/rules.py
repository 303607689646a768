"""Rules that need the database, judged for a whole push at once before the merge.

``sync.validate`` checks one change against its declaration alone (type, range, op). What is
left needs other records or the record's history, and is declared in ``schemas/collections.py``:

* ``unknown_reference``: a required link (a visit's household, a grid's community ...) names a
  record the server does not have and the batch does not write.
* ``foreign_pred``: a ``pred`` entry names a change the server has of another record, or of
  another field (a record's delete excepted: naming it restores the record), or, for a set
  field, an add of another element; a delete may name any change of its own record. Only such
  changes supersede anything, so nothing else may be named.
* ``illegal_transition_from_<status>``: a state-machine field (a request's status) moves to a
  value its previous value does not allow. The previous value is the one *the device saw*: the
  value of the changes of that field its ``pred`` names, not the server's current value, so a
  phone whose changes arrive late is judged by what it knew. Two legal moves made concurrently
  are both kept and shown as a conflict by the merge.
* ``one_place_only``: a value for one of a set of exclusive fields (a hazard's household,
  building or grid) while another of them holds one.
* ``append_only``: a second write of a field of a ledger entry.
* ``supervisor_not_party_member`` (a field's ``ref_holds``): a link names a record that does not
  hold a value in the field the declaration asks for (a request's supervisor whose resident has no
  ``party_member_kind``). The record is read as the server has it with the batch's own writes of
  that field (in any order: a phone may make a resident a party member and name them in one
  push); any head holding a value is enough, so two phones that disagree on the kind do not
  refuse the supervisor.
* ``central_household_full`` (a set field's ``max_elements``): an add of a new element to a set
  that holds its most already (a central household's eleventh household), counted on the
  record as the server has it with the batch's accepted adds and removes before it. Adding an
  element it holds is a retry, never refused.

Each failure rejects that change alone; the rest of the batch is applied. The store loads the
rows these rules read (the touched records and those the batch names, ``server.access.places.scope_keys``)
together with the records' states, and the changes ``pred`` names that are neither a head of
their record nor in the batch (``NamedChange``, usually none), and the states of the records a
``ref_holds`` link names (``held_keys``). The rules read nothing else, and are judged only on
changes of records the caller may read (``server.access.placement.refuse_untouchable``
comes first): no answer names a value the caller may not read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from schemas.collections import CollectionSpec, FieldSpec, per_schema
from schemas.protocol import AddChange, Change, ChangeResult, DeleteChange, RemoveChange, SetChange, rejected
from server.access.places import ScopeRow
from sync.merge import RecordKey, RecordState, op_name, scalar_value

__all__ = ["NamedChange", "held_keys", "judge_batch", "legal_moves"]


class NamedChange(NamedTuple):
    """What the rules read of a change a ``pred`` names: where it is, and what it wrote."""

    collection: str
    record_id: str
    field: str | None
    op: str
    value: Any

    @classmethod
    def of(cls, change: Change) -> NamedChange:
        return cls(change.collection, change.record_id, change.field, op_name(change), change.value)


def legal_moves(field_spec: FieldSpec, seen: Sequence[Any]) -> set[Any]:
    """The values a state-machine field may take next, from the value(s) a device saw.
    Writing a value it already holds is allowed (a retry, or an admin keeping one side)."""
    assert field_spec.transitions is not None
    allowed: set[Any] = set(seen)
    for value in seen:
        allowed |= field_spec.transitions.get(value, frozenset())
    return allowed


_MAY_NAME = {
    "set": "of this field (or its deletes)",
    "add": "adding or removing this element (or its deletes)",
    "remove": "adding this element",
    "delete": "(any field)",
}


def _foreign(change: Change, named: NamedChange) -> str | None:
    """Why ``change`` may not name ``named`` in its pred (None: it may)."""
    if (named.collection, named.record_id) != (change.collection, change.record_id):
        return "a change of another record"
    if isinstance(change, DeleteChange):
        return None
    if named.op == "delete":
        # Any field change that saw a delete restores the record; a remove takes out adds only.
        return "a delete" if isinstance(change, RemoveChange) else None
    if named.field != change.field:
        return "a change of another field"
    if isinstance(change, AddChange | RemoveChange) and (
        named.value != change.value or (isinstance(change, RemoveChange) and named.op != "add")
    ):
        return "a change of another element"
    return None


@per_schema
def _holding(collections: Mapping[str, CollectionSpec]) -> dict[tuple[str, str], FieldSpec]:
    """The (collection, field) links whose named record must hold a value in a field."""
    return {
        (collection, name): field_spec
        for collection, spec in collections.items()
        for name, field_spec in spec.fields.items()
        if field_spec.ref is not None and field_spec.ref_holds is not None
    }


def held_keys(collections: Mapping[str, CollectionSpec], changes: Sequence[Change]) -> set[RecordKey]:
    """The records whose state the rules read besides the touched ones: those a ``ref_holds``
    link of the batch names (usually none: a request's supervisor)."""
    holding = _holding(collections)
    keys: set[RecordKey] = set()
    for change in changes:
        field_spec = holding.get((change.collection, change.field or ""))
        if field_spec is not None and field_spec.ref is not None and isinstance(change.value, str):
            keys.add((field_spec.ref, change.value))
    return keys


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
        and field_spec.max_elements is None
    )


class _Judge:
    def __init__(
        self,
        collections: Mapping[str, CollectionSpec],
        states: Mapping[RecordKey, RecordState],
        rows: Mapping[RecordKey, ScopeRow],
        written: set[RecordKey],
        named: Mapping[str, NamedChange],
        batch: Sequence[tuple[int, Change]],
        linked: Mapping[RecordKey, RecordState],
    ) -> None:
        self.collections = collections
        self.states = states
        self.existing = set(rows) | written
        self.named = named
        self.batch = batch
        self.linked = linked
        self.in_batch: dict[str, Change] | None = None
        # The batch's last value of each field a ``ref_holds`` link reads, made when first asked.
        self.batch_values: dict[tuple[RecordKey, str], Any] | None = None
        # The elements of each bounded set the batch touches, with its accepted adds and removes.
        self.members: dict[tuple[RecordKey, str], set[Any]] = {}
        # Accepted changes of this batch so far, and the values they give their fields.
        self.accepted: dict[str, Change] = {}
        self.values: dict[tuple[RecordKey, str], Any] = {}

    def _elsewhere(self, change_id: str) -> NamedChange | None:
        """A change named in a pred that is no head of the namer's record: one of the batch, or
        one the store read for it (None: not arrived, or compacted)."""
        if self.in_batch is None:
            self.in_batch = {c.id: c for _, c in self.batch}
        in_batch = self.in_batch.get(change_id)
        return NamedChange.of(in_batch) if in_batch is not None else self.named.get(change_id)

    def check_pred(self, change: Change) -> ChangeResult | None:
        """``foreign_pred`` when ``pred`` names a change it may not supersede (``_foreign``)."""
        heads = self.states[(change.collection, change.record_id)].heads
        for change_id in change.pred:
            head = heads.get(change_id)
            if head is not None and (
                isinstance(change, DeleteChange)
                or (isinstance(change, SetChange) and head.field == change.field)
            ):
                continue  # the usual pred: a head of the field it overwrites, any head a delete names
            named = NamedChange.of(head) if head is not None else self._elsewhere(change_id)
            reason = None if named is None else _foreign(change, named)
            if reason is not None:
                return rejected(
                    change.id,
                    "foreign_pred",
                    f"pred entry {change_id} names {reason}: name only the changes you saw of "
                    f"{change.collection} {change.record_id!r} {_MAY_NAME[op_name(change)]}",
                )
        return None

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
                return rejected(
                    change.id,
                    "unknown_reference",
                    f"{change.field} names {field_spec.ref} {change.value!r}, which the server does not "
                    f"have: push that record first, or in the same batch",
                )
        if isinstance(change, AddChange) and field_spec.max_elements is not None:
            return self._judge_size(change, field_spec.max_elements)
        if not isinstance(change, SetChange):
            return None
        if field_spec.ref_holds is not None and change.value is not None:
            rejection = self._judge_holds(change, field_spec, field_spec.ref_holds)
            if rejection is not None:
                return rejection
        if spec.append_only and (
            any(h.field == change.field for h in self.states[key].heads.values())
            or (key, change.field) in self.values
        ):
            return rejected(
                change.id,
                "append_only",
                f"{spec.name} {change.record_id!r} already has a {change.field}: entries are written once; "
                "record a new entry to correct one",
            )
        if change.field in spec.exclusive and change.value is not None:
            for other in spec.exclusive:
                held = self.value(key, other) if other != change.field else None
                if held is not None:
                    return rejected(
                        change.id,
                        "one_place_only",
                        f"{spec.name} {change.record_id!r} already has a {other}: set {other} to null "
                        f"before setting {change.field} (it is in one place only)",
                    )
        if field_spec.transitions is not None:
            return self._judge_transition(change, spec, field_spec)
        return None

    def _holds(self, key: RecordKey, name: str) -> bool:
        """Whether the record holds a value in ``name``: the batch's last write of it, else any
        head of the record as the server has it."""
        if self.batch_values is None:
            self.batch_values = {
                ((c.collection, c.record_id), c.field): c.value
                for _, c in self.batch
                if isinstance(c, SetChange)
            }
        if (key, name) in self.batch_values:
            return self.batch_values[(key, name)] is not None
        state = self.states.get(key) or self.linked.get(key)
        return state is not None and any(
            head.field == name and head.value is not None for head in state.heads.values()
        )

    def _judge_holds(
        self, change: SetChange, field_spec: FieldSpec, holds: tuple[str, str]
    ) -> ChangeResult | None:
        held, code = holds
        if self._holds((field_spec.ref or "", change.value), held):
            return None
        return rejected(
            change.id,
            code,
            f"{change.field} names {field_spec.ref} {change.value!r}, which has no {held}: name a "
            f"party member, or set their {held} first (in the same push is fine)",
        )

    def _elements(self, key: RecordKey, name: str) -> set[Any]:
        found = self.members.get((key, name))
        if found is None:
            heads = self.states[key].heads.values()
            found = self.members[(key, name)] = {h.value for h in heads if h.field == name}
        return found

    def _judge_size(self, change: AddChange, most: tuple[int, str]) -> ChangeResult | None:
        limit, code = most
        elements = self._elements((change.collection, change.record_id), change.field)
        if change.value in elements or len(elements) < limit:
            return None
        return rejected(
            change.id,
            code,
            f"{change.collection} {change.record_id!r} already has {len(elements)} in {change.field}, "
            f"the most it may have: remove one before adding {change.value!r}",
        )

    def _seen(self, change: SetChange) -> list[Any]:
        """The values the device saw for this field: those of the changes of this field its pred
        names (``check_pred`` has refused any of another record or field), accepted ones only."""
        heads = self.states[(change.collection, change.record_id)].heads
        seen: list[Any] = []
        for change_id in change.pred:
            named: Change | NamedChange | None = (
                heads.get(change_id) or self.accepted.get(change_id) or self.named.get(change_id)
            )
            if named is not None and named.field == change.field:
                seen.append(named.value)
        return seen

    def _judge_transition(
        self, change: SetChange, spec: CollectionSpec, field_spec: FieldSpec
    ) -> ChangeResult | None:
        key = (change.collection, change.record_id)
        seen = self._seen(change) if change.pred else [None]
        if not seen:
            # The named changes never reached the server (e.g. they were rejected): judge from
            # what the server shows now (of a record the caller may read).
            seen = [self.value(key, change.field)]
        if change.value in legal_moves(field_spec, seen):
            return None
        shown = max(seen, key=lambda v: (v is not None, str(v)))
        allowed = sorted(legal_moves(field_spec, [shown]) - {shown})
        return rejected(
            change.id,
            f"illegal_transition_from_{shown or 'new'}",
            f"{spec.name} {change.record_id!r} was {shown or 'new'!r} when this change was made; "
            f"its {change.field} can go to {', '.join(map(repr, allowed))}, not {change.value!r}",
        )

    def accept(self, change: Change) -> None:
        self.accepted[change.id] = change
        if isinstance(change, SetChange):
            self.values[((change.collection, change.record_id), change.field)] = change.value
        elif isinstance(change, AddChange | RemoveChange) and (
            self.collections[change.collection].fields[change.field].max_elements is not None
        ):
            elements = self._elements((change.collection, change.record_id), change.field)
            (elements.add if isinstance(change, AddChange) else elements.discard)(change.value)


def judge_batch(
    collections: Mapping[str, CollectionSpec],
    states: dict[RecordKey, RecordState],
    fresh: list[tuple[int, Change]],
    results: list[ChangeResult | None],
    rows: Mapping[RecordKey, ScopeRow],
    named: Mapping[str, NamedChange],
    linked: Mapping[RecordKey, RecordState],
) -> list[tuple[int, Change]]:
    """Judge the new changes of a push (in order). ``rows`` holds the stored records among
    ``server.access.places.scope_keys(...)``; ``named``, the changes the batch's preds name that
    are neither a head of their record nor in the batch, as the store found them
    (``sync.merge.preds_to_look_up``); ``linked``, the stored states of the records of
    ``held_keys``. No I/O. Rejections go into ``results``; the records that only rejected
    changes touched leave ``states``. Returns the accepted changes."""
    judge = _Judge(collections, states, rows, set(states), named, fresh, linked)
    unruled = _unruled(collections)
    kept: list[tuple[int, Change]] = []
    for index, change in fresh:
        rejection = judge.check_pred(change) if change.pred else None
        if rejection is None and (change.collection, change.field) not in unruled:
            rejection = judge.judge(change)
        if rejection is None:
            judge.accept(change)
            kept.append((index, change))
        else:
            results[index] = rejection
    touched = {(c.collection, c.record_id) for _, c in kept}
    for key in [k for k in states if k not in touched]:
        del states[key]
    return kept
