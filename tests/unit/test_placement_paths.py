"""The scope judge's two paths give one answer.

A scoped push is judged where its merge puts the records (``placed_as_merged``, one merge), or,
when that does not answer, move by move on copies of the states (``authorize_batch``, a rejected
change as if never sent). For generated batches (new and stored records, moves in and out of
scope, decoys, a record moved twice, ratings, deletes, pred entries) as every role, the push's
judging (``push_judge.judge_push``) must give the results, the accepted changes, the merged states
and the places that the move-by-move judge alone gives; and the one-merge path must answer
whenever no record moves twice and nothing is refused.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.collections import COLLECTIONS
from schemas.protocol import Change, ChangeResult, DeleteChange, SetChange
from server.access.placement import authorize_batch, moves_records, placed_as_merged, refuse_untouchable
from server.access.places import Scope, ScopeRow, resolve_scopes
from server.access.principals import Principal, UserScope
from server.sync.push_judge import Reads, judge_push
from server.sync.rules import judge_batch
from sync.merge import RecordKey, RecordState, apply_batch, copy_state, state_codec
from sync.validate import ClockBound
from tests.factories import hlc

# The stored district: (collection, id, fields, scope).
_STORED: list[tuple[str, str, dict[str, Any], Scope]] = [
    ("communities", "c1", {"name": "Xingfu"}, Scope("c1")),
    ("communities", "c2", {"name": "Heping"}, Scope("c2")),
    ("grids", "g1", {"community_id": "c1"}, Scope("c1", "g1")),
    ("grids", "g2", {"community_id": "c1"}, Scope("c1", "g2")),
    ("grids", "g3", {"community_id": "c2"}, Scope("c2", "g3")),
    ("buildings", "b1", {"grid_id": "g1"}, Scope("c1", "g1", "b1")),
    ("buildings", "b2", {"grid_id": "g2"}, Scope("c1", "g2", "b2")),
    ("buildings", "b3", {"grid_id": "g3"}, Scope("c2", "g3", "b3")),
    ("households", "h1", {"building_id": "b1", "address": "1-101"}, Scope("c1", "g1", "b1", "h1")),
    ("households", "h2", {"building_id": "b2", "address": "2-101"}, Scope("c1", "g2", "b2", "h2")),
    ("households", "h3", {"building_id": "b3", "address": "3-101"}, Scope("c2", "g3", "b3", "h3")),
    ("residents", "r1", {"household_id": "h1", "name": "Wang Fang"}, Scope("c1", "g1", "b1", "h1")),
    ("visits", "v1", {"household_id": "h1", "purpose": "routine"}, Scope("c1", "g1", "b1", "h1")),
    (
        "requests",
        "q1",
        {"household_id": "h1", "title": "Leaking pipe", "dispatched_to": "acme", "status": "dispatched"},
        Scope("c1", "g1", "b1", "h1"),
    ),
]
_ROLES = [
    Principal("w", "w", "grid_worker", UserScope(communities=("c1",), grids=("g1",))),
    Principal("v", "v", "volunteer", UserScope(communities=("c1",), buildings=("b1",))),
    Principal("l", "l", "building_leader", UserScope(communities=("c1",), buildings=("b2",))),
    Principal("a", "a", "community_admin", UserScope(communities=("c1",))),
    Principal("h", "h", "handler", UserScope(company="acme")),
    Principal("d", "d", "district_admin"),
]
_ALLOW_ALL = ClockBound(1_800_000_000_000, 10**12)


def _stored() -> tuple[dict[RecordKey, RecordState], dict[RecordKey, ScopeRow]]:
    states: dict[RecordKey, RecordState] = {}
    rows: dict[RecordKey, ScopeRow] = {}
    for number, (collection, record_id, fields, scope) in enumerate(_STORED):
        key = (collection, record_id)
        changes = [
            SetChange(
                id=f"s-{number}-{name}",
                collection=collection,
                record_id=record_id,
                hlc=hlc(number),
                field=name,
                value=value,
            )
            for name, value in fields.items()
        ]
        states[key] = RecordState()
        apply_batch(states, changes, set())
        rows[key] = ScopeRow(scope, False)
    return states, rows


_STATES, _ROWS = _stored()
_HOUSEHOLDS = ("h1", "h2", "h3", "n1", "n2", "h9")

# What a change may be: (collection, record ids, field, values); None as field: a delete.
_SHAPES: list[tuple[str, tuple[str, ...], str | None, tuple[Any, ...]]] = [
    ("households", ("h1", "h2", "h3", "n1", "n2"), "building_id", ("b1", "b2", "b3", "b9")),
    ("households", ("h1", "h2", "n1"), "address", ("1-102", "2-202")),
    ("households", ("h2", "h3"), None, ()),
    ("buildings", ("b1", "b2", "n3"), "grid_id", ("g1", "g2", "g3")),
    ("visits", ("v1", "v2", "v3"), "household_id", _HOUSEHOLDS),
    ("visits", ("v1", "v2", "v3"), "purpose", ("routine", "follow_up")),
    ("checkins", ("k1", "k2"), "household_id", _HOUSEHOLDS),
    ("checkins", ("k1", "k2"), "signal", (True, False)),
    ("hazards", ("z1", "z2"), "household_id", _HOUSEHOLDS),
    ("hazards", ("z1", "z2"), "building_id", ("b1", "b2", "b3")),
    ("hazards", ("z1",), "category", ("gas", "fire")),
    ("requests", ("q1", "q2"), "household_id", _HOUSEHOLDS),
    ("requests", ("q1", "q2"), "dispatched_to", ("acme", "other")),
    ("requests", ("q1", "q2"), "status", ("accepted", "done", "submitted")),
    ("requests", ("q1", "q2"), "satisfaction", (4, 5)),
    ("requests", ("q1", "q2"), "rated_on_behalf", (True, False)),
    ("requests", ("q2",), "title", ("Broken door",)),
    ("residents", ("r1", "r2"), "household_id", _HOUSEHOLDS),
]


@st.composite
def _batches(draw: st.DrawFn) -> list[Change]:
    """A batch of up to 12 changes; each names the field's stored heads in its pred, or not."""
    made: list[Change] = []
    for number in range(draw(st.integers(1, 12))):
        collection, record_ids, field, values = draw(st.sampled_from(_SHAPES))
        record_id = draw(st.sampled_from(record_ids))
        stored = _STATES.get((collection, record_id))
        heads = (
            [] if stored is None else [h for h in stored.heads.values() if field is None or h.field == field]
        )
        pred = tuple(h.id for h in heads) if draw(st.booleans()) else ()
        common = {
            "id": f"x-{number}",
            "collection": collection,
            "record_id": record_id,
            # Now, or stamped before the stored writes (a phone long offline: it loses to them).
            "hlc": hlc(draw(st.sampled_from((100, -100))) + number),
        }
        if field is None:
            made.append(DeleteChange(**common, pred=pred))
        else:
            made.append(SetChange(**common, field=field, value=draw(st.sampled_from(values)), pred=pred))
    return made


def _touched(changes: list[Change]) -> dict[RecordKey, RecordState]:
    """The states a push reads for ``changes``: the stored ones copied, new records empty."""
    keys = {(c.collection, c.record_id) for c in changes}
    return {key: copy_state(_STATES[key]) if key in _STATES else RecordState() for key in keys}


def _in_turn(
    principal: Principal, changes: list[Change]
) -> tuple[list[ChangeResult | None], list[tuple[int, Change]], dict[RecordKey, RecordState]]:
    """The move-by-move judge alone, as the push judged before it merged once, then the merge."""
    states = _touched(changes)
    results: list[ChangeResult | None] = [None] * len(changes)
    fresh = refuse_untouchable(principal, states, list(enumerate(changes)), _ROWS, results)
    for last_round in (False, True):
        judged_states, judged = dict(states), list(results)
        ruled = judge_batch(COLLECTIONS, judged_states, fresh, judged, _ROWS, {}, {})
        allowed = authorize_batch(principal, COLLECTIONS, judged_states, ruled, _ROWS, set(), judged)
        kept = {index for index, _ in allowed}
        refused_moves = {i for i, c in ruled if i not in kept and moves_records(COLLECTIONS, c)}
        if last_round or not refused_moves or len(ruled) == len(fresh):
            break
        for index in refused_moves:
            results[index] = judged[index]
        fresh = [(i, c) for i, c in fresh if i not in refused_moves]
    apply_batch(judged_states, [c for _, c in allowed], set())
    return judged, allowed, judged_states


def _encoded(states: dict[RecordKey, RecordState]) -> dict[RecordKey, bytes]:
    return {key: state_codec.encode(state) for key, state in states.items()}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(principal=st.sampled_from(_ROLES), changes=_batches())
def test_the_push_judges_as_the_move_by_move_judge_alone(principal: Principal, changes: list[Change]) -> None:
    results, allowed, states = _in_turn(principal, changes)

    read = _touched(changes)
    before = _encoded(read)
    pushed: list[ChangeResult | None] = [None] * len(changes)
    judged = judge_push(
        COLLECTIONS,
        principal,
        _ALLOW_ALL,
        list(enumerate(changes)),
        Reads(read, _ROWS, {}, set(), {}),
        pushed,
    )
    merged = judged.states
    if judged.scopes is None:
        apply_batch(merged, [c for _, c in judged.fresh], set())
    else:
        event("one merge")
        assert _encoded(read) == before, "the one-merge path left the states it read as they were"
        assert judged.scopes == resolve_scopes(COLLECTIONS, merged, _ROWS)

    assert pushed == results
    assert judged.fresh == allowed
    assert _encoded(merged) == _encoded(states)
    event(f"{len(allowed)} of {len(changes)} accepted")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(principal=st.sampled_from(_ROLES[:-1]), changes=_batches())
def test_one_merge_answers_unless_a_record_moves_twice_or_a_change_is_refused(
    principal: Principal, changes: list[Change]
) -> None:
    states = _touched(changes)
    results: list[ChangeResult | None] = [None] * len(changes)
    fresh = refuse_untouchable(principal, states, list(enumerate(changes)), _ROWS, results)
    ruled = judge_batch(COLLECTIONS, states, fresh, results, _ROWS, {}, {})
    placed = placed_as_merged(principal, COLLECTIONS, states, ruled, _ROWS, set())
    allowed = authorize_batch(principal, COLLECTIONS, states, ruled, _ROWS, set(), list(results))
    moves = [(c.collection, c.record_id) for _, c in ruled if moves_records(COLLECTIONS, c)]
    moved_twice = len(moves) != len(set(moves))
    if placed is None:
        event("move by move")
        assert moved_twice or allowed != ruled
    else:
        event("one merge")
        assert allowed == ruled
    if not moved_twice and allowed == ruled:
        assert placed is not None


def test_a_day_of_new_visits_in_scope_is_judged_on_one_merge() -> None:
    worker = _ROLES[0]
    changes: list[Change] = [
        SetChange(
            id=f"x-{n}",
            collection="visits",
            record_id=f"nv{n // 2}",
            hlc=hlc(100 + n),
            field=("household_id", "purpose")[n % 2],
            value=("h1", "routine")[n % 2],
        )
        for n in range(20)
    ]
    results: list[ChangeResult | None] = [None] * len(changes)
    judged = judge_push(
        COLLECTIONS,
        worker,
        _ALLOW_ALL,
        list(enumerate(changes)),
        Reads(_touched(changes), _ROWS, {}, set(), {}),
        results,
    )
    assert judged.scopes is not None
    assert results == [None] * len(changes)
    assert {judged.scopes[("visits", f"nv{n}")] for n in range(10)} == {Scope("c1", "g1", "b1", "h1")}
