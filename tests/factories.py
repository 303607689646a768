"""Helpers to make changes in tests without repeating every field."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from schemas.protocol import AddChange, Change, DeleteChange, RemoveChange, SetChange
from sync.hlc import format_hlc

_counter = itertools.count(1)


def change_id() -> str:
    return str(uuid.uuid4())


def hlc(wall: int, replica: str = "r1", counter: int = 0) -> str:
    return format_hlc(1_700_000_000_000 + wall, counter, replica)


def _common(at: int | None, replica: str, record: str, collection: str, id: str | None) -> dict[str, Any]:
    """What every change carries: an id, where it goes, and an hlc (the next tick unless ``at``)."""
    return {
        "id": id or change_id(),
        "collection": collection,
        "record_id": record,
        "hlc": hlc(next(_counter) if at is None else at, replica),
    }


def set_(
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...] = (),
    at: int | None = None,
    replica: str = "r1",
    record: str = "h1",
    collection: str = "households",
    id: str | None = None,
) -> Change:
    return SetChange(**_common(at, replica, record, collection, id), field=field, value=value, pred=pred)


def add(
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...] = (),
    at: int | None = None,
    replica: str = "r1",
    record: str = "h1",
) -> Change:
    return AddChange(**_common(at, replica, record, "households", None), field=field, value=value, pred=pred)


def remove(
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...],
    at: int | None = None,
    replica: str = "r1",
    record: str = "h1",
) -> Change:
    return RemoveChange(
        **_common(at, replica, record, "households", None), field=field, value=value, pred=pred
    )


def delete(
    *, pred: tuple[str, ...], at: int | None = None, replica: str = "r1", record: str = "h1"
) -> Change:
    return DeleteChange(**_common(at, replica, record, "households", None), pred=pred)
