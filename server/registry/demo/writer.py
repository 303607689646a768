"""Changes as a phone makes them: deterministic ids, hlcs at the event's time, and the ``pred``
of every later write of a field naming the earlier one. Change ids are UUIDv7s of the event's
time, as the phones make them (sync/ids.py), with the writer's counter in their first random
bits (RFC 9562, method 1), so that ids sort as the clocks do: pushed in clock order, the log's
unique index on them grows at its right edge. ``as_phone`` writes as another replica
from what it last saw, which is how the demo simulates offline phones that disagree."""

from __future__ import annotations

import datetime
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas.protocol import AddChange, Change, SetChange

__all__ = ["CHINA", "DEMO_REPLICA", "Writer", "at_day", "moment"]

DEMO_REPLICA = "demo"
CHINA = datetime.timezone(datetime.timedelta(hours=8))


def moment(rng: random.Random, now: datetime.datetime, days_ago_max: int) -> datetime.datetime:
    """A working-hours moment in the last ``days_ago_max`` days, never after ``now``."""
    day = (now - datetime.timedelta(days=rng.randint(1, days_ago_max))).date()
    return min(at_day(day, rng.randint(8, 17), rng.randint(0, 59)), now)


def at_day(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour, minute), CHINA)


def _wire(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


@dataclass
class Writer:
    rng: random.Random
    changes: list[Change] = field(default_factory=list)
    heads: dict[tuple[str, str, str], str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)
    # The moment of the last change and its formatted millisecond (id and hlc prefixes).
    _at: datetime.datetime | None = None
    _prefixes: tuple[str, str] = ("", "")

    def _stamp(self, at: datetime.datetime, replica: str = DEMO_REPLICA) -> tuple[str, str]:
        """A new change's id and hlc at ``at``. The id is the UUIDv7 of that millisecond with the
        writer's counter in its first 30 random bits (RFC 9562, method 1): a registry written
        in one millisecond still sorts in the order it was written."""
        if at is not self._at:
            # A record's fields are written at one moment: its millisecond is formatted once.
            wall_ms = int(at.timestamp() * 1000)
            self._at = at
            self._prefixes = (f"{wall_ms >> 16:08x}-{wall_ms & 0xFFFF:04x}-", f"{wall_ms:015d}-")
        count = next(self.counter)
        id_prefix, hlc_prefix = self._prefixes
        change_id = id_prefix + "%04x-%04x-%012x" % (  # noqa: UP031 (the fastest of the formats)
            0x7000 | count >> 18 & 0xFFF,
            0x8000 | (count & 0x3FFFF) >> 4,
            (count & 0xF) << 44 | self.rng.getrandbits(44),
        )
        return change_id, f"{hlc_prefix}{count % 1_000_000:06d}-{replica}"

    def in_clock_order(self, first: int = 0) -> list[Change]:
        """The changes in the order to push them: the first ``first`` as written (the registry,
        typed in when the system is set up), the rest in the order of their clocks (their ids
        sort so), as phones that synced as they went would have sent them. Every ``pred`` comes
        before the change that names it either way."""
        return self.changes[:first] + sorted(self.changes[first:], key=lambda change: change.id)

    def set(
        self,
        collection: str,
        record_id: str,
        name: str,
        value: Any,
        at: datetime.datetime,
        *,
        replica: str = DEMO_REPLICA,
        pred: tuple[str, ...] | None = None,
    ) -> str:
        key = (collection, record_id, name)
        if pred is None:
            pred = (self.heads[key],) if key in self.heads else ()
        change_id, hlc = self._stamp(at, replica)
        self.heads[key] = change_id
        self.changes.append(
            SetChange(
                id=change_id,
                collection=collection,
                record_id=record_id,
                field=name,
                value=_wire(value),
                hlc=hlc,
                pred=pred,
            )
        )
        return change_id

    def offline_pair(
        self,
        collection: str,
        record_id: str,
        name: str,
        values: tuple[Any, Any],
        at: datetime.datetime,
        phones: tuple[str, str],
    ) -> None:
        """Two phones that both saw the current value write different ones while offline: the
        server keeps both, and the conflict inbox shows them."""
        seen = self.heads.get((collection, record_id, name))
        pred = (seen,) if seen else ()
        for minutes, (value, phone) in enumerate(zip(values, phones, strict=True)):
            when = at + datetime.timedelta(minutes=minutes)
            self.set(collection, record_id, name, value, when, replica=phone, pred=pred)

    def record(self, collection: str, record_id: str, when: datetime.datetime, **values: Any) -> None:
        """Write a record's fields; a list or set value is a set field, written with ``add``."""
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, list | set | tuple):
                for element in sorted(value):
                    change_id, hlc = self._stamp(when)
                    self.changes.append(
                        AddChange(
                            id=change_id,
                            collection=collection,
                            record_id=record_id,
                            field=name,
                            value=element,
                            hlc=hlc,
                        )
                    )
            else:
                self.set(collection, record_id, name, value, when)
