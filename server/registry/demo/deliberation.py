"""Deliberation in the demo district: the 62 settled livelihood issues of the report (the road
collapse and the garage leak among them) and cases at every other step; and the disagreements of
offline phones that the conflict inbox shows."""

from __future__ import annotations

import datetime

from schemas.practices import DELIBERATION_STEPS
from server.registry.demo.fieldwork import NAMED_HAZARDS
from server.registry.demo.plan import District
from server.registry.demo.writer import Writer, moment

__all__ = ["write_conflicts", "write_deliberations"]

SETTLED_CASES = 62
_TOPICS = (
    "小区停车位不足",
    "电动车充电桩安装",
    "楼道堆物清理",
    "广场舞噪音扰民",
    "单元门禁损坏",
    "雨污管道堵塞",
    "垃圾分类亭选址",
    "快递外卖车辆进小区",
    "绿化带破损补种",
    "电梯加装监控",
)
_PARTIES = ("小区党支部", "物管会", "旭赢物业服务公司", "居民代表")
_EIGHT = DELIBERATION_STEPS[:8]


def _case(w: Writer, d: District, record_id: str, title: str, final: str, start: datetime.datetime) -> None:
    rng = w.rng
    grid, _ = d.grids[rng.randrange(len(d.grids))]
    w.record(
        "deliberations",
        record_id,
        start,
        grid_id=grid,
        title=title,
        problem=f"居民在楼栋群反映：{title}。",
        step="collect",
        collected_by=d.workers[grid][0],
        collected_at=start,
    )
    path = [*_EIGHT[1 : _EIGHT.index(final) + 1]] if final in _EIGHT else [*_EIGHT[1:], "settled"]
    if final == "dropped":
        path = ["topic", "dropped"]
    at = start
    for step in path:
        at += datetime.timedelta(days=rng.randint(1, 3))
        w.set("deliberations", record_id, "step", step, at)
        _step_fields(w, d, record_id, step, at, grid)


def _step_fields(w: Writer, d: District, record_id: str, step: str, at: datetime.datetime, grid: str) -> None:
    rng = w.rng
    branch = d.branch_of[d.compound_of[grid]]
    if step == "topic":
        w.record(
            "deliberations", record_id, at, lead_body=f"{d.compound_names[d.compound_of[grid]]}小区党支部"
        )
    elif step == "pre-meeting":
        w.record(
            "deliberations",
            record_id,
            at,
            participants=set(_PARTIES),
            deadline=(at + datetime.timedelta(days=30)).date(),
        )
    elif step == "meeting":
        attended = set(_PARTIES) if rng.random() < 0.7 else set(_PARTIES[:3])
        w.record("deliberations", record_id, at, attended=attended, meeting_at=at)
        if rng.random() < 0.5:
            w.record(
                "deliberations",
                record_id,
                at,
                votes_for=rng.randint(20, 60),
                votes_against=rng.randint(0, 5),
                votes_abstained=rng.randint(0, 3),
            )
    elif step == "publish":
        w.record(
            "deliberations",
            record_id,
            at,
            decision=f"经{branch}牵头四方协商，由物业公司限期办理，党员监督。",
            published_at=at,
        )
    elif step == "settled":
        w.record("deliberations", record_id, at, settled_at=at)


def write_deliberations(w: Writer, d: District, now: datetime.datetime) -> None:
    rng = w.rng
    for index, (hazard, *_rest) in enumerate(NAMED_HAZARDS):
        title = ("路面塌陷", "地库漏水")[index]
        record_id = ("dl-road", "dl-garage")[index]
        _case(w, d, record_id, title, "settled", now - datetime.timedelta(days=80))
        w.record("deliberations", record_id, now - datetime.timedelta(days=80), hazard_ids={hazard})
    for index in range(SETTLED_CASES - len(NAMED_HAZARDS)):
        _case(
            w,
            d,
            f"dl-{index:03d}",
            _TOPICS[index % len(_TOPICS)],
            "settled",
            moment(rng, now, 300) - datetime.timedelta(days=40),
        )
    for index, step in enumerate(DELIBERATION_STEPS):
        if step == "settled":
            continue
        for copy in range(2 if step != "dropped" else 1):
            start = moment(rng, now, 20) - datetime.timedelta(days=25)
            _case(w, d, f"dl-open-{index}{copy}", _TOPICS[(index + copy * 3) % len(_TOPICS)], step, start)


def write_conflicts(w: Writer, d: District, now: datetime.datetime) -> None:
    """Disagreements of offline phones, as the inbox receives them from the field."""
    grid, _ = d.grids[0]
    phones = (f"phone-{d.workers[grid][0]}", f"phone-{d.workers[grid][1]}")
    at = now - datetime.timedelta(hours=3)
    in_grid = [h for h in d.households if d.grid_of[h] == grid][:3]
    for offset, household in enumerate(in_grid):
        values = (f"139{offset:02d}001{offset:04d}", f"138{offset:02d}002{offset:04d}")
        w.offline_pair(
            "households", household, "phone", values, at + datetime.timedelta(minutes=offset), phones
        )
    if in_grid:
        w.offline_pair(
            "households", in_grid[0], "notes", ("老人腿脚不便，需上门", "已搬去女儿家暂住"), at, phones
        )
    # Two phones moved one open case at once: the meeting agreed, or it must meet again.
    w.offline_pair("deliberations", "dl-open-40", "step", ("publish", "pre-meeting"), at, phones)
