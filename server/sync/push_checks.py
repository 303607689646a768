"""The checks of a push made change by change before the group's reads: each change alone
(shape, collection, field, value) as it arrives, and its clock once the duplicates are known
(server/sync/push.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from schemas.codec import MalformedChange
from schemas.collections import CollectionSpec
from schemas.protocol import Change, ChangeResult, rejected
from sync.hlc import hlc_wall_ms
from sync.validate import ClockBound, check_clock, validate_batch

__all__ = ["validated", "within_clock"]


def within_clock(
    fresh: list[tuple[int, Change]], results: list[ChangeResult | None], bound: ClockBound
) -> list[tuple[int, Change]]:
    """The new changes whose hlc is within ``bound`` of the server's clock; the others are
    refused ``clock_too_far_ahead``. Judged after the duplicates are known, like a rule: a change
    stored before is answered ``duplicate`` whatever its hlc."""
    # Validated hlcs: the greatest string carries the greatest wall time (a fixed-width prefix).
    if not fresh or hlc_wall_ms(max(c.hlc for _, c in fresh)) - bound.now_ms <= bound.max_ahead_ms:
        return fresh
    kept: list[tuple[int, Change]] = []
    for index, change in fresh:
        rejection = check_clock(change.hlc, bound)
        if rejection is None:
            kept.append((index, change))
        else:
            results[index] = rejected(change.id, rejection.code, rejection.message)
    return kept


def validated(
    items: Sequence[Change | MalformedChange], collections: Mapping[str, CollectionSpec]
) -> tuple[list[ChangeResult | None], list[tuple[int, Change]]]:
    """Each change checked alone (shape, collection, field, value): the rejected ones answered,
    the others returned with their place in the batch."""
    results: list[ChangeResult | None] = [None] * len(items)
    candidates: list[tuple[int, Change]] = []
    for index, item in enumerate(items):
        if isinstance(item, MalformedChange):
            results[index] = rejected(item.id, "malformed_change", item.message)
        else:
            candidates.append((index, item))
    verdicts = validate_batch([change for _, change in candidates], collections)
    if not any(verdicts):
        return results, candidates
    kept: list[tuple[int, Change]] = []
    for (index, change), rejection in zip(candidates, verdicts, strict=True):
        if rejection is None:
            kept.append((index, change))
        else:
            results[index] = rejected(change.id, rejection.code, rejection.message)
    return results, kept
