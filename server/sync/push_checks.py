"""The checks of a push made change by change: each change alone (shape, collection, field,
value) and its ID numbers sealed as it arrives, its clock once the duplicates are known
(server/sync/push.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from schemas.codec import MalformedChange
from schemas.collections import CollectionSpec
from schemas.protocol import Change, ChangeResult, rejected
from server.access.personal import Sealer
from sync.hlc import hlc_wall_ms
from sync.validate import ClockBound, check_clock, validate_batch

__all__ = ["sealed", "validated", "within_clock"]


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


def sealed(
    candidates: list[tuple[int, Change]],
    results: list[ChangeResult | None],
    sealer: Sealer | None,
    fields: frozenset[tuple[str, str]],
) -> list[tuple[int, Change]]:
    """The candidates with their ID numbers (``fields``) sealed before anything compares or
    stores them (server/access/personal.py); without a key such a change is refused."""
    if not any((change.collection, change.field) in fields for _, change in candidates):
        return candidates
    kept: list[tuple[int, Change]] = []
    for index, change in candidates:
        if (change.collection, change.field) in fields and isinstance(change.value, str):
            assert change.field is not None
            if sealer is None:
                results[index] = rejected(
                    change.id,
                    "encryption_key_missing",
                    "the server has no key to store ID numbers encrypted "
                    "(GRIDSYNC_ENCRYPTION_KEY): nothing was stored; ask the server's administrator",
                )
                continue
            value = sealer.seal(change.collection, change.field, change.value)
            change = msgspec.structs.replace(change, value=value)
        kept.append((index, change))
    return kept
