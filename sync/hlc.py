"""Hybrid logical clocks.

An hlc is ``<wall ms, 15 digits>-<counter, 6 digits>-<replica_id>``: fixed-width numbers make
string order equal to clock order, and the replica id breaks ties between devices.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "HLC_PATTERN",
    "REPLICA_ID_PATTERN",
    "HybridClock",
    "Timestamp",
    "format_hlc",
    "hlc_wall_ms",
    "parse_hlc",
]

WALL_DIGITS = 15
COUNTER_DIGITS = 6
MAX_COUNTER = 10**COUNTER_DIGITS - 1
REPLICA_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
HLC_PATTERN = re.compile(r"^(\d{15})-(\d{6})-([A-Za-z0-9_.:-]{1,64})$")


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


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """A replica's clock: never goes backwards, and moves past every hlc it observes.

    ``max_ahead_ms`` bounds how far a remote hlc may drag this clock past its own wall time;
    a remote hlc beyond that (a phone with a wrong date) is reported and otherwise ignored,
    so one bad device cannot push everyone's clock into the future. ``None`` means no bound,
    which is what a phone uses: it follows the server, whatever the server says.
    """

    def __init__(
        self,
        replica_id: str,
        *,
        wall_ms: int = 0,
        counter: int = 0,
        max_ahead_ms: int | None = None,
        now_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        if not REPLICA_ID_PATTERN.match(replica_id):
            raise ValueError(f"replica id {replica_id!r} must be 1-64 of A-Z a-z 0-9 _ . : -")
        self.replica_id = replica_id
        self.wall_ms = wall_ms
        self.counter = counter
        self.max_ahead_ms = max_ahead_ms
        self._now_ms = now_ms

    def _advance(self, wall_ms: int, counter: int) -> None:
        # The counter is finite: on overflow the clock borrows a millisecond rather than fail,
        # so even a clock stuck far in the future keeps issuing increasing hlcs.
        if counter > MAX_COUNTER:
            wall_ms, counter = wall_ms + 1, 0
        self.wall_ms, self.counter = wall_ms, counter

    def now(self) -> str:
        """A new hlc for a local event, greater than every hlc issued or observed before."""
        physical = self._now_ms()
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
        """Move past a received hlc. Returns False when it was too far ahead to follow."""
        remote = parse_hlc(hlc)
        if self.max_ahead_ms is not None and remote.wall_ms - self._now_ms() > self.max_ahead_ms:
            return False
        if (remote.wall_ms, remote.counter) >= (self.wall_ms, self.counter):
            self._advance(remote.wall_ms, remote.counter + 1)
        return True


def hlc_wall_ms(hlc: str) -> int:
    """The wall time of an hlc already checked against ``HLC_PATTERN`` (no second match)."""
    return int(hlc[:WALL_DIGITS])
