"""Changes sent again: a push's ids already in the log, compacted, written by an earlier push
of its group or earlier in its batch are answered ``duplicate`` or ``id_reused`` as far as the
caller may read them (server/sync/push.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.collections import CollectionSpec
from schemas.protocol import Change, ChangeResult, rejected
from server.access.personal import reveal
from server.access.policy import Place, can_read, is_scoped, mask_value
from server.access.principals import Principal
from server.sync.horizon import change_digest
from server.sync.push_view import GroupView
from sync.merge import op_name

__all__ = ["drop_duplicates"]

_json_decode = msgspec.json.Decoder().decode


def _content(change: Change) -> tuple[Any, ...]:
    """What a change is, in the order of ``changes_by_id``'s columns after the id."""
    return (
        change.collection,
        change.record_id,
        change.field,
        op_name(change),
        change.value,
        change.hlc,
        list(change.pred),
    )


def _logged_content(row: Any) -> tuple[Any, ...]:
    """``_content`` of a logged row (``changes_by_id``'s columns, from the driver)."""
    _, collection, record_id, field, op, value, hlc, pred = row
    return (collection, record_id, field, op, _json_decode(value), hlc, _json_decode(pred))


def drop_duplicates(
    collections: Mapping[str, CollectionSpec],
    view: GroupView,
    candidates: list[tuple[int, Change]],
    results: list[ChangeResult | None],
    principal: Principal | None,
) -> list[tuple[int, Change]]:
    """Judge ids seen before (in the log, compacted, written by an earlier push of the group,
    or earlier in this batch); return the new changes."""
    ids = [change.id for _, change in candidates]
    if (
        not view.logged
        and not view.gone
        and view.accepted.keys().isdisjoint(ids)
        and len(set(ids)) == len(ids)
    ):
        return list(candidates)  # none seen before, the usual push: no change to judge one by one
    fresh: list[tuple[int, Change]] = []
    in_batch: dict[str, Change] = {}
    for index, change in candidates:
        row: Any = view.logged.get(change.id)
        own = in_batch.get(change.id)
        earlier = view.accepted.get(change.id)
        digest = view.gone.get(change.id)
        if digest is not None:
            same = _same_compacted(collections, view, principal, change, digest)
        elif own is not None:
            same = own == change
        elif row is not None or earlier is not None:
            stored = _content(earlier) if earlier is not None else _logged_content(row)
            same = _same_as_read(collections, view, principal, stored, change)
        else:
            in_batch[change.id] = change
            fresh.append((index, change))
            continue
        results[index] = (
            ChangeResult(id=change.id, status="duplicate")
            if same
            else rejected(
                change.id,
                "id_reused",
                "this change id was already used for a different change; give every new change a new UUID",
            )
        )
    return fresh


def _may_read(
    collections: Mapping[str, CollectionSpec], view: GroupView, principal: Principal | None, change: Change
) -> bool:
    """Whether the caller may read the record ``change`` names, where it is now."""
    if not is_scoped(principal):
        return True
    assert principal is not None
    found = view.current.get((change.collection, change.record_id))
    return found is not None and can_read(principal, Place(change.collection, found.row.scope, found.company))


def _same_as_read(
    collections: Mapping[str, CollectionSpec],
    view: GroupView,
    principal: Principal | None,
    stored: tuple[Any, ...],
    change: Change,
) -> bool:
    """Whether a change sent again is the stored one, as far as the caller may read it:
    nothing of a record outside its scope, the masked form of a masked value. The answer
    (``duplicate`` or ``id_reused``) must not tell a guessed hidden value from a wrong one."""
    sent = _content(change)
    if stored[:2] != sent[:2] or not _may_read(collections, view, principal, change):
        return False
    collection, _, field, *_ = sent
    stored_value, sent_value = (
        mask_value(principal, collections, collection, field, content[4]) for content in (stored, sent)
    )
    return stored[:4] == sent[:4] and stored[5:] == sent[5:] and stored_value == sent_value


def _same_compacted(
    collections: Mapping[str, CollectionSpec],
    view: GroupView,
    principal: Principal | None,
    change: Change,
    digest: str,
) -> bool:
    """``_same_as_read`` for a compacted change, of which only a digest of the whole content
    is left: a value the caller would see masked is not compared (a retry is assumed)."""
    if not _may_read(collections, view, principal, change):
        return False
    # A sealed ID number reads whole only opened: compare what the caller sees with that.
    shown = mask_value(principal, collections, change.collection, change.field, change.value)
    if shown != reveal(change.collection, change.field, change.value):
        return True
    return digest == change_digest(*_content(change))
