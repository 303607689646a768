"""Messages of the conflict inbox API: the list, one conflict's detail, resolutions and bulk rules.

Requests (``Resolution``, ``ConflictFilter``, ``BulkRequest``) forbid unknown fields, so a typo
is a 400 rather than a silently ignored choice; answers may grow new fields with defaults.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.protocol import RecordView
from schemas.views import Flag

__all__ = [
    "BulkExpect",
    "BulkItem",
    "BulkRequest",
    "BulkResult",
    "BulkRule",
    "ConflictCounts",
    "ConflictDetail",
    "ConflictEvent",
    "ConflictFilter",
    "ConflictPage",
    "ConflictSummary",
    "FieldChoice",
    "FieldConflict",
    "HeadDetail",
    "Resolution",
    "Writer",
]


class ConflictSummary(msgspec.Struct, kw_only=True):
    id: str
    collection: str
    record_id: str
    status: str
    kinds: list[str]
    fields: list[str]
    heads: dict[str, list[str]]
    community_id: str | None = None
    grid_id: str | None = None
    opened_at_ms: int
    updated_at_ms: int
    resolved_at_ms: int | None = None
    resolved_via: str | None = None
    resolved_by_user: str | None = None
    resolved_by_device: str | None = None
    resolved_changes: list[str] = []


class ConflictCounts(msgspec.Struct):
    total: int
    by_kind: dict[str, int]
    by_collection: dict[str, int]
    by_community: dict[str, int]
    by_grid: dict[str, int]


class ConflictPage(msgspec.Struct):
    conflicts: list[ConflictSummary]
    cursor: str | None
    more: bool
    counts: ConflictCounts
    # Overspent points balances (first page of open conflicts only): derived from the
    # append-only ledger at read time, so they are listed here, not stored as conflicts.
    overspends: list[Flag] = []


class Writer(msgspec.Struct, kw_only=True):
    """Who wrote a change: the device it came from and its user, when it was made and arrived."""

    change_id: str
    op: str
    field: str | None
    value: Any
    hlc: str
    replica_id: str
    device_clock_ms: int
    received_at_ms: int | None = None
    seq: int | None = None
    device_id: str | None = None
    device_name: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    pred: list[str] = []


class HeadDetail(Writer, kw_only=True):
    # The value(s) this head's writer started from: the changes its pred names (same field).
    started_from: list[Writer] = []
    shown: bool = False


class FieldConflict(msgspec.Struct):
    field: str
    heads: list[HeadDetail]
    values_differ: bool


class ConflictEvent(msgspec.Struct):
    event: str
    at_ms: int
    seq: int
    heads: dict[str, list[str]]
    device_id: str | None
    user_name: str | None


class ConflictDetail(msgspec.Struct, kw_only=True):
    conflict: ConflictSummary
    # Send these back as ``seen_heads`` when resolving: the heads this page showed.
    seen_heads: list[str]
    fields: list[FieldConflict]
    record: RecordView
    events: list[ConflictEvent]
    history: list[Writer]
    # Every conflict this record has had, newest first (this one included).
    record_conflicts: list[ConflictSummary]


class FieldChoice(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One field's outcome: keep a head (its change id), or write a new value."""

    keep: str | None = None
    value: Any = msgspec.UNSET


class Resolution(msgspec.Struct, forbid_unknown_fields=True):
    seen_heads: list[str]
    fields: dict[str, FieldChoice] = {}
    # For delete-vs-edit: keep the record (its edits stay) or confirm the delete.
    record: Literal["keep", "delete"] | None = None


class ConflictFilter(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    status: Literal["open", "resolved"] = "open"
    community: str | None = None
    grid: str | None = None
    collection: str | None = None
    kind: str | None = None
    field: str | None = None


BulkRule = Literal["newest", "oldest", "keep", "delete"]


class BulkExpect(msgspec.Struct, forbid_unknown_fields=True):
    conflict_id: str
    heads: list[str]


class BulkRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Resolve one field of every open conflict matching ``filter`` by ``rule``.

    ``newest``/``oldest``: the head with the greatest/least device clock wins (scalar fields).
    ``keep``/``delete``: for ``field`` ``_deleted``, keep the records or confirm the deletes.
    Without ``expect`` it is a preview; to apply, send the preview's items back as ``expect``."""

    field: str
    rule: BulkRule
    filter: ConflictFilter = msgspec.field(default_factory=ConflictFilter)
    expect: list[BulkExpect] | None = None
    limit: int = 500


class BulkItem(msgspec.Struct, kw_only=True):
    conflict_id: str
    collection: str
    record_id: str
    field: str
    heads: list[str]
    value: Any = None
    chosen: str | None = None
    outcome: Literal["planned", "applied", "stale", "rejected"] = "planned"
    # Why a change was refused (``rejected``), e.g. a status move the request may not make.
    code: str | None = None


class BulkResult(msgspec.Struct):
    applied: bool
    items: list[BulkItem]
