"""Where a push's accepted changes put records, and whether a scoped caller may put them there
(docs/security.md): the scope judge of the push (``server/sync/push.py``).

A change is judged twice against the caller's scope. First against where its record sits now
(``refuse_untouchable``, before the domain rules, so that no rule speaks of a record the caller
may not read), then against where the batch puts it. The second is ``placed_as_merged`` in the
common case: the batch is merged once, and every change is judged against the merged records'
places, which serve the push's record step too. When a record is moved twice in one batch, or
any change is refused, the answer may depend on the order of the moves, and ``authorize_batch``
judges the moves one by one, each on copies of the states with only the moves accepted before
it: a rejected change is as if never sent, so it cannot vouch for another. The first gives the
second's answer whenever it answers at all (tests/unit/test_placement_paths.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.collections import CollectionSpec, per_schema
from schemas.protocol import Change, ChangeResult, DeleteChange, SetChange, rejected
from server.access.places import Scope, ScopeRow, link_target, resolve_scopes, scope_depths
from server.access.policy import COMPANY_FIELDS, Place, can_read, company_of, is_scoped
from server.access.principals import Principal
from sync.merge import RecordKey, RecordState, apply_batch, apply_change, copy_state

__all__ = [
    "FIELD_RECORDS",
    "HANDLER_FIELDS",
    "HANDLER_STATUSES",
    "RESIDENT_RATING_FIELDS",
    "authorize_batch",
    "moves_records",
    "placed_as_merged",
    "refuse_untouchable",
]

# Roles that write only the field records of their buildings (the registry is read-only to them).
FIELD_RECORDS = frozenset({"visits", "checkins", "hazards", "requests"})
# A handler moves a dispatched request through the company's part of the loop, nothing more.
HANDLER_FIELDS = frozenset({"status", "handler", "done_at", "photos"})
HANDLER_STATUSES = frozenset({"accepted", "done"})


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


def _rating_refused(change: Change, state: RecordState | None) -> bool:
    """Whether ``change`` types a rating of a request whose ``state`` (with the batch) does not
    mark it as given by phone on the resident's behalf."""
    return (
        isinstance(change, SetChange)
        and change.field in RESIDENT_RATING_FIELDS
        and change.value is not None
        and not _on_behalf(state)
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
        if change.collection == "requests" and _rating_refused(
            change, tentative.get((change.collection, change.record_id))
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


def _judge_moves(
    principal: Principal,
    collections: Mapping[str, CollectionSpec],
    placement: _Placement,
    placing: list[tuple[int, SetChange]],
    results: list[ChangeResult | None],
) -> set[int]:
    """Judge the moves in turn, each against the places the moves accepted before it give, and
    accept each allowed one into ``placement``; returns the indexes of the refused ones."""
    refused: set[int] = set()
    for index, move in placing:
        key = (move.collection, move.record_id)
        trial = placement.trial(move)
        after = Place(key[0], placement.scope_with(key, trial), company_of(key[0], trial))
        refusal = _may_place(principal, move, is_new=key not in placement.scope_rows, after=after)
        target = collections[key[0]].fields[move.field].ref
        if refusal is None and move.value is not None and target is not None:
            refusal = _may_link(principal, move, target, placement.scope_of((target, move.value)))
        if refusal is None:
            placement.accept(move, trial)
        else:
            refused.add(index)
            _refuse(results, index, move, refusal)
    return refused


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
    refused = _judge_moves(principal, collections, placement, placing, results)
    final = placement.final_states()
    after_scopes = resolve_scopes(collections, final, scope_rows)
    placed = {index for index, _ in placing}
    fresh = _residents_rate([(i, c) for i, c in fresh if i not in refused], states, known, results)
    allowed: list[tuple[int, Change]] = []
    for index, change in fresh:
        if index not in placed:
            key = (change.collection, change.record_id)
            after = Place(key[0], after_scopes[key], company_of(key[0], final[key]))
            refusal = _may_place(principal, change, is_new=key not in scope_rows, after=after)
            if refusal is not None:
                _refuse(results, index, change, refusal)
                continue
        allowed.append((index, change))
    return allowed


def _moved_once(collections: Mapping[str, CollectionSpec], fresh: list[tuple[int, Change]]) -> bool:
    """Whether no record has more than one change of ``fresh`` that moves it."""
    placing = _placing_fields(collections)
    moved: set[RecordKey] = set()
    for _, change in fresh:
        if isinstance(change, SetChange) and (change.collection, change.field) in placing:
            key = (change.collection, change.record_id)
            if key in moved:
                return False
            moved.add(key)
    return True


def _allowed_as_merged(
    principal: Principal,
    collections: Mapping[str, CollectionSpec],
    merged: Mapping[RecordKey, RecordState],
    scopes: Mapping[RecordKey, Scope],
    fresh: list[tuple[int, Change]],
    scope_rows: Mapping[RecordKey, ScopeRow],
) -> bool:
    """Whether every change of ``fresh`` is allowed where the merge puts its record: the
    checks of ``authorize_batch``, each against the merged places. A verdict depends on the
    place alone (the record's, a link's target), so each place is judged once."""
    placing = _placing_fields(collections)
    placed: dict[RecordKey, bool] = {}
    at_place: dict[tuple[str, Scope, str | None], bool] = {}
    linked: dict[RecordKey, bool] = {}
    for _, change in fresh:
        key = (change.collection, change.record_id)
        allowed = placed.get(key)
        if allowed is None:
            where = (key[0], scopes[key], company_of(key[0], merged[key]))
            allowed = at_place.get(where)
            if allowed is None:
                after = Place(*where)
                refusal = _may_place(principal, change, is_new=key not in scope_rows, after=after)
                allowed = at_place[where] = refusal is None
            placed[key] = allowed
        if not allowed or (change.collection == "requests" and _rating_refused(change, merged[key])):
            return False
        if not isinstance(change, SetChange) or change.value is None or (key[0], change.field) not in placing:
            continue
        target = collections[key[0]].fields[change.field].ref
        if target is None:
            continue
        named = (target, change.value)
        allowed = linked.get(named)
        if allowed is None:
            row = scope_rows.get(named)
            target_scope = scopes.get(named, None if row is None else row.scope)
            allowed = linked[named] = _may_link(principal, change, target, target_scope) is None
        if not allowed:
            return False
    return True


def placed_as_merged(
    principal: Principal | None,
    collections: Mapping[str, CollectionSpec],
    states: Mapping[RecordKey, RecordState],
    fresh: list[tuple[int, Change]],
    scope_rows: Mapping[RecordKey, ScopeRow],
    known: set[str],
) -> tuple[dict[RecordKey, RecordState], dict[RecordKey, Scope]] | None:
    """``authorize_batch``'s answer found by the push's one merge, when it accepts every change:
    copies of ``states`` with ``fresh`` merged in (``known`` as for ``apply_batch``), and the
    records' places in them. None when a record moves more than once in ``fresh``, or when any
    change would be refused: the answer may then depend on the order of the moves, and
    ``authorize_batch`` gives it.

    Why the answers agree: with one move a record, the state ``authorize_batch`` judges a move
    in (its record's, with the moves accepted before it) holds the placing values of the merged
    state as long as every move before it was accepted, since no other change writes a placing
    field (a delete covers a value, it does not take it away). So when every change is allowed
    where the merge puts its record, each is allowed there in its turn, every move is accepted,
    and the merge of the accepted changes is this merge."""
    if not _moved_once(collections, fresh):
        return None
    # A new record's state is empty: a new empty one is its copy, made at a third of the cost.
    merged = {
        key: copy_state(state) if state.heads or state.pending or state.covered else RecordState()
        for key, state in states.items()
    }
    apply_batch(merged, [change for _, change in fresh], known)
    scopes = resolve_scopes(collections, merged, scope_rows)
    if not is_scoped(principal):
        return merged, scopes
    assert principal is not None
    if not _allowed_as_merged(principal, collections, merged, scopes, fresh, scope_rows):
        return None
    return merged, scopes
