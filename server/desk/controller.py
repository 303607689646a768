"""The worker's list of today: ``GET /v1/tasks/today``."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery

from schemas.protocol import RecordView
from server.access.principals import Principal, requires_admin
from server.access.tokens import SECURITY_REQUIREMENT
from server.desk.service import Desk
from server.desk.tasks import TaskRules
from server.errors import GridsyncError
from server.openapi import problems

__all__ = ["RulesRun", "TasksController", "TodayList"]


class RulesRun(msgspec.Struct):
    """What one run of the task rules did."""

    created: int
    closed: int


class TodayList(msgspec.Struct, kw_only=True):
    """The caller's open tasks due by ``day`` (overdue ones included), soonest first."""

    day: str
    tasks: list[RecordView]


def _desk(state: State) -> Desk:
    return Desk(state.store, state.settings)


class TasksController(Controller):
    path = "/v1/tasks"
    tags = ["tasks"]
    security = SECURITY_REQUIREMENT
    dependencies = {"desk": Provide(_desk, sync_to_thread=False)}

    @get(
        "/today",
        operation_id="tasksToday",
        responses=problems(400, 401, 429, 503),
        summary="My open tasks due today or overdue",
        description=(
            "One request for a worker's day: the caller's open tasks (assignee = the caller's user id) "
            "in their scope, due by `day` (default: today in the district's time zone)."
        ),
    )
    async def today(
        self,
        request: Request[Principal, str, Any],
        desk: NamedDependency[Desk],
        day: FromQuery[str | None] = None,
    ) -> TodayList:
        wanted = desk.today()
        if day is not None:
            try:
                wanted = datetime.date.fromisoformat(day)
            except ValueError:
                raise GridsyncError(400, "bad_filter", f"day={day!r} is not a date (YYYY-MM-DD)") from None
        tasks = await desk.today_tasks(request.user, wanted)
        return TodayList(day=wanted.isoformat(), tasks=tasks)

    @post(
        "/rules",
        operation_id="runTaskRules",
        summary="Run the task rules now (admins)",
        description=(
            "Makes the tasks the rules ask for (a visit's follow-up, no signal today, a fixed hazard to "
            "verify) and closes the answered ones. Idempotent; the server also runs them periodically. "
            "`at` (RFC 3339) evaluates them at another moment."
        ),
        guards=[requires_admin],
        status_code=200,
        responses=problems(400, 401, 403, 429, 503),
    )
    async def run_rules(
        self, request: Request[Principal, str, Any], at: FromQuery[str | None] = None
    ) -> RulesRun:
        rules: TaskRules = request.app.state.task_rules
        moment = None
        if at is not None:
            try:
                moment = datetime.datetime.fromisoformat(at)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise GridsyncError(400, "bad_time", f"at={at!r} is not an RFC 3339 time with an offset")
        made = await rules.run(moment)
        return RulesRun(created=made.created, closed=made.closed)
