"""What the desk's pages read: households found by what a clerk remembers, one household's file,
the request desk's list (overdue first), open hazards by severity and age, tasks."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.protocol import RecordView
from server.access.principals import Principal
from server.desk.service import Desk, StepEvent, field_heads
from server.registry.lists import Scoped, ScopeFilter, masked_view, scan
from server.registry.reports import elements
from sync.merge import record_view, scalar_value

__all__ = ["Books", "HouseholdFile", "HouseholdQuery", "RequestRow"]

_LIMIT = 200
_OPEN_REQUEST = frozenset({"submitted", "dispatched", "accepted", "reopened"})
_SEVERITY = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# The office's own moves of the loop; the company and the resident make the others on their phones.
OFFICE_MOVES = frozenset({"dispatched", "cancelled", "reopened"})


@dataclass(frozen=True, slots=True)
class HouseholdQuery:
    text: str | None = None
    tag: str | None = None
    community: str | None = None
    grid: str | None = None
    building: str | None = None


@dataclass(slots=True)
class HouseholdFile:
    household: RecordView
    heads: dict[str, list[str]]
    residents: list[RecordView] = field(default_factory=list)
    visits: list[RecordView] = field(default_factory=list)
    hazards: list[RecordView] = field(default_factory=list)
    requests: list[RecordView] = field(default_factory=list)
    checkins: list[RecordView] = field(default_factory=list)
    points: list[RecordView] = field(default_factory=list)
    tasks: list[RecordView] = field(default_factory=list)
    history: list[StepEvent] = field(default_factory=list)


@dataclass(slots=True)
class RequestRow:
    view: RecordView
    overdue: bool
    legal: list[str]
    heads: dict[str, list[str]]


def _matches(row: Scoped, query: HouseholdQuery) -> bool:
    if query.tag and query.tag not in elements(row.state, "tags"):
        return False
    if not query.text:
        return True
    needle = query.text.strip().lower()
    return (
        any(
            needle in str(scalar_value(row.state, name) or "").lower()
            for name in ("address", "head_name", "phone", "door")
        )
        or needle == row.record_id.lower()
    )


class Books:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.collections = desk.collections

    def _view(self, collection: str, row: Scoped, principal: Principal) -> RecordView:
        view = record_view(row.state, self.collections[collection], row.record_id)
        return masked_view(view, principal, self.collections)

    async def households(self, principal: Principal, query: HouseholdQuery) -> list[RecordView]:
        where = ScopeFilter(query.community, query.grid, query.building, principal=principal)
        found: list[RecordView] = []
        async with self.desk.store.engine.connect() as connection:
            async for row in scan(connection, "households", where):
                if _matches(row, query):
                    found.append(self._view("households", row, principal))
        found.sort(key=lambda v: v.id)
        return found[:_LIMIT]

    async def _below(self, principal: Principal, collection: str, household_id: str) -> list[RecordView]:
        where = ScopeFilter(household=household_id, principal=principal)
        async with self.desk.store.engine.connect() as connection:
            return [
                self._view(collection, row, principal) async for row in scan(connection, collection, where)
            ]

    async def household(
        self, principal: Principal, household_id: str, *, reveal: bool = False
    ) -> HouseholdFile | None:
        """One household's file; ID numbers whole only when ``reveal`` (the caller audits it)."""
        view = await self.desk.view("households", household_id, principal)
        if view is None:
            return None
        found = HouseholdFile(view, await self.desk.heads("households", household_id))
        for name in ("residents", "visits", "hazards", "requests", "checkins", "tasks"):
            views = await self._below(principal, name, household_id)
            views.sort(
                key=lambda v: str(v.fields.get("visited_at") or v.fields.get("day") or v.id), reverse=True
            )
            setattr(found, name, views)
        if not reveal:
            for resident in found.residents:
                number = resident.fields.get("id_number")
                if isinstance(number, str) and len(number) == 18:
                    resident.fields["id_number"] = f"{number[:4]}**********{number[-4:]}"
        resident_ids = {r.id for r in found.residents}
        async with self.desk.store.engine.connect() as connection:
            where = ScopeFilter(household=household_id, principal=principal)
            found.points = [
                self._view("points", row, principal)
                async for row in scan(connection, "points", where)
                if scalar_value(row.state, "resident_id") in resident_ids
            ]
        found.checkins = found.checkins[:14]
        found.history = await self.desk.steps("households", household_id)
        return found

    async def requests(
        self, principal: Principal, community: str | None, status: str | None, today: datetime.date
    ) -> list[RequestRow]:
        """Requests in scope, open ones first, overdue first among them, then by due date."""
        spec = self.collections["requests"]
        transitions = spec.fields["status"].transitions or {}
        rows: list[RequestRow] = []
        async with self.desk.store.engine.connect() as connection:
            async for row in scan(connection, "requests", ScopeFilter(community, principal=principal)):
                current = scalar_value(row.state, "status")
                if status and current != status:
                    continue
                due = scalar_value(row.state, "due_date")
                overdue = current in _OPEN_REQUEST and isinstance(due, str) and due < today.isoformat()
                legal = sorted(transitions.get(current, frozenset()) & OFFICE_MOVES)
                view = self._view("requests", row, principal)
                rows.append(RequestRow(view, overdue, legal, field_heads(row.state)))
        rows.sort(
            key=lambda r: (
                r.view.fields.get("status") not in _OPEN_REQUEST,
                not r.overdue,
                str(r.view.fields.get("due_date") or "9999"),
                str(r.view.fields.get("submitted_at") or ""),
            )
        )
        return rows[:_LIMIT]

    async def open_hazards(
        self, principal: Principal, community: str | None, today: datetime.date
    ) -> list[tuple[RecordView, int]]:
        """(hazard, age in days) of hazards not verified yet, most severe and oldest first."""
        found: list[tuple[RecordView, int]] = []
        async with self.desk.store.engine.connect() as connection:
            async for row in scan(connection, "hazards", ScopeFilter(community, principal=principal)):
                if scalar_value(row.state, "status") == "verified":
                    continue
                reported = scalar_value(row.state, "reported_at")
                age = 0
                if isinstance(reported, str):
                    try:
                        age = (today - datetime.datetime.fromisoformat(reported).date()).days
                    except ValueError:
                        age = 0
                found.append((self._view("hazards", row, principal), age))
        found.sort(key=lambda pair: (_SEVERITY.get(str(pair[0].fields.get("severity")), 9), -pair[1]))
        return found[:_LIMIT]

    async def tasks(
        self, principal: Principal, filters: Mapping[str, str | None], community: str | None = None
    ) -> list[RecordView]:
        found: list[RecordView] = []
        async with self.desk.store.engine.connect() as connection:
            async for row in scan(connection, "tasks", ScopeFilter(community, principal=principal)):
                view = self._view("tasks", row, principal)
                if all(not wanted or view.fields.get(name) == wanted for name, wanted in filters.items()):
                    found.append(view)
        found.sort(
            key=lambda v: (v.fields.get("status") != "open", str(v.fields.get("due_date") or ""), v.id)
        )
        return found[:_LIMIT]
