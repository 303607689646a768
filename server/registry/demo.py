"""The demo district: five communities of resettled villages, about 4,100 households, a season
of field work. Deterministic from ``(seed, now)``: ids, names and choices come from the seed, and
dates are offsets back from ``now`` (so "visited in the last 30 days" means something whenever it
is loaded). The benchmarks and the simulation reuse ``demo_changes``.

Everything is written as ordinary changes of the replica ``demo`` through the store's batched
push, never around it, so the demo also exercises the rules, the scope columns and the merge.
"""

from __future__ import annotations

import datetime
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from schemas.protocol import AddChange, Change, SetChange
from server.sync.store import SyncStore
from sync.hlc import format_hlc

__all__ = ["DEMO_REPLICA", "DemoLoad", "DemoPlan", "demo_changes", "demo_command", "load_demo"]

DEMO_REPLICA = "demo"
CHINA = datetime.timezone(datetime.timedelta(hours=8))

_SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Zhao",
    "Huang",
    "Zhou",
    "Wu",
    "Xu",
    "Sun",
    "Hu",
    "Zhu",
    "Gao",
    "Lin",
    "He",
    "Guo",
    "Ma",
    "Luo",
]
_GIVEN = [
    "Wei",
    "Fang",
    "Min",
    "Jing",
    "Li",
    "Qiang",
    "Lei",
    "Jun",
    "Yang",
    "Yong",
    "Yan",
    "Jie",
    "Juan",
    "Tao",
    "Ming",
    "Chao",
    "Xiu",
    "Xia",
    "Ping",
    "Gang",
    "Hua",
    "Lan",
    "Hong",
    "Ying",
    "Bo",
    "Hui",
    "Dan",
    "Yu",
    "Kai",
    "Ning",
]
_COMMUNITIES = (
    ("Xingfu", "Lijia and Zhangzhuang"),
    ("Heping", "Dongwang and Xiwang"),
    ("Anju", "Zhaojiazhuang, Qiancun and Houcun"),
    ("Xinyuan", "Liuhe"),
    ("Hexie", "Gaoqiao and Nanwa"),
)
_COMPANIES = ("Lvyuan Property Services", "Anjia Property Management", "Chengxin Repairs")
_SKILLS = ("electrician", "plumber", "retired nurse", "retired teacher", "lawyer", "barber", "carpenter")
_PARTY_KINDS = (
    "party-member-resident",
    "party-member-in-work",
    "party-member-transient",
    "party-member-retired",
)
_REQUEST_TITLES = {
    "repair": "Door lock broken",
    "plumbing": "Water pipe leaking in the kitchen",
    "electrical": "Corridor light out",
    "cleaning": "Rubbish left in the stairwell",
    "elderly-care": "Help with shopping twice a week",
    "dispute": "Noise from the flat above",
    "paperwork": "Help with the pension certification",
    "other": "Bicycle shed roof loose",
}
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


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """The district's shape. The defaults are the demo; tests pass a small ``households``."""

    seed: int = 7
    households: int = 4_100
    grids_per_community: int = 3
    households_per_building: int = 24
    building_leaders: int = 50
    central_households: int = 112
    season_days: int = 90
    checkin_days: int = 14


@dataclass
class _Writer:
    """Makes changes as the demo replica: deterministic ids, hlcs at the event's time, and the
    ``pred`` of every later write of a field naming the earlier one."""

    rng: random.Random
    changes: list[Change] = field(default_factory=list)
    heads: dict[tuple[str, str, str], str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _hlc(self, at: datetime.datetime) -> str:
        return format_hlc(int(at.timestamp() * 1000), next(self.counter) % 1_000_000, DEMO_REPLICA)

    def set(self, collection: str, record_id: str, name: str, value: Any, at: datetime.datetime) -> None:
        key = (collection, record_id, name)
        pred = (self.heads[key],) if key in self.heads else ()
        change_id = self._id()
        self.heads[key] = change_id
        self.changes.append(
            SetChange(
                id=change_id,
                collection=collection,
                record_id=record_id,
                field=name,
                value=value,
                hlc=self._hlc(at),
                pred=pred,
            )
        )

    def record(self, collection: str, record_id: str, when: datetime.datetime, **values: Any) -> None:
        """Write a record's fields; a list or set value is a set field, written with ``add``."""
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, list | set | tuple):
                for element in sorted(value):
                    self.changes.append(
                        AddChange(
                            id=self._id(),
                            collection=collection,
                            record_id=record_id,
                            field=name,
                            value=element,
                            hlc=self._hlc(when),
                        )
                    )
            else:
                self.set(collection, record_id, name, _wire(value), when)


def _wire(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def _id_number(rng: random.Random, birth_year: int) -> str:
    """A well-formed (fictional) 18-character ID number with its ISO 7064 check character."""
    body = f"3703{rng.randint(1, 99):02d}{birth_year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)}{rng.choice(['', *_GIVEN])}".strip()


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"


@dataclass
class _District:
    grids: list[tuple[str, str]] = field(default_factory=list)  # (grid id, community id)
    buildings: list[tuple[str, str]] = field(default_factory=list)  # (building id, grid id)
    households: list[str] = field(default_factory=list)
    tags: dict[str, set[str]] = field(default_factory=dict)
    residents: dict[str, list[str]] = field(default_factory=dict)  # household -> residents
    volunteers: list[str] = field(default_factory=list)
    workers: dict[str, list[str]] = field(default_factory=dict)  # grid -> workers
    grid_of: dict[str, str] = field(default_factory=dict)  # household -> grid


def _registry(w: _Writer, plan: DemoPlan, start: datetime.datetime) -> _District:
    rng = w.rng
    d = _District()
    for c_index, (name, villages) in enumerate(_COMMUNITIES, 1):
        community = f"c{c_index}"
        w.record(
            "communities",
            community,
            start,
            name=f"{name} Community",
            code=f"C{c_index:02d}",
            villages=villages,
            address=f"{c_index * 100 + 8} {name} Road",
            office_phone=f"0535-66{c_index:02d}{rng.randint(1000, 9999)}",
        )
        for g_index in range(1, plan.grids_per_community + 1):
            grid = f"{community}-g{g_index}"
            workers = [f"w-{grid}-full", *(f"w-{grid}-part{k}" for k in range(1, 4))]
            d.workers[grid] = workers
            d.grids.append((grid, community))
            w.record(
                "grids",
                grid,
                start,
                community_id=community,
                name=f"{name} Grid {g_index}",
                code=f"C{c_index:02d}G{g_index}",
                party_branch=f"{name} Community Party Branch {g_index}",
                workers=workers,
            )
    buildings_needed = -(-plan.households // plan.households_per_building)
    for b_index in range(buildings_needed):
        grid, _ = d.grids[b_index % len(d.grids)]
        building = f"{grid}-b{b_index // len(d.grids) + 1}"
        d.buildings.append((building, grid))
        w.record(
            "buildings",
            building,
            start,
            grid_id=grid,
            name=f"Building {b_index // len(d.grids) + 1}",
            code=f"B{b_index + 1:03d}",
            floors=6,
            units_count=2,
        )
    central = set(rng.sample(range(plan.households), min(plan.central_households, plan.households)))
    for h_index in range(plan.households):
        building, grid = d.buildings[h_index // plan.households_per_building]
        slot = h_index % plan.households_per_building
        unit, floor, door = slot // 12 + 1, slot % 12 // 2 + 1, slot % 2 + 1
        household = f"{building}-u{unit}-{floor}0{door}"
        d.households.append(household)
        d.grid_of[household] = grid
        tags: set[str] = set()
        roll = rng.random()
        if roll < 0.08:
            tags.add("elderly-alone")
        elif roll < 0.2:
            tags.add("empty-nest")
        for tag, chance in (
            ("child-under-6", 0.12),
            ("veteran", 0.02),
            ("disability", 0.03),
            ("five-guarantee", 0.01),
            ("party-member-household", 0.1),
        ):
            if rng.random() < chance:
                tags.add(tag)
        if h_index in central:
            tags |= {"central-household", "party-member-household"}
        d.tags[household] = tags
        members = 1 if "elderly-alone" in tags else rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5))
        moved_out = rng.random() < 0.015
        w.record(
            "households",
            household,
            start,
            building_id=building,
            unit=str(unit),
            door=f"{floor}0{door}",
            address=f"{building.split('-')[-1].upper()} Unit {unit} Room {floor}0{door}",
            head_name=_name(rng),
            phone=_phone(rng),
            members_count=members,
            tags=tags,
            moved_out=True if moved_out else None,
            moved_out_on=(start + datetime.timedelta(days=rng.randint(1, 60))).date() if moved_out else None,
        )
        d.residents[household] = []
        for r_index in range(members):
            resident = f"{household}-r{r_index + 1}"
            d.residents[household].append(resident)
            elderly = "elderly-alone" in tags or "empty-nest" in tags
            birth_year = rng.randint(1930, 1958) if elderly else rng.randint(1945, 2022)
            resident_tags: set[str] = set()
            if "party-member-household" in tags and r_index == 0:
                resident_tags.add(rng.choice(_PARTY_KINDS))
            if rng.random() < 0.05:
                resident_tags.add("skilled")
            if 1950 < birth_year < 2005 and rng.random() < 0.09:
                resident_tags.add("volunteer")
                d.volunteers.append(resident)
            w.record(
                "residents",
                resident,
                start,
                household_id=household,
                name=_name(rng),
                id_number=_id_number(rng, birth_year),
                birth_year=birth_year,
                phone=_phone(rng) if rng.random() < 0.6 else None,
                tags=resident_tags,
                skills=rng.choice(_SKILLS) if "skilled" in resident_tags else None,
            )
    # Building leaders: one resident of each of the first buildings, tagged and named there.
    for building, _ in d.buildings[: plan.building_leaders]:
        household = next(h for h in d.households if h.startswith(f"{building}-") and d.residents[h])
        leader = d.residents[household][0]
        w.record("residents", leader, start + datetime.timedelta(days=1), tags={"building-leader"})
        w.record("buildings", building, start + datetime.timedelta(days=1), leaders={leader})
    return d


def _moment(rng: random.Random, now: datetime.datetime, days_ago_max: int) -> datetime.datetime:
    day = (now - datetime.timedelta(days=rng.randint(1, days_ago_max))).date()
    at = datetime.datetime.combine(day, datetime.time(rng.randint(8, 17), rng.randint(0, 59)), CHINA)
    return min(at, now)


def _field_work(w: _Writer, plan: DemoPlan, d: _District, now: datetime.datetime) -> None:
    rng = w.rng
    for household in d.households:
        visits = rng.choice((0, 1, 1, 2, 2, 3)) + (2 if "elderly-alone" in d.tags[household] else 0)
        for v_index in range(visits):
            at = _moment(rng, now, plan.season_days)
            w.record(
                "visits",
                f"{household}-v{v_index + 1}",
                at,
                household_id=household,
                worker=rng.choice(d.workers[d.grid_of[household]]),
                visited_at=at,
                purpose=rng.choice(("routine", "routine", "elderly-care", "hazard-check", "registry-update")),
                notes="Talked with the family; all well."
                if rng.random() < 0.8
                else "Asked about the lift repair.",
                follow_up=rng.random() < 0.1,
            )
    _hazards(w, plan, d, now)
    _requests(w, plan, d, now)
    _checkins(w, plan, d, now)
    _points(w, plan, d, now)


def _hazards(w: _Writer, plan: DemoPlan, d: _District, now: datetime.datetime) -> None:
    rng = w.rng
    first_grid = d.grids[0][0]
    named = (
        (
            "hz-paving",
            {"grid_id": first_grid, "area": "Paving by the east gate (collapsed)"},
            "road-collapse",
            "high",
            "open",
        ),
        (
            "hz-garage",
            {"grid_id": d.grids[1][0], "area": "Underground garage, level -1 (leaking)"},
            "water-leak",
            "high",
            "in-hand",
        ),
    )
    count = max(len(named), len(d.households) // 15)
    for index in range(count):
        if index < len(named):
            record_id, place, category, severity, final = named[index]
        else:
            record_id = f"hz-{index:04d}"
            where = rng.random()
            if where < 0.6:
                place = {"household_id": rng.choice(d.households)}
            elif where < 0.9:
                place = {"building_id": rng.choice(d.buildings)[0], "area": "Stairwell"}
            else:
                place = {"grid_id": rng.choice(d.grids)[0], "area": rng.choice(("Bicycle shed", "Courtyard"))}
            category = rng.choice(("fire", "gas", "electrical", "structural", "water-leak", "other"))
            severity = rng.choice(("low", "low", "medium", "medium", "high", "critical"))
            final = rng.choice(("open", "in-hand", "fixed", "verified", "verified"))
        reported = _moment(rng, now, plan.season_days)
        worker = rng.choice(d.workers[d.grids[0][0]])
        w.record(
            "hazards",
            record_id,
            reported,
            **place,
            category=category,
            severity=severity,
            status="open",
            description=f"{category.replace('-', ' ').capitalize()} found during the hazard check",
            reported_by=worker,
            reported_at=reported,
            photos={uuid.UUID(int=w.rng.getrandbits(128)).hex * 2},
        )
        at = reported
        for status in ("in-hand", "fixed", "verified"):
            if ("open", "in-hand", "fixed", "verified").index(final) < (
                "open",
                "in-hand",
                "fixed",
                "verified",
            ).index(status):
                break
            at = min(now, at + datetime.timedelta(days=rng.randint(1, 5)))
            w.set("hazards", record_id, "status", status, at)
            if status == "fixed":
                w.record("hazards", record_id, at, fixed_by="Lvyuan Property Services", fixed_at=at)
            if status == "verified":
                w.record("hazards", record_id, at, verified_by=worker, verified_at=at)


def _requests(w: _Writer, plan: DemoPlan, d: _District, now: datetime.datetime) -> None:
    rng = w.rng
    stages = [stage for stage, weight in _REQUEST_STAGES for _ in range(weight)]
    for index in range(max(len(_REQUEST_STAGES), len(d.households) // 5)):
        household = rng.choice(d.households)
        record_id = f"rq-{index:05d}"
        stage = _REQUEST_STAGES[index][0] if index < len(_REQUEST_STAGES) else rng.choice(stages)
        category = rng.choice(tuple(_REQUEST_TITLES))
        at = _moment(rng, now, plan.season_days)
        grid = d.grid_of[household]
        w.record(
            "requests",
            record_id,
            at,
            household_id=household,
            resident_id=d.residents[household][0] if d.residents[household] else None,
            category=category,
            title=_REQUEST_TITLES[category],
            status="submitted",
            submitted_at=at,
            due_date=(at + datetime.timedelta(days=rng.randint(2, 10))).date(),
        )
        path = {
            "cancelled": ["dispatched", "cancelled"],
            "reopened": [*_LOOP[1:4], "reopened"],
            "redone": [*_LOOP[1:4], "reopened", "dispatched", "accepted", "done", "rated"],
        }.get(stage, list(_LOOP[1 : _LOOP.index(stage) + 1]) if stage in _LOOP else [])
        for status in path:
            at = min(now, at + datetime.timedelta(hours=rng.randint(2, 60)))
            w.set("requests", record_id, "status", status, at)
            if status == "dispatched":
                w.record(
                    "requests",
                    record_id,
                    at,
                    dispatched_to=rng.choice(_COMPANIES),
                    supervisor=f"w-{grid}-full",
                )
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
                    comment="Quick and polite." if score > 3 else "Took long.",
                )


def _checkins(w: _Writer, plan: DemoPlan, d: _District, now: datetime.datetime) -> None:
    rng = w.rng
    elderly = [h for h in d.households if "elderly-alone" in d.tags[h]]
    for days_ago in range(plan.checkin_days - 1, -1, -1):
        day = (now - datetime.timedelta(days=days_ago)).date()
        for household in elderly:
            at = datetime.datetime.combine(day, datetime.time(7, rng.randint(0, 59)), CHINA)
            # Today: only the checks already made by now, and a few households not seen yet.
            if at > now or (days_ago == 0 and rng.random() < 0.12):
                continue
            checker = rng.choice(d.workers[d.grid_of[household]])
            w.record(
                "checkins",
                f"ck-{household}-{day:%Y%m%d}",
                at,
                household_id=household,
                day=day,
                signal=rng.random() < 0.97,
                checked_by=checker,
                checked_at=at,
            )


def _points(w: _Writer, plan: DemoPlan, d: _District, now: datetime.datetime) -> None:
    rng = w.rng
    activities = (
        "Stairwell cleaning",
        "Visiting the elderly",
        "Traffic duty at the school gate",
        "Flood watch",
    )
    rewards = ("Cooking oil", "Rice 5 kg", "Haircut", "Laundry detergent")
    entry = itertools.count(1)
    for volunteer in d.volunteers:
        balance = 0
        for _ in range(rng.randint(1, 6)):
            points = rng.choice((5, 10, 10, 20))
            at = _moment(rng, now, plan.season_days)
            balance += points
            w.record(
                "points",
                f"pt-{next(entry):06d}",
                at,
                resident_id=volunteer,
                kind="earned",
                points=points,
                reason=rng.choice(activities),
                at=at,
                recorded_by="w-demo",
            )
        if rng.random() < 0.4 and balance >= 10:
            at = _moment(rng, now, 3)
            w.record(
                "points",
                f"pt-{next(entry):06d}",
                at,
                resident_id=volunteer,
                kind="redeemed",
                points=balance // 2,
                reason=rng.choice(rewards),
                at=at,
                recorded_by="w-demo",
            )
    if d.volunteers:
        # Two redemptions recorded offline on two phones the same day: together they overspend.
        volunteer = d.volunteers[0]
        at = min(now, datetime.datetime.combine(now.date(), datetime.time(9), CHINA))
        for recorder in ("w-c1-g1-full", "w-c1-g1-part1"):
            w.record(
                "points",
                f"pt-{next(entry):06d}",
                at,
                resident_id=volunteer,
                kind="redeemed",
                points=500,
                reason="Electric fan",
                at=at,
                recorded_by=recorder,
            )


def demo_changes(plan: DemoPlan = DemoPlan(), now: datetime.datetime | None = None) -> list[Change]:
    """Every change of the demo district, parents before children, in the order to push them."""
    now = (now or datetime.datetime.now(CHINA)).astimezone(CHINA)
    writer = _Writer(random.Random(plan.seed))
    start = now - datetime.timedelta(days=plan.season_days + 10)
    district = _registry(writer, plan, start)
    _field_work(writer, plan, district, now)
    return writer.changes


@dataclass(frozen=True, slots=True)
class DemoLoad:
    changes: int
    rejected: list[tuple[str, str]]
    seconds: float


async def load_demo(
    store: SyncStore,
    changes: Sequence[Change],
    *,
    batch: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> DemoLoad:
    """Push ``changes`` through the store's batched push as the demo replica."""
    started = time.perf_counter()
    rejected: list[tuple[str, str]] = []
    analyzed = 0
    for begin in range(0, len(changes), batch):
        chunk = changes[begin : begin + batch]
        outcome = await store.writer.push(None, DEMO_REPLICA, chunk)
        rejected += [(r.id or "", r.code or "") for r in outcome.results if r.status == "rejected"]
        loaded = begin + len(chunk)
        if store.engine.dialect.name == "postgresql" and loaded >= 2 * analyzed:
            # A bulk load outruns autovacuum: without fresh statistics PostgreSQL keeps planning
            # the id lookups of a push for an empty table (sequential scans), and slows down.
            # Each time the log has doubled is enough.
            async with store.engine.begin() as connection:
                await connection.execute(text("ANALYZE changes, records"))
            analyzed = loaded
        if progress is not None:
            progress(len(chunk))
    return DemoLoad(len(changes), rejected, time.perf_counter() - started)


async def demo_command(store: SyncStore, plan: DemoPlan, *, if_empty: bool) -> int:
    """``gridsync demo``: load the district into an empty database, with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if await store.change_count():
        if if_empty:
            console.print("the database already holds changes: demo not loaded")
            return 0
        console.print("[red]the demo loads only into an empty database[/red] (use a new --database-url)")
        return 1
    started = time.perf_counter()
    changes = demo_changes(plan)
    console.print(f"generated {len(changes):,} changes in {time.perf_counter() - started:.1f} s")
    columns = (
        TextColumn("loading the demo district"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("demo", total=len(changes))
        loaded = await load_demo(store, changes, progress=lambda n: bar.advance(task, n))
    if loaded.rejected:
        console.print(
            f"[red]{len(loaded.rejected)} changes were rejected[/red], first: {loaded.rejected[:3]}"
        )
        return 1
    console.print(
        f"loaded {loaded.changes:,} changes ({plan.households:,} households, seed {plan.seed}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0
