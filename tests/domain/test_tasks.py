"""Tasks: a synced collection with a status machine, made by the office and by rules that
converge (never a duplicate, however often or concurrently they run), closed by the visit or
check that answers them, listed for a worker's day in one request."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from server.access.principals import UserScope
from server.db.engine import create_engine
from server.db.tables import changes, records
from server.desk.tasks import TaskRules, rule_task_id
from server.settings import Settings
from server.sync.store import SyncStore
from sync.client import Replica
from tests.domain.district import Client, build, change, push, view, write
from tests.factories import bearer, enroll_worker

# Past the check-in cutoff (10:00 in Asia/Shanghai) of 2026-11-25.
AFTERNOON = "2026-11-25T15:00:00+08:00"


def _tasks(client: Client) -> list[dict[str, Any]]:
    reply = client.get("/v1/records/tasks", params={"limit": 100})
    assert reply.status_code == 200, reply.text
    records: list[dict[str, Any]] = reply.json()["records"]
    return records


def _run_rules(client: Client, at: str = AFTERNOON) -> dict[str, int]:
    reply = client.post("/v1/tasks/rules", params={"at": at})
    assert reply.status_code == 200, reply.text
    made: dict[str, int] = reply.json()
    return made


def test_task_status_follows_its_machine(client: Client) -> None:
    refused = push(client, [change("tasks", "t1", "status", "done")])
    assert (refused[0]["status"], refused[0]["code"]) == ("rejected", "illegal_transition_from_new")
    opening = change("tasks", "t1", "status", "open")
    assert push(client, [opening])[0]["status"] == "applied"
    closing = change("tasks", "t1", "status", "done", pred=(opening["id"],))
    assert push(client, [closing])[0]["status"] == "applied"
    dropped = push(client, [change("tasks", "t1", "status", "cancelled", pred=(closing["id"],))])
    assert (dropped[0]["status"], dropped[0]["code"]) == ("rejected", "illegal_transition_from_done")
    reopened = push(client, [change("tasks", "t1", "status", "open", pred=(closing["id"],))])
    assert reopened[0]["status"] == "applied"


def _field_work(phone: Replica, client: Client) -> None:
    build(phone, client)
    write(
        phone,
        "visits",
        "v1",
        {"household_id": "h3", "worker": "w-9", "visited_at": "2026-11-24T09:00:00+08:00", "follow_up": True},
    )
    write(phone, "hazards", "z1", {"grid_id": "g1", "category": "fire", "severity": "high", "status": "open"})
    assert phone.sync(client).rejected == []
    write(phone, "hazards", "z1", {"status": "fixed", "fixed_at": "2026-11-25T08:00:00+08:00"})
    # h1 gave its signal today; h2 and h3 did not.
    write(phone, "checkins", "k1", {"household_id": "h1", "day": "2026-11-25", "signal": True})
    assert phone.sync(client).rejected == []


def test_rules_make_each_task_once(client: Client, phone: Callable[[str], Replica]) -> None:
    _field_work(phone("office"), client)
    made = _run_rules(client)
    assert made == {"created": 4, "closed": 0}
    assert _run_rules(client) == {"created": 0, "closed": 0}
    tasks = {t["id"]: t["fields"] for t in _tasks(client)}
    follow_up = tasks[rule_task_id("visit-follow-up", "v1")]
    assert follow_up["assignee"] == "w-9"
    assert follow_up["household_id"] == "h3"
    assert follow_up["due_date"] == "2026-12-01"
    recheck = tasks[rule_task_id("hazard-fixed", "z1:2026-11-25T08:00:00+08:00")]
    assert (recheck["kind"], recheck["hazard_id"], recheck["assignee"]) == ("hazard-recheck", "z1", "w-1")
    no_signal = {t["household_id"] for t in tasks.values() if t["kind"] == "no-signal"}
    assert no_signal == {"h2", "h3"}
    assert all(t["status"] == "open" for t in tasks.values())


async def _count_tasks(settings: Settings) -> tuple[int, int]:
    """Two stores (as two server processes would) run the rules at once, three times."""
    engines = [create_engine(settings.database_url) for _ in range(2)]
    try:
        stores = [SyncStore(engine, settings) for engine in engines]
        at = datetime.datetime.fromisoformat(AFTERNOON)
        runs = [
            TaskRules(stores[0], settings),
            TaskRules(stores[1], settings),
            TaskRules(stores[1], settings),
        ]
        await asyncio.gather(*(rules.run(at) for rules in runs))
        async with engines[0].connect() as connection:
            tasks = (
                await connection.execute(select(func.count()).where(records.c.collection == "tasks"))
            ).scalar_one()
            statuses = (
                await connection.execute(
                    select(func.count()).where(changes.c.collection == "tasks", changes.c.field == "status")
                )
            ).scalar_one()
    finally:
        for engine in engines:
            await engine.dispose()
    return tasks, statuses


def test_concurrent_runs_never_duplicate(
    client: Client, settings: Settings, phone: Callable[[str], Replica]
) -> None:
    _field_work(phone("office"), client)
    assert asyncio.run(_count_tasks(settings)) == (4, 4)
    assert _run_rules(client) == {"created": 0, "closed": 0}


def test_a_visit_naming_the_task_closes_it(client: Client, phone: Callable[[str], Replica]) -> None:
    office = phone("office")
    _field_work(office, client)
    _run_rules(client)
    task_id = rule_task_id("visit-follow-up", "v1")
    write(
        office,
        "visits",
        "v2",
        {
            "household_id": "h3",
            "worker": "w-9",
            "visited_at": "2026-11-26T09:00:00+08:00",
            "task_id": task_id,
        },
    )
    write(office, "checkins", "k2", {"household_id": "h2", "day": "2026-11-25", "signal": True})
    write(office, "hazards", "z1", {"status": "verified"})
    assert office.sync(client).rejected == []
    assert _run_rules(client) == {"created": 0, "closed": 3}
    assert _run_rules(client) == {"created": 0, "closed": 0}
    closed = view(client, "tasks", task_id)["fields"]
    assert (closed["status"], closed["answered_by"]) == ("done", "v2")
    still_open = [t["fields"]["household_id"] for t in _tasks(client) if t["fields"]["status"] == "open"]
    assert still_open == ["h3"]  # h3's no-signal task: no signal and no visit on that day


def test_today_lists_my_open_tasks_in_one_request(
    client: Client, settings: Settings, phone: Callable[[str], Replica]
) -> None:
    build(phone("office"), client)
    worker_id, token = asyncio.run(enroll_worker(settings, "w-a", "grid_worker", UserScope(grids=("g1",))))
    other_id, _ = asyncio.run(enroll_worker(settings, "w-b", "grid_worker", UserScope(grids=("g1",))))
    rows = [
        ("t-due", worker_id, "2026-11-25", "open", "h1"),
        ("t-late", worker_id, "2026-11-20", "open", "h2"),
        ("t-later", worker_id, "2026-11-30", "open", "h1"),
        ("t-other", other_id, "2026-11-25", "open", "h1"),
        ("t-elsewhere", worker_id, "2026-11-25", "open", "h3"),
    ]
    for task_id, assignee, due, status, household in rows:
        changes = [
            change("tasks", task_id, name, value)
            for name, value in {
                "kind": "visit",
                "assignee": assignee,
                "due_date": due,
                "status": status,
                "household_id": household,
            }.items()
        ]
        assert all(r["status"] == "applied" for r in push(client, changes))
    reply = client.get("/v1/tasks/today", params={"day": "2026-11-25"}, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    assert [t["id"] for t in reply.json()["tasks"]] == ["t-late", "t-due"]
    bad = client.get("/v1/tasks/today", params={"day": "25/11"}, headers=bearer(token))
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_filter")
