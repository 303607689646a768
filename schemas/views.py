"""Read-side messages of the registry API: record lists, flags, balances, reports, attachments.

They are answers only (the server never decodes them), so they can grow new fields with
defaults without breaking older apps.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.protocol import RecordView

__all__ = [
    "AttachmentStored",
    "Caller",
    "DeliberationFigures",
    "ElderlyFigures",
    "Flag",
    "FlagList",
    "GridCoverage",
    "HazardFigures",
    "NoSignalHousehold",
    "NoSignalList",
    "PointsBalance",
    "RecordPage",
    "RequestFigures",
    "ResidentErased",
    "Summary",
]

FlagKind = Literal["overspend", "concurrent_transition", "few_served"]


class RecordPage(msgspec.Struct):
    """``GET /v1/records/{collection}``: records in the shape of the single-record endpoint."""

    records: list[RecordView]
    cursor: str
    more: bool


class Flag(msgspec.Struct, kw_only=True):
    """Something an admin should look at that the merge kept rather than refused."""

    kind: FlagKind
    collection: str
    record_id: str
    message: str
    records: list[str] = msgspec.field(default_factory=list)
    community_id: str | None = None
    grid_id: str | None = None


class FlagList(msgspec.Struct):
    flags: list[Flag]


class PointsBalance(msgspec.Struct, kw_only=True):
    resident_id: str
    earned: int
    redeemed: int
    balance: int
    overspent: bool
    # Redemptions that took the running balance below zero, in ledger order.
    overspending_entries: list[str]
    entries: list[str]


class NoSignalHousehold(msgspec.Struct, kw_only=True):
    id: str
    address: str | None = None
    head_name: str | None = None
    phone: str | None = None
    grid_id: str | None = None
    building_id: str | None = None
    # Why: "exception" (the watcher saw no signal) or "no-signal" (the agreed hour passed unseen).
    reason: str | None = None
    agreement_id: str | None = None
    open_by: str | None = None
    watcher_id: str | None = None


class NoSignalList(msgspec.Struct, kw_only=True):
    """Households under a curtain agreement that need someone at the door: an exception not yet
    followed up, or (for those that asked for a daily signal) the agreed hour passed unseen;
    ``waiting`` counts the latter whose hour has not come yet."""

    day: str
    cutoff: str
    past_cutoff: bool
    waiting: int
    households: list[NoSignalHousehold]


class GridCoverage(msgspec.Struct, kw_only=True):
    grid_id: str
    name: str | None
    households: int
    visited: int
    coverage: float


class HazardFigures(msgspec.Struct, kw_only=True):
    open: int
    by_severity: dict[str, int]
    by_age: dict[str, int]


class RequestFigures(msgspec.Struct, kw_only=True):
    opened: int
    completed: int
    cancelled: int
    overdue: int
    completion_rate: float | None
    mean_satisfaction: float | None


class ElderlyFigures(msgspec.Struct, kw_only=True):
    elderly_alone: int
    # Households needing someone at the door today (the no-signal list).
    no_signal_today: int
    past_cutoff: bool
    under_agreement: int = 0


class DeliberationFigures(msgspec.Struct, kw_only=True):
    """Deliberation cases in scope: how many, where they are in the eight steps, how many are
    settled, and the open ones past their deadline."""

    cases: int = 0
    open: int = 0
    settled: int = 0
    dropped: int = 0
    overdue: int = 0
    by_step: dict[str, int] = msgspec.field(default_factory=dict)


class Summary(msgspec.Struct, kw_only=True):
    """``GET /v1/reports/summary``: what the community office asks for."""

    community: str | None
    at: str
    window_days: int
    visit_coverage: list[GridCoverage]
    hazards: HazardFigures
    requests: RequestFigures
    elderly: ElderlyFigures
    deliberations: DeliberationFigures = msgspec.field(default_factory=DeliberationFigures)


class AttachmentStored(msgspec.Struct, kw_only=True):
    sha256: str
    size: int
    media_type: str
    created: bool


class Caller(msgspec.Struct, kw_only=True):
    """Who a token belongs to (``GET /v1/me``): what an app shows and which moves it offers."""

    user_id: str
    user_name: str
    role: str
    device_id: str | None


class ResidentErased(msgspec.Struct, kw_only=True):
    """What erasing a resident did: the log rows purged and the delete phones receive."""

    resident_id: str
    purged_changes: int
    delete_change_id: str
    seq: int
