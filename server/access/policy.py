"""What each role may read and write (docs/security.md), applied to push, pull, snapshot and
record reads.

A record's *place* is its scope columns (community, grid, building, household; derived by
``server/access/places.py``) and, for requests, the company they are dispatched to. One rule decides
whether a principal may see a place; it exists twice, as SQL over the ``records`` columns
(``reads_filter``) and in Python (``can_read``), both built from ``_assigned`` so they agree
(tests/conformance/test_scopes.py checks them against each other).

When a record's place changes, the push logs a *move* (``scope_moves``, at the push's last seq),
so a phone whose scope the record left is told to drop it and the record with everything under
it, and a phone whose scope it entered receives their current heads. Where a push's changes put
records, and whether the caller may put them there, is judged in ``server/access/placement.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec
from schemas.protocol import Change, ConflictHead, RecordView
from server.access import personal
from server.access.places import Scope, ScopeRow
from server.access.principals import Principal
from server.db.tables import SCOPE_COLUMNS, records, scope_moves
from sync.merge import RecordKey, RecordState, scalar_value

__all__ = [
    "COMPANY_FIELDS",
    "SENSITIVE_NOTES",
    "SENSITIVE_TAGS",
    "TAG_FIELDS",
    "Place",
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
    "reads_filter",
    "scope_fingerprint",
    "visible_heads",
]

# The field that names the company a record is dispatched to (what a handler reads by).
COMPANY_FIELDS = {"requests": "dispatched_to"}
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
