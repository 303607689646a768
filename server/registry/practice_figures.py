"""Figures of the district's practices for the community office's summary: deliberation cases
through the eight steps, and the central households that serve fewer households than the
report's five (a flag for the office's attention). Each computed from one scoped scan, like
every figure of ``reports``."""

from __future__ import annotations

import datetime
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.practices import DELIBERATION_STEPS, SERVES_AT_LEAST
from schemas.views import DeliberationFigures, Flag
from server.registry.lists import ScopeFilter, scan
from sync.merge import scalar_value

__all__ = ["deliberation_figures", "few_served"]

_ENDED = frozenset({"settled", "dropped"})


async def deliberation_figures(
    connection: AsyncConnection, where: ScopeFilter, now: datetime.datetime
) -> DeliberationFigures:
    """Every case in scope by step; ``overdue``: open cases whose deadline has passed."""
    by_step: Counter[str] = Counter(dict.fromkeys(DELIBERATION_STEPS, 0))
    overdue = 0
    today = now.date().isoformat()
    async for row in scan(connection, "deliberations", where):
        step = scalar_value(row.state, "step")
        if not isinstance(step, str):
            continue  # a case whose step has not arrived yet counts once it has
        by_step[step] += 1
        deadline = scalar_value(row.state, "deadline")
        if step not in _ENDED and isinstance(deadline, str) and deadline < today:
            overdue += 1
    cases = sum(by_step.values())
    return DeliberationFigures(
        cases=cases,
        open=cases - by_step["settled"] - by_step["dropped"],
        settled=by_step["settled"],
        dropped=by_step["dropped"],
        overdue=overdue,
        by_step=dict(by_step),
    )


async def few_served(connection: AsyncConnection, where: ScopeFilter) -> list[Flag]:
    """Central households in scope linked to fewer than five households they serve: to finish,
    never refused (the list is built up one link at a time, offline)."""
    found: list[Flag] = []
    async for row in scan(connection, "central_households", where):
        served = sorted({head.value for head in row.state.heads.values() if head.field == "serves"})
        if len(served) < SERVES_AT_LEAST:
            found.append(
                Flag(
                    kind="few_served",
                    collection="central_households",
                    record_id=row.record_id,
                    message=f"serves {len(served)} households, fewer than {SERVES_AT_LEAST}: "
                    "link the neighbours it looks after",
                    records=served,
                    community_id=row.community_id,
                    grid_id=row.grid_id,
                )
            )
    return sorted(found, key=lambda flag: flag.record_id)
