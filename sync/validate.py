"""Validation of one change against its collection's declaration. Pure; no I/O.

Every rejection carries a stable ``code`` an app can react to, and a message a person can act on.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from schemas.collections import CollectionSpec, FieldSpec
from schemas.protocol import AddChange, Change, DeleteChange, RemoveChange, SetChange
from sync.hlc import HLC_PATTERN, hlc_wall_ms

__all__ = [
    "MAX_PRED",
    "RECORD_ID_PATTERN",
    "UUID_PATTERN",
    "ClockBound",
    "Rejection",
    "check_clock",
    "validate_batch",
    "validate_change",
]

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
RECORD_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")


def _unanchored(pattern: re.Pattern[str]) -> re.Pattern[str]:
    # For fullmatch, which anchors by itself (and is faster than the pattern's own ^ and \Z).
    return re.compile(pattern.pattern.removeprefix("^").removesuffix("\\Z"))


_ID, _RECORD_ID, _HLC = map(_unanchored, (UUID_PATTERN, RECORD_ID_PATTERN, HLC_PATTERN))
MAX_PRED = 1_000


class Rejection(NamedTuple):
    code: str
    message: str


class ClockBound(NamedTuple):
    """The server's wall time, and how far past it an hlc may be stamped and still accepted."""

    now_ms: int
    max_ahead_ms: int


def _duration(ms: int) -> str:
    for unit, size in (("days", 86_400_000), ("hours", 3_600_000), ("minutes", 60_000)):
        if ms >= 2 * size:
            return f"{ms // size} {unit}"
    return f"{ms // 1000} seconds"


def check_clock(hlc: str, bound: ClockBound) -> Rejection | None:
    """An hlc of valid shape judged against the server's clock: ``clock_too_far_ahead`` when it
    is stamped more than the bound ahead (a wrong date; an absurd hlc would win every conflict
    it meets and drag clocks that follow it)."""
    ahead_ms = hlc_wall_ms(hlc) - bound.now_ms
    if ahead_ms <= bound.max_ahead_ms:
        return None
    return Rejection(
        "clock_too_far_ahead",
        f"this change is stamped {_duration(ahead_ms)} ahead of the server's clock, more than the "
        f"{_duration(bound.max_ahead_ms)} allowed: set the phone's date, time and time zone, "
        "then make the change again",
    )


def _check_pred(change: Change, *, patterns_checked: bool) -> Rejection | None:
    if len(change.pred) > MAX_PRED:
        return Rejection("bad_pred", f"pred names {len(change.pred)} changes; at most {MAX_PRED} allowed")
    for named in change.pred:
        if not patterns_checked and not _ID.fullmatch(named):
            return Rejection("bad_pred", f"pred entry {named!r} is not a lowercase UUID change id")
        if named == change.id:
            return Rejection("bad_pred", "a change cannot name itself in pred")
    return None


def _run_of(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """Values of ``pattern`` joined by newlines, which none of the patterns admits."""
    return re.compile(f"(?:{pattern.pattern}\n)*{pattern.pattern}")


_ID_RUN, _RECORD_ID_RUN, _HLC_RUN = map(_run_of, (_ID, _RECORD_ID, _HLC))


def _all_match(run: re.Pattern[str], values: Collection[str]) -> bool:
    """Whether every value matches in full: one pass of ``run`` (see _run_of) over the values
    joined by newlines (a value holding one would split in two, and the count of newlines
    catches it)."""
    if not values:
        return True
    joined = "\n".join(values)
    return joined.count("\n") == len(values) - 1 and run.fullmatch(joined) is not None


def _patterns_pass(changes: Sequence[Change]) -> bool:
    """Whether every id, pred entry, record id and hlc of the batch has its shape, checked for
    the whole batch at once (one call per pattern instead of several per change)."""
    return (
        _all_match(_ID_RUN, [c.id for c in changes])
        and _all_match(_ID_RUN, [named for c in changes for named in c.pred])
        and _all_match(_RECORD_ID_RUN, {c.record_id for c in changes})
        and _all_match(_HLC_RUN, [c.hlc for c in changes])
    )


def _field_to_type_check(
    change: SetChange | AddChange | RemoveChange, spec: CollectionSpec
) -> Rejection | FieldSpec | None:
    """Everything about a value but its type: the rejection, or the field whose type the value
    must still match (None: nothing left to check)."""
    field_spec = spec.fields.get(change.field)
    if field_spec is None:
        known = ", ".join(sorted(spec.fields))
        return Rejection(
            "unknown_field",
            f"collection {spec.name!r} has no field {change.field!r}; its fields are: {known}",
        )
    if field_spec.policy == "scalar" and not isinstance(change, SetChange):
        return Rejection(
            "wrong_op", f"field {change.field!r} holds one value: write it with op 'set', not add/remove"
        )
    if field_spec.policy == "set" and isinstance(change, SetChange):
        return Rejection(
            "wrong_op", f"field {change.field!r} is a set: write it with op 'add' or 'remove', not 'set'"
        )
    if isinstance(change, RemoveChange) and not change.pred:
        return Rejection("empty_pred", "a remove must name in pred the adds of the element it observed")
    if change.value is None:
        if field_spec.policy == "scalar" and field_spec.nullable:
            return None
        return Rejection("invalid_value", f"field {change.field!r} needs a value, got null")
    return field_spec


def _check_type(value: Any, field_spec: FieldSpec) -> Rejection | None:
    try:
        msgspec.convert((value,), _holder(field_spec), strict=True)
    except msgspec.ValidationError as error:
        allowed = f"; allowed: {', '.join(map(str, field_spec.choices))}" if field_spec.choices else ""
        reason = str(error).removesuffix(" - at `$[0]`")
        return Rejection("invalid_value", f"field {field_spec.name!r}: {reason}{allowed}")
    return None


# One-field Structs per declared field, by id of its FieldSpec: holding one value, and a list.
_holders: dict[int, tuple[FieldSpec, type[msgspec.Struct]]] = {}
_list_holders: dict[int, tuple[FieldSpec, type[msgspec.Struct]]] = {}


def _holder(field_spec: FieldSpec, *, many: bool = False) -> type[msgspec.Struct]:
    """A one-field Struct per declared field (``many``: holding a list of its values), made
    once: msgspec keeps a Struct's compiled type information, where converting to a bare
    ``Annotated`` type rebuilds it every call."""
    holders = _list_holders if many else _holders
    cached = holders.get(id(field_spec))
    if cached is None or cached[0] is not field_spec:
        value_type = list[field_spec.type] if many else field_spec.type  # type: ignore[name-defined]
        holder = msgspec.defstruct("FieldValue", [("value", value_type)], array_like=True)
        cached = holders[id(field_spec)] = (field_spec, holder)
    return cached[1]


def _check_append_only(change: Change, spec: CollectionSpec) -> Rejection | None:
    if isinstance(change, DeleteChange) or change.pred:
        return Rejection(
            "append_only",
            f"{spec.name} entries are written once and never edited or deleted: "
            "record a new entry to correct one",
        )
    return None


def _check_shape(
    change: Change, collections: Mapping[str, CollectionSpec], *, patterns_checked: bool = False
) -> Rejection | FieldSpec | None:
    """Everything :func:`validate_change` checks but the value's type (see _field_to_type_check);
    ``patterns_checked``: the batch's ids, pred entries, record ids and hlcs all have their shape."""
    if not patterns_checked and not _ID.fullmatch(change.id):
        return Rejection("bad_id", f"change id {change.id!r} must be a lowercase UUID (v7 recommended)")
    if not patterns_checked and not _RECORD_ID.fullmatch(change.record_id):
        return Rejection(
            "bad_record_id", f"record_id {change.record_id!r} must be 1-64 of A-Z a-z 0-9 _ . : -"
        )
    spec = collections.get(change.collection)
    if spec is None:
        known = ", ".join(sorted(collections))
        return Rejection(
            "unknown_collection", f"unknown collection {change.collection!r}; known collections: {known}"
        )
    if not patterns_checked and not _HLC.fullmatch(change.hlc):
        return Rejection(
            "bad_hlc", f"hlc {change.hlc!r} is not '<15-digit wall ms>-<6-digit counter>-<replica id>'"
        )
    rejection = _check_pred(change, patterns_checked=patterns_checked) if change.pred else None
    if rejection is None and spec.append_only:
        rejection = _check_append_only(change, spec)
    if rejection is not None or isinstance(change, DeleteChange):
        return rejection
    return _field_to_type_check(change, spec)


def validate_batch(
    changes: Sequence[Change], collections: Mapping[str, CollectionSpec]
) -> list[Rejection | None]:
    """:func:`validate_change` of each change, in order. The shapes of ids, record ids and hlcs
    are checked one regex call per pattern for the whole batch, and the values' types one call
    per field (a call per value cost more than the check itself); a batch or a field that does
    not pass as a whole is gone through one by one, for each change's own reason."""
    verdicts: list[Rejection | None] = []
    to_type_check: dict[int, tuple[FieldSpec, list[int]]] = {}
    patterns_checked = _patterns_pass(changes)
    for index, change in enumerate(changes):
        found = _check_shape(change, collections, patterns_checked=patterns_checked)
        if isinstance(found, FieldSpec):
            to_type_check.setdefault(id(found), (found, []))[1].append(index)
            found = None
        verdicts.append(found)
    for field_spec, indexes in to_type_check.values():
        try:
            msgspec.convert(
                ([changes[i].value for i in indexes],), _holder(field_spec, many=True), strict=True
            )
        except msgspec.ValidationError:
            for i in indexes:
                verdicts[i] = _check_type(changes[i].value, field_spec)
    return verdicts


def validate_change(change: Change, collections: Mapping[str, CollectionSpec]) -> Rejection | None:
    """The reason ``change`` cannot be accepted, or None when it is valid."""
    found = _check_shape(change, collections)
    return _check_type(change.value, found) if isinstance(found, FieldSpec) else found
