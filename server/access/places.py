"""Where a record sits: its community, grid, building and household (the scope columns).

Every record row carries ``community_id``, ``grid_id``, ``building_id`` and ``household_id``,
derived at push time from the record's own link field (``CollectionSpec.scope_links``) and the
scope of the record it links to. A community is its own community, a grid its own grid, and so
on down (``CollectionSpec.scope_self``); a visit takes all four from its household, a points
entry from its resident, a hazard from whichever place it names.

One push reads the rows it needs with the records' states (``SyncStore``: one query per
collection): the records it touches, then those of ``scope_keys`` not among them (the parents
they link to). Parents written in the same batch are resolved in memory, top of the tree
first. When a record's scope changes (a household moves to another building), the records below
it follow in the same transaction (``follow_moves``): one ``UPDATE ... WHERE household_id = :id``
per moved record, batched with ``executemany``. Moves are rare; the columns
are therefore always current, and reads never walk the tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, not_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec, per_schema
from schemas.protocol import Change
from server.db.tables import SCOPE_COLUMNS, records
from sync.merge import RecordKey, RecordState, scalar_value

__all__ = [
    "Scope",
    "ScopeRow",
    "follow_moves",
    "has_moves",
    "link_target",
    "resolve_scopes",
    "scope_depths",
    "scope_keys",
]


class Scope(NamedTuple):
    community_id: str | None = None
    grid_id: str | None = None
    building_id: str | None = None
    household_id: str | None = None


class ScopeRow(NamedTuple):
    """What the database holds about a record before this push: it exists, and its scope."""

    scope: Scope
    deleted: bool


def link_target(
    spec: CollectionSpec, collections: Mapping[str, CollectionSpec], state: RecordState
) -> RecordKey | None:
    """The parent a record's merged state links to (the first scope link with a value)."""
    for name in spec.scope_links:
        value = scalar_value(state, name)
        if value is not None:
            target = spec.fields[name].ref
            assert target is not None
            return (target, value)
    return None


def _depth(collections: Mapping[str, CollectionSpec], name: str, seen: frozenset[str] = frozenset()) -> int:
    spec = collections[name]
    parents = [spec.fields[link].ref for link in spec.scope_links]
    return 1 + max(
        (_depth(collections, p, seen | {name}) for p in parents if p is not None and p not in seen), default=0
    )


@per_schema
def scope_depths(collections: Mapping[str, CollectionSpec]) -> dict[str, int]:
    """Each collection's depth in the scope tree: a record's parents are always shallower."""
    # The walk explores every path, and every push needs it: made once per schema.
    return {name: _depth(collections, name) for name in collections}


def scope_keys(
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    changes: Iterable[Change],
) -> set[RecordKey]:
    """The rows one push needs: the touched records, the parents they link to now, and every
    record a reference field of the batch names (so ``rules`` can tell whether it exists)."""
    wanted: set[RecordKey] = set(states)
    for (collection, _), state in states.items():
        parent = link_target(collections[collection], collections, state)
        if parent is not None:
            wanted.add(parent)
    for change in changes:
        if change.field is None or change.value is None:
            continue
        field_spec = collections[change.collection].fields[change.field]
        if field_spec.ref is not None and isinstance(change.value, str):
            wanted.add((field_spec.ref, change.value))
    return wanted


def resolve_scopes(
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    rows: Mapping[RecordKey, ScopeRow],
) -> dict[RecordKey, Scope]:
    """The scope of every record in ``states`` after the batch, parents before children."""
    resolved: dict[RecordKey, Scope] = {}
    depth = scope_depths(collections)
    for key in sorted(states, key=lambda k: (depth[k[0]], k)):
        spec = collections[key[0]]
        parent = link_target(spec, collections, states[key])
        scope = Scope()
        if parent is not None:
            known = resolved.get(parent) or (rows[parent].scope if parent in rows else None)
            scope = known or Scope()
        if spec.scope_self is not None:
            scope = scope._replace(**{spec.scope_self: key[1]})
        resolved[key] = scope
    return resolved


def _moved(
    collections: Mapping[str, CollectionSpec],
    before: Mapping[RecordKey, ScopeRow],
    after: Mapping[RecordKey, Scope],
) -> Iterator[tuple[RecordKey, Scope, str]]:
    """The records with records below them whose place changed: (key, new scope, the scope
    column that names them)."""
    for key, scope in after.items():
        level = collections[key[0]].scope_self
        old = before.get(key)
        if level is not None and old is not None and old.scope != scope:
            yield key, scope, level


def has_moves(
    collections: Mapping[str, CollectionSpec],
    before: Mapping[RecordKey, ScopeRow],
    after: Mapping[RecordKey, Scope],
) -> bool:
    """Whether ``follow_moves`` has records below a moved one to update."""
    return any(_moved(collections, before, after))


async def follow_moves(
    connection: AsyncConnection,
    collections: Mapping[str, CollectionSpec],
    before: Mapping[RecordKey, ScopeRow],
    after: Mapping[RecordKey, Scope],
) -> int:
    """Carry a moved record's new scope down to the records below it; returns how many moved."""
    moved = 0
    for level_index, level in enumerate(SCOPE_COLUMNS):
        above = SCOPE_COLUMNS[:level_index]
        if not above:
            continue  # a community has nothing above it to move to
        rows: list[dict[str, Any]] = [
            {"b_id": key[1], "b_collection": key[0]} | {f"b_{n}": getattr(scope, n) for n in above}
            for key, scope, moved_level in _moved(collections, before, after)
            if moved_level == level
        ]
        if not rows:
            continue
        statement = (
            update(records)
            .where(
                records.c[level] == bindparam("b_id"),
                not_(
                    and_(
                        records.c.collection == bindparam("b_collection"),
                        records.c.record_id == bindparam("b_id"),
                    )
                ),
            )
            .values({name: bindparam(f"b_{name}") for name in above})
        )
        await connection.execute(statement, rows)
        moved += len(rows)
    return moved
