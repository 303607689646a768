"""Figures of the district's practices for the community office's summary: deliberation cases
through the eight steps. Computed from one scoped scan, like every figure of ``reports``."""

from __future__ import annotations

import datetime
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.practices import DELIBERATION_STEPS
from schemas.views import DeliberationFigures
from server.registry.lists import ScopeFilter, scan
from sync.merge import scalar_value

__all__ = ["deliberation_figures"]

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
