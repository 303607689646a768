"""A season of field work in the demo district: visits, hazards and requests through the
five-step loop (from every channel, supervised by a party member resident)."""

from __future__ import annotations

import datetime
import uuid

from server.registry.demo.names import COMPANY, REQUEST_TITLES, VISIT_NOTES
from server.registry.demo.plan import DemoPlan, District
from server.registry.demo.writer import Writer, moment

__all__ = ["write_hazards", "write_requests", "write_visits"]

# The stage each request reaches, and how often: every stage of the loop is present.
_REQUEST_STAGES = (
    ("submitted", 8),
    ("dispatched", 8),
    ("accepted", 10),
    ("done", 14),
    ("rated", 46),
    ("cancelled", 6),
    ("reopened", 4),
    ("redone", 4),
)
_LOOP = ("submitted", "dispatched", "accepted", "done", "rated")
_HAZARD_STEPS = ("open", "in-hand", "fixed", "verified")
_CHANNELS = ("building-chat-group",) * 5 + ("phone", "phone", "visit", "visit", "walk-in")
# The two issues the report names, as hazards of the first two grids' common areas.
NAMED_HAZARDS = (
    ("hz-paving", 0, "东门内路面塌陷", "road-collapse", "high", "in-hand"),
    ("hz-garage", 1, "地下车库负一层漏水", "water-leak", "high", "in-hand"),
)


def write_visits(w: Writer, plan: DemoPlan, d: District, now: datetime.datetime) -> None:
    rng = w.rng
    for household in d.households:
        visits = rng.choice((0, 1, 1, 2, 2, 3)) + (2 if "elderly-alone" in d.tags[household] else 0)
        for v_index in range(visits):
            at = moment(rng, now, plan.season_days)
            w.record(
                "visits",
                f"{household}-v{v_index + 1}",
                at,
                household_id=household,
                worker=rng.choice(d.workers[d.grid_of[household]]),
                visited_at=at,
                purpose=rng.choice(("routine", "routine", "elderly-care", "hazard-check", "registry-update")),
                notes=VISIT_NOTES[0] if rng.random() < 0.8 else rng.choice(VISIT_NOTES[1:]),
                follow_up=rng.random() < 0.1,
            )


def _hazard_place(w: Writer, d: District, index: int) -> tuple[str, dict[str, str], str, str, str]:
    rng = w.rng
    if index < len(NAMED_HAZARDS):
        record_id, grid_index, area, category, severity, final = NAMED_HAZARDS[index]
        return (
            record_id,
            {"grid_id": d.grids[grid_index % len(d.grids)][0], "area": area},
            category,
            severity,
            final,
        )
    where = rng.random()
    if where < 0.6:
        place = {"household_id": rng.choice(d.households)}
    elif where < 0.9:
        place = {"building_id": rng.choice(d.buildings)[0], "area": "楼道"}
    else:
        place = {"grid_id": rng.choice(d.grids)[0], "area": rng.choice(("车棚", "中心广场"))}
    category = rng.choice(("fire", "gas", "electrical", "structural", "water-leak", "other"))
    severity = rng.choice(("low", "low", "medium", "medium", "high", "critical"))
    return (
        f"hz-{index:04d}",
        place,
        category,
        severity,
        rng.choice(("open", "in-hand", "fixed", "verified", "verified")),
    )


def write_hazards(w: Writer, plan: DemoPlan, d: District, now: datetime.datetime) -> None:
    rng = w.rng
    for index in range(max(len(NAMED_HAZARDS), len(d.households) // 15)):
        record_id, place, category, severity, final = _hazard_place(w, d, index)
        reported = moment(rng, now, plan.season_days)
        worker = rng.choice(d.workers[d.grids[0][0]])
        w.record(
            "hazards",
            record_id,
            reported,
            **place,
            category=category,
            severity=severity,
            status="open",
            description="隐患排查中发现，已拍照登记",
            reported_by=worker,
            reported_at=reported,
            photos={uuid.UUID(int=rng.getrandbits(128)).hex * 2},
        )
        at = reported
        for status in _HAZARD_STEPS[1 : _HAZARD_STEPS.index(final) + 1]:
            at = min(now, at + datetime.timedelta(days=rng.randint(1, 5)))
            w.set("hazards", record_id, "status", status, at)
            if status == "fixed":
                w.record("hazards", record_id, at, fixed_by=COMPANY, fixed_at=at)
            if status == "verified":
                w.record("hazards", record_id, at, verified_by=worker, verified_at=at)


def _path(stage: str) -> list[str]:
    return {
        "cancelled": ["dispatched", "cancelled"],
        "reopened": [*_LOOP[1:4], "reopened"],
        "redone": [*_LOOP[1:4], "reopened", "dispatched", "accepted", "done", "rated"],
    }.get(stage, list(_LOOP[1 : _LOOP.index(stage) + 1]) if stage in _LOOP else [])


def _move(w: Writer, d: District, record_id: str, status: str, at: datetime.datetime, grid: str) -> None:
    rng = w.rng
    w.set("requests", record_id, "status", status, at)
    if status == "dispatched":
        members = d.party_members.get(grid)
        supervisor = rng.choice(members) if members else None
        w.record("requests", record_id, at, dispatched_to=COMPANY, supervisor_id=supervisor)
    elif status == "accepted":
        w.record("requests", record_id, at, handler=f"handler-{rng.randint(1, 12):02d}")
    elif status == "done":
        w.record("requests", record_id, at, done_at=at)
    elif status == "rated":
        score = rng.choice((3, 4, 4, 5, 5, 5))
        w.record(
            "requests",
            record_id,
            at,
            satisfaction=score,
            comment="又快又好，谢谢！" if score > 3 else "等得有点久。",
        )


def write_requests(w: Writer, plan: DemoPlan, d: District, now: datetime.datetime) -> None:
    rng = w.rng
    stages = [stage for stage, weight in _REQUEST_STAGES for _ in range(weight)]
    for index in range(max(len(_REQUEST_STAGES), len(d.households) // 5)):
        household = rng.choice(d.households)
        record_id = f"rq-{index:05d}"
        stage = _REQUEST_STAGES[index][0] if index < len(_REQUEST_STAGES) else rng.choice(stages)
        category = rng.choice(tuple(REQUEST_TITLES))
        at = moment(rng, now, plan.season_days)
        w.record(
            "requests",
            record_id,
            at,
            household_id=household,
            resident_id=d.residents[household][0] if d.residents[household] else None,
            category=category,
            title=REQUEST_TITLES[category],
            channel=rng.choice(_CHANNELS),
            status="submitted",
            submitted_at=at,
            due_date=(at + datetime.timedelta(days=rng.randint(2, 10))).date(),
        )
        for status in _path(stage):
            at = min(now, at + datetime.timedelta(hours=rng.randint(2, 60)))
            _move(w, d, record_id, status, at, d.grid_of[household])
