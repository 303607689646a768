"""The judging step of a push (server/sync/push.py): each change of a batch judged against what
the push read, in turn by the clock, the caller's role and the record's current scope, the
rules that need the database, and where the accepted changes put the records. No I/O: a
function of what was read, whose verdicts go into the push's results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from schemas.collections import CollectionSpec
from schemas.protocol import Change, ChangeResult
from server.access.placement import authorize_batch, moves_records, placed_as_merged, refuse_untouchable
from server.access.places import Scope, ScopeRow
from server.access.policy import is_scoped
from server.access.principals import Principal
from server.sync.push_checks import within_clock
from server.sync.rules import NamedChange, judge_batch
from sync.merge import RecordKey, RecordState
from sync.validate import ClockBound

__all__ = ["Judged", "Reads", "judge_push"]


class Reads(NamedTuple):
    """What a push read that its judging needs: the states of the records its new changes
    touch, the rows of the records the rules and scopes read, the changes the preds name
    (``named``, and the ids of those known, ``known``), the stored states of the records a
    ``ref_holds`` link names (``linked``)."""

    states: Mapping[RecordKey, RecordState]
    scope_rows: Mapping[RecordKey, ScopeRow]
    named: Mapping[str, NamedChange]
    known: set[str]
    linked: Mapping[RecordKey, RecordState]


class Judged(NamedTuple):
    """The accepted changes and the states of the records they touch; when the scope judge
    merged them, those states are merged and ``scopes`` holds the records' places in them."""

    fresh: list[tuple[int, Change]]
    states: dict[RecordKey, RecordState]
    scopes: dict[RecordKey, Scope] | None


# A round of judging: the states of the records the accepted changes touch, the results, and
# the accepted changes.
_Round = tuple[dict[RecordKey, RecordState], list[ChangeResult | None], list[tuple[int, Change]]]


def judge_push(
    collections: Mapping[str, CollectionSpec],
    principal: Principal | None,
    bound: ClockBound,
    fresh: list[tuple[int, Change]],
    reads: Reads,
    results: list[ChangeResult | None],
) -> Judged:
    """The clock, then role and current scope (the rules then speak only of records the caller
    may read), then the domain rules, then where the accepted changes put the records. For a
    scoped caller the last step merges the accepted changes once and judges each against the
    merged places (``placed_as_merged``); should that not answer (a record moved twice, a
    change refused), ``_placed_in_turn`` judges the moves one by one. Rejections go into
    ``results``."""
    fresh = within_clock(fresh, results, bound)
    fresh = refuse_untouchable(principal, reads.states, fresh, reads.scope_rows, results)
    states, judged = dict(reads.states), list(results)
    ruled = judge_batch(collections, states, fresh, judged, reads.scope_rows, reads.named, reads.linked)
    scopes = None
    if is_scoped(principal):
        placed = placed_as_merged(principal, collections, states, ruled, reads.scope_rows, reads.known)
        if placed is None:
            states, judged, ruled = _placed_in_turn(
                collections, principal, fresh, reads, results, (states, judged, ruled)
            )
        else:
            states, scopes = placed
    results[:] = judged
    return Judged(ruled, states, scopes)


def _placed_in_turn(
    collections: Mapping[str, CollectionSpec],
    principal: Principal | None,
    fresh: list[tuple[int, Change]],
    reads: Reads,
    results: list[ChangeResult | None],
    ruled_round: _Round,
) -> _Round:
    """``authorize_batch`` over what the rules accepted (``ruled_round``: the states of the
    records the rules' accepted changes touch, the results, those changes); returns the states of the records the accepted changes touch, the results and
    the accepted changes. A move it refuses is as if never sent: when the rules had refused
    another change beside it (a second place of a hazard, a second write of a ledger entry),
    the rest is judged once more without it."""
    states, judged, ruled = ruled_round
    allowed = authorize_batch(principal, collections, states, ruled, reads.scope_rows, reads.known, judged)
    kept = {index for index, _ in allowed}
    refused_moves = {i for i, change in ruled if i not in kept and moves_records(collections, change)}
    if refused_moves and len(ruled) < len(fresh):
        for index in refused_moves:
            results[index] = judged[index]
        fresh = [(index, change) for index, change in fresh if index not in refused_moves]
        states, judged = dict(reads.states), list(results)
        ruled = judge_batch(collections, states, fresh, judged, reads.scope_rows, reads.named, reads.linked)
        allowed = authorize_batch(
            principal, collections, states, ruled, reads.scope_rows, reads.known, judged
        )
    return states, judged, allowed
