"""What each role may read and write (docs/security.md), applied to push, pull, snapshot and
record reads.

A record's *place* is its scope columns (community, grid, building, household; derived by
``server/access/places.py``) and, for requests, the company they are dispatched to. One rule decides
whether a principal may see a place; it exists twice, as SQL over the ``records`` columns
(``reads_filter``) and in Python (``can_read``), both built from ``_assigned`` so they agree
(tests/conformance/test_scopes.py checks them against each other).

When a record's place changes, the push logs a *move* (``scope_moves``, at the push's last seq),
so a phone whose scope the record left is told to drop it and the record with everything under
it, and a phone whose scope it entered receives their current heads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec, per_schema
from schemas.protocol import Change, ChangeResult, ConflictHead, DeleteChange, RecordView, SetChange, rejected
from server.access import personal
from server.access.places import Scope, ScopeRow, link_target, resolve_scopes, scope_depths
from server.access.principals import Principal
from server.db.tables import SCOPE_COLUMNS, records, scope_moves
from sync.merge import RecordKey, RecordState, apply_batch, apply_change, copy_state, scalar_value

__all__ = [
    "COMPANY_FIELDS",
    "SENSITIVE_NOTES",
    "SENSITIVE_TAGS",
    "TAG_FIELDS",
    "Place",
    "authorize_batch",
    "can_read",
    "company_of",
    "hides_sensitive",
    "is_hidden",
    "is_hidden_json",
    "is_scoped",
    "log_moves",
    "mask_change",
    "mask_fields",
    "mask_text",
    "mask_value",
    "mask_view",
    "moves_for",
    "moves_records",
    "reads_filter",
    "refuse_untouchable",
    "scope_fingerprint",
    "visible_heads",
]

# The field that names the company a record is dispatched to (what a handler reads by).
COMPANY_FIELDS = {"requests": "dispatched_to"}
# Roles that write only the field records of their buildings (the registry is read-only to them).
FIELD_RECORDS = frozenset({"visits", "checkins", "hazards", "requests"})
# A handler moves a dispatched request through the company's part of the loop, nothing more.
HANDLER_FIELDS = frozenset({"status", "handler", "done_at", "photos"})
HANDLER_STATUSES = frozenset({"accepted", "done"})
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Place:
    collection: str
    scope: Scope
    company: str | None = None


def company_of(collection: str, state: RecordState) -> str | None:
    field = COMPANY_FIELDS.get(collection)
    value = scalar_value(state, field) if field else None
    return value if isinstance(value, str) else None


def _assigned(principal: Principal) -> dict[str, tuple[str, ...]]:
    """Per scope column, the ids that column must hold for this user to read a record."""
    role, scope = principal.role, principal.scope
    if role == "community_admin":
        return {"community_id": scope.communities}
    if role == "grid_worker":
        return {"grid_id": scope.grids}
    if role in ("building_leader", "volunteer"):
        return {"building_id": scope.buildings}
    return {}


def is_scoped(principal: Principal | None) -> bool:
    return principal is not None and not principal.is_district_admin


# Bumped when what a role reads widens (a grid worker's compound-level requests), so that every
# scoped phone starts over from a snapshot of what it may now read.
_READ_RULES = 2


def scope_fingerprint(principal: Principal | None) -> str:
    """Changes when the user's role or assignment changes, or the read rules do; carried in
    scoped cursors."""
    if not is_scoped(principal):
        return ""
    assert principal is not None
    raw = _json.encode(
        [
            _READ_RULES,
            principal.role,
            principal.scope.communities,
            principal.scope.grids,
            principal.scope.buildings,
            principal.scope.company,
        ]
    )
    return hashlib.sha256(raw).hexdigest()[:10]


def reads_filter(principal: Principal | None) -> ColumnElement[bool]:
    """SQL condition on ``records`` for the rows the principal may read."""
    if not is_scoped(principal):
        return true()
    assert principal is not None
    conditions: list[ColumnElement[bool]] = [
        records.c[column].in_(ids) for column, ids in _assigned(principal).items() if ids
    ]
    if principal.role == "handler" and principal.scope.company:
        dispatched = and_(records.c.collection == "requests", records.c.company == principal.scope.company)
        if principal.scope.communities:
            # A handler named by a community admin works in that admin's communities only.
            dispatched = and_(dispatched, records.c.community_id.in_(principal.scope.communities))
        conditions.append(dispatched)
    if principal.role == "grid_worker" and principal.scope.communities:
        # The phone shows its community's name, though it works in its grids only; and it works
        # the requests about a whole compound of its community (placed at the community: no grid).
        conditions.append(
            and_(
                records.c.collection.in_(("communities", "requests")),
                records.c.grid_id.is_(None),
                records.c.community_id.in_(principal.scope.communities),
            )
        )
    return or_(*conditions) if conditions else false()


def can_read(principal: Principal | None, place: Place) -> bool:
    if not is_scoped(principal):
        return True
    assert principal is not None
    if any(getattr(place.scope, column) in ids for column, ids in _assigned(principal).items()):
        return True
    if principal.role == "handler":
        return (
            place.collection == "requests"
            and bool(place.company)
            and place.company == principal.scope.company
            and (not principal.scope.communities or place.scope.community_id in principal.scope.communities)
        )
    return (
        principal.role == "grid_worker"
        and place.collection in ("communities", "requests")
        and place.scope.grid_id is None
        and place.scope.community_id in principal.scope.communities
    )


def _may_touch(principal: Principal, change: Change, before: Place | None) -> tuple[str, str] | None:
    """What the caller's role allows, and where the record is now: nothing the batch can change."""
    role = principal.role
    where = f"{change.collection}/{change.record_id}"
    if role == "handler":
        if change.collection != "requests" or before is None or not can_read(principal, before):
            return ("out_of_scope", f"{where}: a handler updates only requests dispatched to their company")
        if isinstance(change, DeleteChange) or change.field not in HANDLER_FIELDS:
            allowed = ", ".join(sorted(HANDLER_FIELDS))
            return ("forbidden_field", f"{where}: a handler may change only {allowed} of a request")
        if (
            isinstance(change, SetChange)
            and change.field == "status"
            and change.value not in HANDLER_STATUSES
        ):
            return ("forbidden_field", f"{where}: a handler moves a request to accepted or done only")
        return None
    if role in ("building_leader", "volunteer") and change.collection not in FIELD_RECORDS:
        return ("out_of_scope", f"{where}: a {role} records visits, checkins, hazards and requests only")
    if before is not None and not can_read(principal, before):
        return ("out_of_scope", f"{where} is outside the grids and buildings assigned to you")
    return None


def _may_place(principal: Principal, change: Change, *, is_new: bool, after: Place) -> tuple[str, str] | None:
    """Where the accepted changes put the record (a handler moves no request: ``_may_touch``)."""
    if principal.role == "handler" or can_read(principal, after):
        return None
    where = f"{change.collection}/{change.record_id}"
    if is_new and after.scope == Scope():
        return (
            "out_of_scope",
            f"{where} is not placed yet: link it to a household, building or grid of yours in the same push",
        )
    return ("out_of_scope", f"{where} would move outside the grids and buildings assigned to you")


def _may_link(
    principal: Principal, change: Change, target_collection: str, target_scope: Scope | None
) -> tuple[str, str] | None:
    """A link (a household's building, a visit's household ...) must name a place the user may
    write, even when a concurrent write keeps another value on top."""
    if target_scope is not None and can_read(principal, Place(target_collection, target_scope)):
        return None
    return (
        "out_of_scope",
        f"{change.collection}/{change.record_id}: {change.field} names {target_collection}/{change.value}, "
        "which is outside the grids and buildings assigned to you",
    )


def _before(
    key: RecordKey, states: Mapping[RecordKey, RecordState], scope_rows: Mapping[RecordKey, ScopeRow]
) -> Place | None:
    row = scope_rows.get(key)
    return None if row is None else Place(key[0], row.scope, company_of(key[0], states[key]))


def _refuse(results: list[ChangeResult | None], index: int, change: Change, refusal: tuple[str, str]) -> None:
    results[index] = rejected(change.id, *refusal)


def refuse_untouchable(
    principal: Principal | None,
    states: Mapping[RecordKey, RecordState],
    fresh: list[tuple[int, Change]],
    scope_rows: Mapping[RecordKey, ScopeRow],
    results: list[ChangeResult | None],
) -> list[tuple[int, Change]]:
    """Reject (in ``results``) each change the principal may not make whatever the batch does:
    one its role may not write, or of a record now outside its scope; return the others. Judged
    before the domain rules, so that no rule's answer is about a record the caller may not read."""
    if not is_scoped(principal) or not fresh:
        return fresh
    assert principal is not None
    allowed: list[tuple[int, Change]] = []
    for index, change in fresh:
        key = (change.collection, change.record_id)
        refusal = _may_touch(principal, change, _before(key, states, scope_rows))
        if refusal is None:
            allowed.append((index, change))
        else:
            _refuse(results, index, change, refusal)
    return allowed


@per_schema
def _placing_fields(collections: Mapping[str, CollectionSpec]) -> frozenset[tuple[str, str]]:
    """The (collection, field) pairs whose value says where a record sits: its scope links, and
    the company a request is dispatched to. No other change moves a record."""
    return frozenset(
        (name, field)
        for name, spec in collections.items()
        for field in (*spec.scope_links, *((COMPANY_FIELDS[name],) if name in COMPANY_FIELDS else ()))
    )


def moves_records(collections: Mapping[str, CollectionSpec], change: Change) -> bool:
    """Whether ``change`` may change where a record sits (and so where others sit)."""
    return isinstance(change, SetChange) and (change.collection, change.field) in _placing_fields(collections)


class _Placement:
    """Where records sit as changes are accepted one by one, parents before children: the
    stored rows, and the states of the batch's records with only accepted changes applied."""

    def __init__(
        self,
        collections: Mapping[str, CollectionSpec],
        states: Mapping[RecordKey, RecordState],
        scope_rows: Mapping[RecordKey, ScopeRow],
        known: set[str],
    ) -> None:
        self.collections = collections
        self.states = states
        self.scope_rows = scope_rows
        self.known = known
        # Copies of the states that accepted placing changes were applied to.
        self.moved: dict[RecordKey, RecordState] = {}
        self.applied: set[str] = set()
        # Places of records whose placing changes are all judged (a parent's, when a child's
        # change is judged: parents come first).
        self.settled: dict[RecordKey, Scope | None] = {}

    def state(self, key: RecordKey) -> RecordState:
        return self.moved[key] if key in self.moved else self.states[key]

    def _known(self, change_id: str) -> bool:
        return change_id in self.known or change_id in self.applied

    def trial(self, change: Change) -> RecordState:
        """The record's state with ``change`` applied, the accepted ones so far kept."""
        trial = copy_state(self.state((change.collection, change.record_id)))
        apply_change(trial, change, self._known)
        return trial

    def accept(self, change: Change, trial: RecordState) -> None:
        self.moved[(change.collection, change.record_id)] = trial
        self.applied.add(change.id)

    def scope_with(self, key: RecordKey, state: RecordState) -> Scope:
        """The scope of ``key`` in ``state``, its parent where the accepted changes put it."""
        spec = self.collections[key[0]]
        parent = link_target(spec, self.collections, state)
        scope = (self.scope_of(parent) if parent is not None else None) or Scope()
        return scope._replace(**{spec.scope_self: key[1]}) if spec.scope_self is not None else scope

    def scope_of(self, key: RecordKey) -> Scope | None:
        """A settled record's scope (None: no such record)."""
        if key not in self.settled:
            if key in self.states:
                self.settled[key] = self.scope_with(key, self.state(key))
            else:
                row = self.scope_rows.get(key)
                self.settled[key] = None if row is None else row.scope
        return self.settled[key]

    def final_states(self) -> dict[RecordKey, RecordState]:
        return {key: self.moved.get(key, state) for key, state in self.states.items()}


# The resident rates for themselves (the rating link); a phone types a rating only when it is
# marked as given by phone on the resident's behalf.
RESIDENT_RATING_FIELDS = frozenset({"satisfaction", "comment"})


def _on_behalf(state: RecordState | None) -> bool:
    """Whether any head of the request marks its rating as given by phone for the resident (a
    concurrent link rating may hold the other value beside it)."""
    return state is not None and any(
        h.field == "rated_on_behalf" and h.value is True for h in state.heads.values()
    )


def _residents_rate(
    fresh: list[tuple[int, Change]],
    states: Mapping[RecordKey, RecordState],
    known: set[str],
    results: list[ChangeResult | None],
) -> list[tuple[int, Change]]:
    """Refuse a rating typed on a phone unless the request (with this batch) marks it as given
    by phone on the resident's behalf."""
    rating = [c for _, c in fresh if c.collection == "requests" and c.field in RESIDENT_RATING_FIELDS]
    if not rating:
        return fresh
    touched = {(c.collection, c.record_id) for c in rating}
    tentative = {key: copy_state(states[key]) for key in touched}
    apply_batch(tentative, [c for _, c in fresh if (c.collection, c.record_id) in touched], known)
    allowed: list[tuple[int, Change]] = []
    for index, change in fresh:
        state = tentative.get((change.collection, change.record_id))
        if (
            change.collection == "requests"
            and isinstance(change, SetChange)
            and change.field in RESIDENT_RATING_FIELDS
            and change.value is not None
            and not _on_behalf(state)
        ):
            refusal = (
                "rating_is_the_residents",
                f"requests/{change.record_id}: the rating is the resident's own: hand them the "
                "rating link, or set rated_on_behalf to true when they rated by phone",
            )
            _refuse(results, index, change, refusal)
        else:
            allowed.append((index, change))
    return allowed


def _placing_in_order(
    collections: Mapping[str, CollectionSpec], fresh: list[tuple[int, Change]]
) -> list[tuple[int, SetChange]]:
    """The changes of ``fresh`` that move records, parents' before children's, in batch order."""
    depth = scope_depths(collections)
    return sorted(
        (
            (index, change)
            for index, change in fresh
            if isinstance(change, SetChange) and moves_records(collections, change)
        ),
        key=lambda item: (depth[item[1].collection], item[0]),
    )


def authorize_batch(
    principal: Principal | None,
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    fresh: list[tuple[int, Change]],
    scope_rows: Mapping[RecordKey, ScopeRow],
    known: set[str],
    results: list[ChangeResult | None],
) -> list[tuple[int, Change]]:
    """Reject (in ``results``) each change that would put a record outside the principal's
    scope or link one to a place outside it; return the others.

    Where a record sits follows the accepted changes only: a rejected change is as if never
    sent, so it cannot vouch for another. The changes that move records (scope links, a
    request's company) are judged first, parents before children (and a record's own in batch
    order), each against the places the changes accepted before it give; the rest are judged
    against where the accepted ones put their records, so a new household and its building
    link may come in one push, in any order. ``known``: as for ``sync.merge.apply_batch``."""
    if not is_scoped(principal) or not fresh:
        return fresh
    assert principal is not None
    placing = _placing_in_order(collections, fresh)
    placement = _Placement(collections, states, scope_rows, known)
    refused: set[int] = set()
    for index, move in placing:
        key = (move.collection, move.record_id)
        trial = placement.trial(move)
        after = Place(key[0], placement.scope_with(key, trial), company_of(key[0], trial))
        refusal = _may_place(principal, move, is_new=key not in scope_rows, after=after)
        target = collections[key[0]].fields[move.field].ref
        if refusal is None and move.value is not None and target is not None:
            refusal = _may_link(principal, move, target, placement.scope_of((target, move.value)))
        if refusal is None:
            placement.accept(move, trial)
        else:
            refused.add(index)
            _refuse(results, index, move, refusal)
    final = placement.final_states()
    after_scopes = resolve_scopes(collections, final, scope_rows)
    placed = {index for index, _ in placing}
    fresh = _residents_rate([(i, c) for i, c in fresh if i not in refused], states, known, results)
    allowed: list[tuple[int, Change]] = []
    for index, change in fresh:
        if index in refused:
            continue
        if index not in placed:
            key = (change.collection, change.record_id)
            after = Place(key[0], after_scopes[key], company_of(key[0], final[key]))
            refusal = _may_place(principal, change, is_new=key not in scope_rows, after=after)
            if refusal is not None:
                _refuse(results, index, change, refusal)
                continue
        allowed.append((index, change))
    return allowed


async def log_moves(
    connection: AsyncConnection,
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    before: Mapping[RecordKey, ScopeRow],
    before_companies: Mapping[RecordKey, str | None],
    after: Mapping[RecordKey, Scope],
    seq: int,
) -> None:
    """Record every record of the batch whose place changed (not new records)."""
    rows: list[dict[str, Any]] = []
    for key, scope in after.items():
        old = before.get(key)
        if old is None:
            continue
        company = company_of(key[0], states[key])
        if old.scope == scope and before_companies.get(key) == company:
            continue
        rows.append(
            {
                "seq": seq,
                "collection": key[0],
                "record_id": key[1],
                "level": collections[key[0]].scope_self,
                "old_scope": _json.encode([*old.scope, before_companies.get(key)]).decode(),
                "new_scope": _json.encode([*scope, company]).decode(),
            }
        )
    if rows:
        await connection.execute(scope_moves.insert(), rows)


def _place(collection: str, raw: str) -> Place:
    *columns, company = msgspec.json.decode(raw)
    return Place(collection, Scope(*columns), company)


async def moves_for(
    connection: AsyncConnection, principal: Principal, after_seq: int, until_seq: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str, bytes]]]:
    """(records that left the principal's scope, records that entered it with their states)
    for the moves in (after_seq, until_seq]. A record that moved takes everything under it."""
    query = (
        select(scope_moves)
        .where(scope_moves.c.seq > after_seq, scope_moves.c.seq <= until_seq)
        .order_by(scope_moves.c.seq, scope_moves.c.id)
    )
    left: dict[tuple[str, str], None] = {}
    entered: dict[tuple[str, str], bytes] = {}
    for move in (await connection.execute(query)).all():
        old, new = _place(move.collection, move.old_scope), _place(move.collection, move.new_scope)
        was, now = can_read(principal, old), can_read(principal, new)
        if was == now:
            continue
        under = select(records.c.collection, records.c.record_id, records.c.state)
        if move.level in SCOPE_COLUMNS:
            under = under.where(records.c[move.level] == move.record_id)
        else:
            under = under.where(
                records.c.collection == move.collection, records.c.record_id == move.record_id
            )
        found = (await connection.execute(under)).all()
        for row in found:
            key = (row.collection, row.record_id)
            if was:
                entered.pop(key, None)
                left[key] = None
            else:
                left.pop(key, None)
                entered[key] = row.state
    return list(left), [(c, r, s) for (c, r), s in entered.items()]


def mask_text(value: str) -> str:
    """``110101199001011234`` -> ``1101**********1234``."""
    return personal.mask_text(value)


def mask_value(
    principal: Principal | None,
    collections: Mapping[str, CollectionSpec],
    collection: str,
    field: str | None,
    value: Any,
) -> Any:
    """A masked field's value as ``principal`` may read it: whole (opened from its seal) for
    admins and the server itself, masked for everyone else."""
    if field is None or not isinstance(value, str):
        return value
    whole = principal is None or principal.is_admin
    if value.startswith(personal.SEALED_PREFIX):
        spec = collections.get(collection)
        field_spec = spec.fields.get(field) if spec else None
        if field_spec is None or not field_spec.masked:
            return value  # text that merely looks sealed, in a field that is never sealed
        return personal.reveal(collection, field, value) if whole else personal.masked_form(value)
    if whole:
        return value
    spec = collections.get(collection)
    field_spec = spec.fields.get(field) if spec else None
    return mask_text(value) if field_spec is not None and field_spec.masked else value


def mask_change(
    principal: Principal | None, collections: Mapping[str, CollectionSpec], change: Change
) -> Change:
    masked = mask_value(principal, collections, change.collection, change.field, change.value)
    return change if masked is change.value else msgspec.structs.replace(change, value=masked)


def mask_fields(
    principal: Principal | None,
    collections: Mapping[str, CollectionSpec],
    collection: str,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """A record's fields as ``principal`` may read them: masked fields masked (or opened), and
    for the roles kept from sensitive data, health notes left out and sensitive tags dropped."""
    hiding = hides_sensitive(principal)
    shown: dict[str, Any] = {}
    for name, value in fields.items():
        if hiding and (collection, name) in SENSITIVE_NOTES:
            continue
        if hiding and (collection, name) in TAG_FIELDS and isinstance(value, list):
            value = [tag for tag in value if tag not in SENSITIVE_TAGS]
        shown[name] = mask_value(principal, collections, collection, name, value)
    return shown


# ------------------------------------------------------------------ sensitive data

# Roles that never read health notes or the tags that mark a vulnerable person (docs/security.md).
SENSITIVE_READERS_EXCLUDED = frozenset({"volunteer", "building_leader"})
SENSITIVE_TAGS = frozenset({"disability", "five-guarantee", "elderly-alone"})
# Set fields whose elements are tags, and the free-text notes that hold health information.
TAG_FIELDS = frozenset({("households", "tags"), ("residents", "tags")})
SENSITIVE_NOTES = frozenset({("households", "notes"), ("residents", "notes"), ("checkins", "notes")})
# The sensitive tags as a change's stored JSON value, to judge a pulled row without decoding it.
_SENSITIVE_TAG_JSON = frozenset(f'"{tag}"' for tag in SENSITIVE_TAGS)


def hides_sensitive(principal: Principal | None) -> bool:
    """Whether ``principal`` is kept from health notes and sensitive tags."""
    return principal is not None and principal.role in SENSITIVE_READERS_EXCLUDED


def is_hidden(collection: str, field: str | None, value: Any) -> bool:
    """Whether a change (or head) of this field and value is sensitive: a health note, or the
    add or remove of a sensitive tag. Callers ask only for principals that ``hides_sensitive``."""
    key = (collection, field)
    if key in SENSITIVE_NOTES:
        return True
    return key in TAG_FIELDS and value in SENSITIVE_TAGS


def is_hidden_json(collection: str, field: str | None, value_json: str) -> bool:
    """``is_hidden`` of a log row whose value is still its stored JSON text."""
    key = (collection, field)
    if key in SENSITIVE_NOTES:
        return True
    return key in TAG_FIELDS and value_json in _SENSITIVE_TAG_JSON


def visible_heads(principal: Principal | None, heads: list[Change]) -> list[Change]:
    """``heads`` without the sensitive ones, for the roles kept from them."""
    if not hides_sensitive(principal):
        return heads
    return [head for head in heads if not is_hidden(head.collection, head.field, head.value)]


def mask_view(
    principal: Principal | None, collections: Mapping[str, CollectionSpec], view: RecordView
) -> RecordView:
    """A record view (in place) as ``principal`` may read it: ``mask_fields`` on its fields and
    the same on its conflicts' heads, sensitive heads and conflicts left out."""
    collection = view.collection
    view.fields = mask_fields(principal, collections, collection, view.fields)
    hiding = hides_sensitive(principal)
    shown: dict[str, list[ConflictHead]] = {}
    for name, heads in view.conflicts.items():
        if hiding and (collection, name) in SENSITIVE_NOTES:
            continue
        kept = []
        for head in heads:
            if hiding and is_hidden(collection, head.field, head.value):
                continue
            head.value = mask_value(principal, collections, collection, head.field, head.value)
            kept.append(head)
        shown[name] = kept
    view.conflicts = shown
    return view
