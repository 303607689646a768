"""The curtain agreement (窗帘约定) as practised: who needs someone at the door today.

A household signs up (an agreement, not a duty) with the hour its curtains open and who
watches. Only exceptions are recorded: a ``checkins`` record with ``signal: false`` says the
watcher saw no signal, and stays open until its follow-up records what was ``found`` (or a
signal is seen later that day). A household that asked for each day's signal to be recorded
(``daily_signal``) is also listed when its agreed hour has passed with no signal. Households
without an agreement are never listed: nothing here is a daily clock-in for workers.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from server.registry.lists import Scoped, ScopeFilter, scan
from sync.merge import scalar_value

__all__ = ["Watch", "WatchList", "watch_list"]


@dataclass(frozen=True, slots=True)
class Watch:
    """A household under an active agreement that needs someone at the door."""

    household: Scoped
    agreement: Scoped
    reason: str  # "exception": no signal was seen; "no-signal": the agreed hour passed unseen


@dataclass(frozen=True, slots=True)
class WatchList:
    covered: int  # households living here under an active agreement
    listed: list[Watch]
    waiting: int  # daily-signal agreements whose hour has not come yet, not seen so far


def _active(agreement: Scoped, today: str) -> bool:
    signed, ended = (scalar_value(agreement.state, n) for n in ("signed_on", "ended_on"))
    if isinstance(signed, str) and signed > today:
        return False
    return not (isinstance(ended, str) and ended <= today)


async def _today(connection: AsyncConnection, where: ScopeFilter, today: str) -> tuple[set[str], set[str]]:
    """(households with a signal seen today, households with an exception not followed up)."""
    seen: set[str] = set()
    exceptions: set[str] = set()
    async for row in scan(connection, "checkins", where):
        state = row.state
        if scalar_value(state, "day") != today:
            continue
        household = scalar_value(state, "household_id")
        if scalar_value(state, "signal") is True:
            seen.add(household)
        elif scalar_value(state, "signal") is False and scalar_value(state, "found") is None:
            exceptions.add(household)
    return seen, exceptions


async def watch_list(
    connection: AsyncConnection, where: ScopeFilter, now: datetime.datetime, default_hour: int
) -> WatchList:
    """The households needing a visit now, from the agreements in scope and today's records."""
    today = now.date().isoformat()
    agreements: dict[str, Scoped] = {}
    async for row in scan(connection, "curtain_agreements", where):
        household = scalar_value(row.state, "household_id")
        if isinstance(household, str) and _active(row, today):
            agreements[household] = row
    living = {
        row.record_id: row
        async for row in scan(connection, "households", where)
        if row.record_id in agreements and not scalar_value(row.state, "moved_out")
    }
    seen, exceptions = await _today(connection, where, today)
    listed: list[Watch] = []
    waiting = 0
    clock = now.strftime("%H:%M")
    for household_id, household in sorted(living.items()):
        agreement = agreements[household_id]
        if household_id in seen:
            continue
        if household_id in exceptions:
            listed.append(Watch(household, agreement, "exception"))
        elif scalar_value(agreement.state, "daily_signal") is True:
            due = scalar_value(agreement.state, "open_by") or f"{default_hour:02d}:00"
            if clock >= due:
                listed.append(Watch(household, agreement, "no-signal"))
            else:
                waiting += 1
    return WatchList(len(living), listed, waiting)
