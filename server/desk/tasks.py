"""Tasks the rules make and close: a visit that asks for a follow-up, an elderly person with no
signal today, a hazard fixed and waiting for its verification.

The rules run as the server's own replica (``tasks``) through the ordinary push, so phones
receive what they write like any change. They converge and never duplicate: a rule's task id is
a hash of the rule and what set it off, and each change id is a UUID v5 of the task id and what
the change does, so two runs (two processes, a retry after a crash) write the same change ids
and the second is answered ``duplicate`` or refused, never applied twice. A task is closed
(``done``, ``answered_by``) by the visit or checkin that names it in ``task_id``, by a signal
or a visit of the same day for a no-signal task, by the hazard's verification for a re-check.
Nothing here records where a worker was or when they worked.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from schemas.protocol import Change, SetChange
from server.registry.lists import Scoped, ScopeFilter, scan
from server.registry.reports import elements
from server.settings import Settings
from server.sync.store import SyncStore
from sync.hlc import format_hlc, parse_hlc
from sync.merge import record_heads, scalar_value

__all__ = ["ELDERLY_TAG", "TaskRules", "TasksMade", "rule_task_id", "task_change_id"]

ELDERLY_TAG = "elderly-alone"
REPLICA = "tasks"
_NAMESPACE = uuid.UUID("6c1f3f0e-2d7a-4c55-9a53-7d4b8f0c2e11")
_FOLLOW_UP_DAYS = 7
_RECHECK_DAYS = 3
_log = logging.getLogger(__name__)


def rule_task_id(rule: str, source: str) -> str:
    """The id of the task a rule makes from ``source``: the same inputs give the same task."""
    return "auto-" + hashlib.sha256(f"{rule}:{source}".encode()).hexdigest()[:40]


def task_change_id(task_id: str, what: str) -> str:
    """The id of one change a rule writes to a task: the same write always has the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{task_id}:{what}"))


@dataclass(slots=True)
class TasksMade:
    created: int = 0
    closed: int = 0


@dataclass(slots=True)
class _World:
    """What the rules read, once per run."""

    today: datetime.date
    tasks: dict[str, Scoped] = field(default_factory=dict)
    visits: list[Scoped] = field(default_factory=list)
    checkins: list[Scoped] = field(default_factory=list)
    hazards: list[Scoped] = field(default_factory=list)
    workers: dict[str, str] = field(default_factory=dict)  # grid id -> its first worker
    no_signal: list[Scoped] = field(default_factory=list)


def _day_of(value: Any, zone: ZoneInfo) -> datetime.date | None:
    if isinstance(value, str) and len(value) >= 10:
        try:
            if len(value) == 10:
                return datetime.date.fromisoformat(value)
            return datetime.datetime.fromisoformat(value).astimezone(zone).date()
        except ValueError:
            return None
    return None


class TaskRules:
    """Runs the rules over the whole registry (``run``), or every ``interval`` seconds (``loop``)."""

    def __init__(self, store: SyncStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self._lock = asyncio.Lock()

    def _hlc(self) -> str:
        tick = parse_hlc(self.store.clock.now())
        return format_hlc(tick.wall_ms, tick.counter, REPLICA)

    async def _read(self, now: datetime.datetime) -> _World:
        world = _World(today=now.date())
        where = ScopeFilter()
        async with self.store.engine.connect() as connection:
            async for row in scan(connection, "tasks", where, include_deleted=True):
                world.tasks[row.record_id] = row
            world.visits = [row async for row in scan(connection, "visits", where)]
            world.checkins = [row async for row in scan(connection, "checkins", where)]
            world.hazards = [row async for row in scan(connection, "hazards", where)]
            async for row in scan(connection, "grids", where):
                workers = sorted(elements(row.state, "workers"))
                if workers:
                    world.workers[row.record_id] = workers[0]
            if now.hour >= self.settings.checkin_cutoff_hour:
                day = world.today.isoformat()
                seen = {
                    scalar_value(c.state, "household_id")
                    for c in world.checkins
                    if scalar_value(c.state, "signal") is True and scalar_value(c.state, "day") == day
                }
                world.no_signal = [
                    row
                    async for row in scan(connection, "households", where)
                    if ELDERLY_TAG in elements(row.state, "tags")
                    and not scalar_value(row.state, "moved_out")
                    and row.record_id not in seen
                ]
        return world

    def _write(self, task_id: str, what: str, field: str, value: Any, pred: tuple[str, ...] = ()) -> Change:
        """One field of a task, written under the id ``task_change_id`` gives ``what``."""
        return SetChange(
            id=task_change_id(task_id, what),
            collection="tasks",
            record_id=task_id,
            hlc=self._hlc(),
            field=field,
            value=value,
            pred=pred,
        )

    def _create(self, task_id: str, values: Mapping[str, Any]) -> list[Change]:
        return [
            self._write(task_id, f"create:{name}", name, value)
            for name, value in values.items()
            if value is not None
        ]

    def _wanted(self, world: _World) -> dict[str, dict[str, Any]]:
        """The tasks the rules ask for, by id (existing ones included; the caller skips them)."""
        wanted: dict[str, dict[str, Any]] = {}
        for visit in world.visits:
            if scalar_value(visit.state, "follow_up") is not True:
                continue
            day = _day_of(scalar_value(visit.state, "visited_at"), self.zone) or world.today
            wanted[rule_task_id("visit-follow-up", visit.record_id)] = {
                "kind": "visit",
                "assignee": scalar_value(visit.state, "worker") or world.workers.get(visit.grid_id or ""),
                "due_date": (day + datetime.timedelta(days=_FOLLOW_UP_DAYS)).isoformat(),
                "reason": f"follow-up asked by the visit of {day.isoformat()}",
                "household_id": visit.household_id,
                "source": "visit-follow-up",
            }
        for hazard in world.hazards:
            if scalar_value(hazard.state, "status") != "fixed":
                continue
            fixed_at = scalar_value(hazard.state, "fixed_at") or ""
            place = {
                name: scalar_value(hazard.state, name) for name in ("household_id", "building_id", "grid_id")
            }
            wanted[rule_task_id("hazard-fixed", f"{hazard.record_id}:{fixed_at}")] = {
                "kind": "hazard-recheck",
                "assignee": world.workers.get(hazard.grid_id or "")
                or scalar_value(hazard.state, "reported_by"),
                "due_date": (world.today + datetime.timedelta(days=_RECHECK_DAYS)).isoformat(),
                "reason": "the hazard is marked fixed: verify it on the spot, with a photo",
                "hazard_id": hazard.record_id,
                "source": "hazard-fixed",
                **place,
            }
        today = world.today.isoformat()
        for household in world.no_signal:
            wanted[rule_task_id("no-signal", f"{household.record_id}:{today}")] = {
                "kind": "no-signal",
                "assignee": world.workers.get(household.grid_id or ""),
                "due_date": today,
                "reason": "no curtain signal today: go to the door",
                "household_id": household.record_id,
                "source": "no-signal",
            }
        return wanted

    def _answers(self, world: _World) -> dict[str, str]:
        """Open task id -> the record that answers it."""
        answers: dict[str, str] = {}
        for row in (*world.visits, *world.checkins):
            task_id = scalar_value(row.state, "task_id")
            if isinstance(task_id, str):
                answers.setdefault(task_id, row.record_id)
        seen_on: dict[tuple[str | None, datetime.date | None], str] = {}
        for checkin in world.checkins:
            if scalar_value(checkin.state, "signal") is True:
                day = _day_of(scalar_value(checkin.state, "day"), self.zone)
                seen_on.setdefault((checkin.household_id, day), checkin.record_id)
        for visit in world.visits:
            day = _day_of(scalar_value(visit.state, "visited_at"), self.zone)
            seen_on.setdefault((visit.household_id, day), visit.record_id)
        verified = {h.record_id for h in world.hazards if scalar_value(h.state, "status") == "verified"}
        for task_id, task in world.tasks.items():
            if task.deleted or task_id in answers:
                continue
            kind = scalar_value(task.state, "kind")
            if kind == "no-signal":
                due = _day_of(scalar_value(task.state, "due_date"), self.zone)
                found = seen_on.get((task.household_id, due))
                if found is not None:
                    answers[task_id] = found
            elif kind == "hazard-recheck" and scalar_value(task.state, "hazard_id") in verified:
                answers[task_id] = str(scalar_value(task.state, "hazard_id"))
        return answers

    def _close(self, world: _World, answers: Mapping[str, str]) -> list[Change]:
        closing: list[Change] = []
        for task_id, answer in answers.items():
            task = world.tasks.get(task_id)
            if task is None or task.deleted or scalar_value(task.state, "status") != "open":
                continue
            heads = record_heads(task.state)
            for name, value in (("status", "done"), ("answered_by", answer)):
                pred = tuple(sorted(h.id for h in heads if h.field == name))
                closing.append(self._write(task_id, f"close:{answer}:{name}", name, value, pred))
        return closing

    async def run(self, now: datetime.datetime | None = None) -> TasksMade:
        """Make the tasks the rules ask for and close the answered ones; idempotent."""
        now = (now or datetime.datetime.now(datetime.UTC)).astimezone(self.zone)
        async with self._lock:
            world = await self._read(now)
            made = TasksMade()
            changes: list[Change] = []
            for task_id, values in self._wanted(world).items():
                if task_id in world.tasks:
                    continue
                changes += self._create(task_id, {**values, "status": "open"})
                made.created += 1
            closing = self._close(world, self._answers(world))
            made.closed = len(closing) // 2
            changes += closing
            for start in range(0, len(changes), self.settings.max_changes_per_push):
                batch = changes[start : start + self.settings.max_changes_per_push]
                await self.store.writer.push(None, REPLICA, batch)
        return made

    async def loop(self, interval: float) -> None:
        """Run the rules every ``interval`` seconds until cancelled; a failed run is logged."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run()
            except Exception:
                _log.exception("the task rules failed; they run again in %s s", interval)
