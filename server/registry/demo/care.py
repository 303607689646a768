"""Care in the demo district: curtain agreements and their exceptions (today's relative to the
real clock), and the volunteers' points ledger."""

from __future__ import annotations

import datetime
import itertools
from collections import Counter

from server.registry.demo.names import ACTIVITIES, REWARDS
from server.registry.demo.plan import DemoPlan, District
from server.registry.demo.writer import CHINA, Writer, at_day, moment

__all__ = ["write_agreements", "write_points", "write_wishes"]

_COVERED = ("elderly-alone", "empty-nest", "widowed", "disability")
_FOUND = ("all-well",) * 6 + ("not-at-home", "needed-help", "in-hospital")


def _sign_up(w: Writer, d: District, start: datetime.datetime) -> list[tuple[str, str, bool]]:
    """Agreements signed, as (household, open_by, daily_signal)."""
    rng = w.rng
    signed: list[tuple[str, str, bool]] = []
    for household in d.households:
        circumstances = d.tags[household] & set(_COVERED)
        chance = 0.9 if "elderly-alone" in circumstances else 0.35
        if not circumstances or rng.random() >= chance:
            continue
        open_by = rng.choice(("07:30", "08:00", "08:30", "09:00"))
        daily = rng.random() < 0.15
        grid = d.grid_of[household]
        w.record(
            "curtain_agreements",
            f"ca-{household}",
            start,
            household_id=household,
            resident_id=d.residents[household][0] if d.residents[household] else None,
            signed_on=start.date(),
            circumstances=circumstances,
            open_by=open_by,
            close_by=rng.choice(("18:30", "19:00", "19:30")),
            watcher_id=d.watchers.get(d.building_of[household]),
            watcher=d.workers[grid][0],
            daily_signal=True if daily else None,
        )
        signed.append((household, open_by, daily))
    return signed


def _exception(
    w: Writer, household: str, day: datetime.date, seen_at: datetime.datetime, *, followed: bool
) -> None:
    record_id = f"ex-{household}-{day:%Y%m%d}"
    w.record(
        "checkins",
        record_id,
        seen_at,
        household_id=household,
        agreement_id=f"ca-{household}",
        day=day,
        signal=False,
        missed="morning",
        checked_at=seen_at,
    )
    if followed:
        at = seen_at + datetime.timedelta(minutes=w.rng.randint(10, 50))
        w.record("checkins", record_id, at, followed_up_at=at, found=w.rng.choice(_FOUND))


def write_agreements(w: Writer, plan: DemoPlan, d: District, now: datetime.datetime) -> None:
    rng = w.rng
    signed = _sign_up(w, d, now - datetime.timedelta(days=plan.season_days))
    today = now.date()
    opened_today: Counter[str] = Counter()  # per community
    for household, open_by, daily in signed:
        community = d.grid_of[household].split("-")[0]
        hour, minute = map(int, open_by.split(":"))
        for days_ago in range(plan.checkin_days - 1, -1, -1):
            day = today - datetime.timedelta(days=days_ago)
            due = at_day(day, hour, minute)
            seen_at = due + datetime.timedelta(minutes=rng.randint(5, 40))
            if seen_at > now:
                continue  # today's hour has not come yet
            if days_ago == 0 and opened_today[community] < 3:
                # A few exceptions today in each community, one already followed up: the
                # dashboard has something real to follow up.
                _exception(w, household, day, seen_at, followed=opened_today[community] == 1)
                opened_today[community] += 1
            elif rng.random() < 0.015:
                _exception(w, household, day, seen_at, followed=days_ago > 0 or rng.random() < 0.5)
            elif daily:
                at = due - datetime.timedelta(minutes=rng.randint(5, 60))
                w.record(
                    "checkins",
                    f"ck-{household}-{day:%Y%m%d}",
                    at,
                    household_id=household,
                    day=day,
                    signal=True,
                    checked_at=at,
                )


_ACTIVITY_POINTS = (10, 10, 5, 20, 10)
_REWARD_KINDS = ("village-market", "property-fee-discount", "goods", "goods")
_REWARD_COSTS = (30, 50, 40, 60)
_WISHES = (
    "想要一台收音机",
    "希望有人陪着去医院复查",
    "想学用智能手机视频通话",
    "家里灯泡坏了想请人换",
    "想要一副老花镜",
)


def _catalogue(w: Writer, d: District, start: datetime.datetime) -> None:
    for community in sorted({c for _, c in d.grids}):
        for index, (name, points) in enumerate(zip(ACTIVITIES, _ACTIVITY_POINTS, strict=True)):
            w.record(
                "point_activities",
                f"{community}-act{index}",
                start,
                community_id=community,
                name=name,
                points=points,
                active=True,
            )
        for index, (name, kind, cost) in enumerate(zip(REWARDS, _REWARD_KINDS, _REWARD_COSTS, strict=True)):
            provider = "便民菜市场" if kind == "village-market" else "旭赢物业服务公司"
            w.record(
                "rewards",
                f"{community}-rw{index}",
                start,
                community_id=community,
                name=name,
                kind=kind,
                cost=cost,
                provider=provider,
                active=True,
            )


def write_wishes(w: Writer, d: District, now: datetime.datetime) -> None:
    """Small wishes (微心愿) at every stage: posted, claimed by a volunteer, fulfilled."""
    rng = w.rng
    elderly = [h for h in d.households if d.tags[h] & set(_COVERED) and d.residents[h]]
    for index, household in enumerate(elderly[: max(5, len(elderly) // 8)]):
        wish = f"wish-{index:04d}"
        at = moment(rng, now, 30)
        w.record(
            "wishes",
            wish,
            at,
            household_id=household,
            resident_id=d.residents[household][0],
            title=_WISHES[index % len(_WISHES)],
            status="posted",
            posted_at=at,
        )
        stage = index % 3
        if stage and d.volunteers:
            at = min(now, at + datetime.timedelta(days=1))
            w.set("wishes", wish, "status", "claimed", at)
            w.record("wishes", wish, at, claimed_by=rng.choice(d.volunteers), claimed_at=at)
        if stage == 2 and d.volunteers:
            at = min(now, at + datetime.timedelta(days=2))
            w.set("wishes", wish, "status", "fulfilled", at)
            w.record("wishes", wish, at, fulfilled_at=at)


def write_points(w: Writer, plan: DemoPlan, d: District, now: datetime.datetime) -> None:
    rng = w.rng
    _catalogue(w, d, now - datetime.timedelta(days=plan.season_days))
    entry = itertools.count(1)
    for volunteer in d.volunteers:
        balance = 0
        for _ in range(rng.randint(1, 6)):
            activity = rng.randrange(len(ACTIVITIES))
            points = _ACTIVITY_POINTS[activity]
            at = moment(rng, now, plan.season_days)
            balance += points
            w.record(
                "points",
                f"pt-{next(entry):06d}",
                at,
                resident_id=volunteer,
                kind="earned",
                points=points,
                reason=ACTIVITIES[activity],
                activity_id=f"{volunteer.split('-')[0]}-act{activity}",
                at=at,
                recorded_by="w-demo",
            )
        if rng.random() < 0.4 and balance >= 10:
            reward = rng.randrange(len(REWARDS))
            at = moment(rng, now, 3)
            w.record(
                "points",
                f"pt-{next(entry):06d}",
                at,
                resident_id=volunteer,
                kind="redeemed",
                points=balance // 2,
                reason=REWARDS[reward],
                reward_id=f"{volunteer.split('-')[0]}-rw{reward}",
                at=at,
                recorded_by="w-demo",
            )
    if d.volunteers:
        # Two redemptions recorded offline on two phones the same day: together they overspend.
        at = min(now, datetime.datetime.combine(now.date(), datetime.time(9), CHINA))
        for recorder in ("w-c1-g1-full", "w-c1-g1-part1"):
            w.record(
                "points",
                f"pt-{next(entry):06d}",
                at,
                resident_id=d.volunteers[0],
                kind="redeemed",
                points=500,
                reason="物业费折扣",
                at=at,
                recorded_by=recorder,
            )
