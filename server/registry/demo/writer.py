"""Changes as a phone makes them: deterministic ids, hlcs at the event's time, and the ``pred``
of every later write of a field naming the earlier one. ``as_phone`` writes as another replica
from what it last saw, which is how the demo simulates offline phones that disagree."""

from __future__ import annotations

import datetime
import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas.protocol import AddChange, Change, SetChange
from sync.hlc import format_hlc

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

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _hlc(self, at: datetime.datetime, replica: str = DEMO_REPLICA) -> str:
        return format_hlc(int(at.timestamp() * 1000), next(self.counter) % 1_000_000, replica)

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
        change_id = self._id()
        self.heads[key] = change_id
        self.changes.append(
            SetChange(
                id=change_id,
                collection=collection,
                record_id=record_id,
                field=name,
                value=_wire(value),
                hlc=self._hlc(at, replica),
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
                self.set(collection, record_id, name, value, when)
