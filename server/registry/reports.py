"""Figures derived from the registry at read time: points balances and overspends, the elderly
with no signal today, and the community office's summary. Nothing here is cached or stored:
every answer is computed from the merged records of one scoped scan per collection.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec
from schemas.views import (
    ElderlyFigures,
    Flag,
    FlagList,
    GridCoverage,
    HazardFigures,
    NoSignalHousehold,
    NoSignalList,
    PointsBalance,
    RequestFigures,
    Summary,
)
from server.access.policy import hides_sensitive
from server.errors import GridsyncError
from server.registry.curtain import watch_list
from server.registry.lists import Registry, Scoped, ScopeFilter, scan
from server.registry.practice_figures import deliberation_figures, few_served
from server.settings import Settings
from sync.hlc import parse_hlc
from sync.merge import RecordState, scalar_value

__all__ = ["ELDERLY_TAG", "LedgerEntry", "Reports", "elements", "walk_ledger"]

ELDERLY_TAG = "elderly-alone"
OPEN_HAZARD = frozenset({"open", "in-hand"})
COMPLETED = frozenset({"done", "rated"})
CLOSED = COMPLETED | {"cancelled"}
AGE_BUCKETS = (("0-7d", 7), ("8-30d", 30), ("31-90d", 90), ("91d+", None))


def elements(state: RecordState, name: str) -> set[Any]:
    """The elements of a set field (its add heads)."""
    return {h.value for h in state.heads.values() if h.field == name}


def _moment(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def _first_written(state: RecordState) -> datetime.datetime:
    wall = min((parse_hlc(h.hlc).wall_ms for h in state.heads.values()), default=0)
    return datetime.datetime.fromtimestamp(wall / 1000, tz=datetime.UTC)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: str
    resident_id: str
    kind: str
    points: int
    at: datetime.datetime

    @classmethod
    def of(cls, row: Scoped) -> LedgerEntry | None:
        state = row.state
        resident, kind, points = (scalar_value(state, n) for n in ("resident_id", "kind", "points"))
        if resident is None or kind is None or not isinstance(points, int):
            return None  # an entry whose fields have not all arrived yet counts once they have
        at = _moment(scalar_value(state, "at")) or _first_written(state)
        return cls(row.record_id, resident, kind, points, at)


def _state_machines(collections: Mapping[str, CollectionSpec]) -> list[tuple[str, str]]:
    """(collection, field) of every state-machine field, in declaration order."""
    return [
        (name, field_name)
        for name, spec in collections.items()
        for field_name, field_spec in spec.fields.items()
        if field_spec.transitions is not None
    ]


def walk_ledger(entries: Iterable[LedgerEntry]) -> tuple[int, int, list[str]]:
    """(earned, redeemed, redemptions that took the running balance below zero), in time order."""
    earned = redeemed = 0
    overspending: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.at, e.id)):
        if entry.kind == "earned":
            earned += entry.points
        else:
            redeemed += entry.points
            if earned - redeemed < 0:
                overspending.append(entry.id)
    return earned, redeemed, overspending


class Reports:
    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)

    def now(self, at: datetime.datetime | None) -> datetime.datetime:
        return (at or datetime.datetime.now(datetime.UTC)).astimezone(self.zone)

    # ------------------------------------------------------------------ points

    async def balance(self, resident_id: str, where: ScopeFilter) -> PointsBalance:
        resident = await self.registry.values("residents", resident_id, where)
        if resident is None:
            raise GridsyncError(404, "not_found", f"no resident {resident_id!r}")
        household = resident.get("household_id")
        async with self.registry.engine.connect() as connection:
            entries = [
                entry
                async for row in scan(connection, "points", replace(where, household=household))
                if (entry := LedgerEntry.of(row)) is not None and entry.resident_id == resident_id
            ]
        earned, redeemed, overspending = walk_ledger(entries)
        return PointsBalance(
            resident_id=resident_id,
            earned=earned,
            redeemed=redeemed,
            balance=earned - redeemed,
            overspent=bool(overspending),
            overspending_entries=overspending,
            entries=sorted(e.id for e in entries),
        )

    # ------------------------------------------------------------------ flags

    async def flags(self, where: ScopeFilter, kind: str | None = None) -> FlagList:
        """What the merge kept but an admin should see: overspent points balances, requests
        whose status two devices moved concurrently, central households serving fewer than five."""
        if kind not in (None, "overspend", "concurrent_transition", "few_served"):
            raise GridsyncError(400, "bad_filter", "kind is overspend, concurrent_transition or few_served")
        found: list[Flag] = []
        async with self.registry.engine.connect() as connection:
            if kind in (None, "overspend"):
                found += await self._overspends(connection, where)
            if kind in (None, "concurrent_transition"):
                found += await self._concurrent_moves(connection, where)
            if kind in (None, "few_served"):
                found += await few_served(connection, where)
        return FlagList(flags=found)

    async def _concurrent_moves(self, connection: AsyncConnection, where: ScopeFilter) -> list[Flag]:
        """Records whose state-machine field (a request's status, a deliberation's step) two
        devices moved at once: both moves are kept, the newest shown until someone decides."""
        found: list[Flag] = []
        for collection, name in _state_machines(self.registry.collections):
            async for row in scan(connection, collection, where):
                heads = [h for h in row.state.heads.values() if h.field == name]
                if len(heads) > 1:
                    values = ", ".join(sorted({repr(h.value) for h in heads}))
                    found.append(
                        Flag(
                            kind="concurrent_transition",
                            collection=collection,
                            record_id=row.record_id,
                            message=f"two devices moved this record's {name} at once ({values}); "
                            "the newest is shown until an admin decides",
                            records=sorted(h.id for h in heads),
                            community_id=row.community_id,
                            grid_id=row.grid_id,
                        )
                    )
        return found

    async def _overspends(self, connection: AsyncConnection, where: ScopeFilter) -> list[Flag]:
        ledgers: dict[str, list[LedgerEntry]] = defaultdict(list)
        places: dict[str, Scoped] = {}
        async for row in scan(connection, "points", where):
            entry = LedgerEntry.of(row)
            if entry is not None:
                ledgers[entry.resident_id].append(entry)
                places[entry.resident_id] = row
        flags: list[Flag] = []
        for resident_id, entries in sorted(ledgers.items()):
            earned, redeemed, overspending = walk_ledger(entries)
            if overspending:
                flags.append(
                    Flag(
                        kind="overspend",
                        collection="residents",
                        record_id=resident_id,
                        message=f"{len(overspending)} redemption(s) went past the balance at their "
                        f"time: earned {earned}, redeemed {redeemed}, balance now {earned - redeemed}; "
                        "all entries are kept",
                        records=overspending,
                        community_id=places[resident_id].community_id,
                        grid_id=places[resident_id].grid_id,
                    )
                )
        return flags

    # ------------------------------------------------------------------ checkins

    async def no_signal(self, where: ScopeFilter, at: datetime.datetime | None = None) -> NoSignalList:
        if hides_sensitive(where.principal):
            # The list names elderly-alone households: a tag these roles do not read.
            raise GridsyncError(
                403,
                "forbidden",
                "the no-signal list names elderly-alone households: it is for grid workers and admins",
            )
        now = self.now(at)
        async with self.registry.engine.connect() as connection:
            found = await watch_list(connection, where, now, self.settings.checkin_cutoff_hour)
        households = [
            NoSignalHousehold(
                id=watch.household.record_id,
                address=scalar_value(watch.household.state, "address"),
                head_name=scalar_value(watch.household.state, "head_name"),
                phone=scalar_value(watch.household.state, "phone"),
                grid_id=watch.household.grid_id,
                building_id=watch.household.building_id,
                reason=watch.reason,
                agreement_id=watch.agreement.record_id,
                open_by=scalar_value(watch.agreement.state, "open_by"),
                watcher_id=scalar_value(watch.agreement.state, "watcher_id"),
            )
            for watch in found.listed
        ]
        return NoSignalList(
            day=now.date().isoformat(),
            cutoff=f"{self.settings.checkin_cutoff_hour:02d}:00 {self.settings.timezone}",
            past_cutoff=now.hour >= self.settings.checkin_cutoff_hour,
            waiting=found.waiting,
            households=households,
        )

    # ------------------------------------------------------------------ summary

    async def summary(
        self, where: ScopeFilter, at: datetime.datetime | None = None, window_days: int = 30
    ) -> Summary:
        now = self.now(at)
        since = now - datetime.timedelta(days=window_days)
        async with self.registry.engine.connect() as connection:
            names = {
                row.record_id: scalar_value(row.state, "name")
                async for row in scan(connection, "grids", where)
            }
            living: dict[str, str | None] = {}
            async for row in scan(connection, "households", where):
                if not scalar_value(row.state, "moved_out"):
                    living[row.record_id] = row.grid_id
            visited: set[str] = set()
            async for row in scan(connection, "visits", where):
                when = _moment(scalar_value(row.state, "visited_at"))
                if when is not None and since <= when <= now:
                    visited.add(scalar_value(row.state, "household_id"))
            hazards = await self._hazards(connection, where, now)
            requests = await self._requests(connection, where, now, since)
            elderly = [
                row
                async for row in scan(connection, "households", where)
                if ELDERLY_TAG in elements(row.state, "tags") and not scalar_value(row.state, "moved_out")
            ]
            watched = await watch_list(connection, where, now, self.settings.checkin_cutoff_hour)
            deliberations = await deliberation_figures(connection, where, now)
        per_grid: Counter[str | None] = Counter(living.values())
        seen_per_grid: Counter[str | None] = Counter(grid for h, grid in living.items() if h in visited)
        coverage = [
            GridCoverage(
                grid_id=grid,
                name=names.get(grid),
                households=per_grid[grid],
                visited=seen_per_grid[grid],
                coverage=round(seen_per_grid[grid] / per_grid[grid], 4) if per_grid[grid] else 0.0,
            )
            for grid in sorted(set(names) | {g for g in per_grid if g is not None})
        ]
        return Summary(
            community=where.community,
            at=now.isoformat(),
            window_days=window_days,
            visit_coverage=coverage,
            hazards=hazards,
            requests=requests,
            elderly=ElderlyFigures(
                elderly_alone=len(elderly),
                no_signal_today=len(watched.listed),
                past_cutoff=now.hour >= self.settings.checkin_cutoff_hour,
                under_agreement=watched.covered,
            ),
            deliberations=deliberations,
        )

    async def _hazards(
        self, connection: AsyncConnection, where: ScopeFilter, now: datetime.datetime
    ) -> HazardFigures:
        by_severity: Counter[str] = Counter()
        by_age: Counter[str] = Counter({name: 0 for name, _ in AGE_BUCKETS})
        async for row in scan(connection, "hazards", where):
            if scalar_value(row.state, "status") not in OPEN_HAZARD:
                continue
            by_severity[scalar_value(row.state, "severity") or "unknown"] += 1
            reported = _moment(scalar_value(row.state, "reported_at")) or _first_written(row.state)
            age = (now - reported).days
            by_age[next(name for name, limit in AGE_BUCKETS if limit is None or age <= limit)] += 1
        return HazardFigures(
            open=sum(by_severity.values()), by_severity=dict(by_severity), by_age=dict(by_age)
        )

    async def _requests(
        self,
        connection: AsyncConnection,
        where: ScopeFilter,
        now: datetime.datetime,
        since: datetime.datetime,
    ) -> RequestFigures:
        opened = completed = cancelled = overdue = 0
        scores: list[int] = []
        today = now.date().isoformat()
        async for row in scan(connection, "requests", where):
            status = scalar_value(row.state, "status")
            due = scalar_value(row.state, "due_date")
            if status not in CLOSED and isinstance(due, str) and due < today:
                overdue += 1
            submitted = _moment(scalar_value(row.state, "submitted_at")) or _first_written(row.state)
            if not since <= submitted <= now:
                continue
            opened += 1
            completed += status in COMPLETED
            cancelled += status == "cancelled"
            score = scalar_value(row.state, "satisfaction")
            if isinstance(score, int):
                scores.append(score)
        decided = opened - cancelled
        return RequestFigures(
            opened=opened,
            completed=completed,
            cancelled=cancelled,
            overdue=overdue,
            completion_rate=round(completed / decided, 4) if decided else None,
            mean_satisfaction=round(sum(scores) / len(scores), 2) if scores else None,
        )
