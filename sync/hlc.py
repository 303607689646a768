"""Hybrid logical clocks.

An hlc is ``<wall ms, 15 digits>-<counter, 6 digits>-<replica_id>``: fixed-width numbers make
string order equal to clock order, and the replica id breaks ties between devices.

No replica's clock (the server's, a phone's) ever stands more than ``MAX_FOLLOW_AHEAD_MS`` past
its own wall time, whatever hlcs it receives: one device with a wrong date cannot drag the
others into the future (docs/protocol.md, "Clocks").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "HLC_PATTERN",
    "MAX_FOLLOW_AHEAD_MS",
    "REPLICA_ID_PATTERN",
    "HybridClock",
    "Timestamp",
    "format_hlc",
    "hlc_wall_ms",
    "now_ms",
    "parse_hlc",
]

WALL_DIGITS = 15
COUNTER_DIGITS = 6
MAX_COUNTER = 10**COUNTER_DIGITS - 1
REPLICA_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
HLC_PATTERN = re.compile(r"^(\d{15})-(\d{6})-([A-Za-z0-9_.:-]{1,64})\Z")
# How far past its own wall time a replica's clock may be moved by the hlcs it receives. Well
# below the server's ``clock_ahead`` flag (5 minutes by default), so a phone with a correct clock
# that followed a fast one is never flagged itself.
MAX_FOLLOW_AHEAD_MS = 60_000


class Timestamp(NamedTuple):
    wall_ms: int
    counter: int
    replica_id: str


def format_hlc(wall_ms: int, counter: int, replica_id: str) -> str:
    return f"{wall_ms:015d}-{counter:06d}-{replica_id}"


def parse_hlc(hlc: str) -> Timestamp:
    """Parse an hlc string; raises ValueError with a readable message when it is malformed."""
    match = HLC_PATTERN.match(hlc)
    if match is None:
        raise ValueError(
            f"hlc {hlc!r} is not '<15-digit wall ms>-<6-digit counter>-<replica id>'",
        )
    return Timestamp(int(match[1]), int(match[2]), match[3])


def now_ms() -> int:
    """The wall clock in Unix milliseconds: the one clock the server and the client read."""
    return time.time_ns() // 1_000_000


class HybridClock:
    """A replica's clock: moves past every hlc it issues or observes, but never more than
    ``max_ahead_ms`` past its own wall time.

    A received hlc beyond that bound is followed only up to the bound (``observe`` says so), and
    a clock found beyond it when it ticks (persisted while the wall clock was wrong, or dragged
    there by an older client) is set back to it: local writes never inherit another device's
    wrong date, and never overflow the hlc's 15 digits.
    """

    def __init__(
        self,
        replica_id: str,
        *,
        wall_ms: int = 0,
        counter: int = 0,
        max_ahead_ms: int = MAX_FOLLOW_AHEAD_MS,
        now_ms: Callable[[], int] = now_ms,
    ) -> None:
        if not REPLICA_ID_PATTERN.match(replica_id):
            raise ValueError(f"replica id {replica_id!r} must be 1-64 of A-Z a-z 0-9 _ . : -")
        self.replica_id = replica_id
        self.wall_ms = wall_ms
        self.counter = counter
        self.max_ahead_ms = max_ahead_ms
        self._now_ms = now_ms

    def _advance(self, wall_ms: int, counter: int) -> None:
        # The counter is finite: on overflow the clock borrows a millisecond rather than fail.
        if counter > MAX_COUNTER:
            wall_ms, counter = wall_ms + 1, 0
        self.wall_ms, self.counter = wall_ms, counter

    def now(self) -> str:
        """A new hlc for a local event: greater than every hlc issued or observed before, unless
        the clock stood beyond its bound (then it is set back to wall time + bound first)."""
        physical = self._now_ms()
        bound = physical + self.max_ahead_ms
        if self.wall_ms > bound:
            self.wall_ms, self.counter = bound, 0
        if physical > self.wall_ms:
            self._advance(physical, 0)
        else:
            self._advance(self.wall_ms, self.counter + 1)
        return format_hlc(self.wall_ms, self.counter, self.replica_id)

    def current(self) -> str:
        return format_hlc(self.wall_ms, self.counter, self.replica_id)

    def skew_ms(self, hlc: str) -> int:
        """How far ``hlc`` is ahead of this replica's wall clock (negative when behind)."""
        return parse_hlc(hlc).wall_ms - self._now_ms()

    def observe(self, hlc: str) -> bool:
        """Move past a received hlc, but not past wall time + bound. Returns False when the hlc
        was beyond the bound (the clock then moved only up to the bound)."""
        remote = parse_hlc(hlc)
        bound = self._now_ms() + self.max_ahead_ms
        within = remote.wall_ms <= bound
        wall_ms, counter = (remote.wall_ms, remote.counter) if within else (bound, 0)
        if (wall_ms, counter) >= (self.wall_ms, self.counter):
            self._advance(wall_ms, counter + 1)
        return within


def hlc_wall_ms(hlc: str) -> int:
    """The wall time of an hlc already checked against ``HLC_PATTERN`` (no second match)."""
    return int(hlc[:WALL_DIGITS])
