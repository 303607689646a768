"""Realistic household changes, made the way phones make them: a new household is a handful of
field writes and tag adds; later visits edit one field and name the head they saw in ``pred``;
every change id is a time-ordered UUIDv7, as the reference client's (``sync.client``).

Until the domain collections (visits, residents) land, every change is a household change.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from schemas.protocol import AddChange, Change, SetChange
from sync.client import uuid7
from sync.hlc import format_hlc

__all__ = ["COLLECTION", "HouseholdWorkload", "change_row", "household_doc", "place_of", "push_body"]

COLLECTION = "households"
_STREETS = ["Heping Rd", "Jiefang St", "Renmin Ave", "Xinhua Ln", "Minzhu Rd", "Guangming St"]
_NAMES = ["Li Wei", "Wang Fang", "Zhang Min", "Liu Yang", "Chen Jing", "Zhao Lei", "Sun Li", "Zhou Tao"]
_TAGS = ["elderly-alone", "disability", "low-income", "party-member", "new-resident", "rental"]
_NOTES = [
    "Visited after work hours; the daughter answered.",
    "Asked about the water meter replacement schedule.",
    "Needs a follow-up visit about the subsidy form.",
    "",
]
_json = msgspec.json.Encoder()


@dataclass
class HouseholdWorkload:
    """A deterministic stream of household changes from one simulated district.

    ``edit_share`` of the changes edit an existing household (one field, with ``pred``); the rest
    create new households. Heads are tracked so that every pred names the current head.
    """

    seed: int = 7
    edit_share: float = 0.3
    replica_id: str = "bench-phone"
    prefix: str = "h"
    wall_ms: int = 1_764_000_000_000
    # When set, every new household is placed in this building (its first change), so that a
    # grid worker of the building's grid may write it (``place_of``).
    building: str | None = None
    _random: random.Random = field(init=False)
    _heads: dict[tuple[str, str], str] = field(init=False, default_factory=dict)
    _households: list[str] = field(init=False, default_factory=list)
    _counter: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def _id(self) -> str:
        # As the reference client makes them (UUIDv7, time-ordered), stamped with the workload's
        # clock, so the stream is the same on every run.
        return uuid7(self.wall_ms + self._counter // 1000, self._random.randbytes(10))

    def _hlc(self) -> str:
        self._counter += 1
        return format_hlc(self.wall_ms + self._counter // 1000, self._counter % 1000, self.replica_id)

    def _set(self, record_id: str, name: str, value: Any) -> Change:
        key = (record_id, name)
        pred = (self._heads[key],) if key in self._heads else ()
        change = SetChange(
            id=self._id(),
            collection=COLLECTION,
            record_id=record_id,
            hlc=self._hlc(),
            pred=pred,
            field=name,
            value=value,
        )
        self._heads[key] = change.id
        return change

    def household(self, number: int) -> list[Change]:
        """The changes that create household ``number`` (about 6.5 of them)."""
        rnd = self._random
        record_id = f"{self.prefix}-{number:07d}"
        self._households.append(record_id)
        placed = [] if self.building is None else [self._set(record_id, "building_id", self.building)]
        made = [
            *placed,
            self._set(
                record_id,
                "address",
                f"{rnd.randint(1, 400)} {rnd.choice(_STREETS)}, unit {rnd.randint(1, 30)}",
            ),
            self._set(record_id, "head_name", rnd.choice(_NAMES)),
            self._set(record_id, "phone", f"138{rnd.randint(0, 99_999_999):08d}"),
            self._set(record_id, "members_count", rnd.randint(1, 7)),
        ]
        for tag in rnd.sample(_TAGS, rnd.randint(1, 2)):
            made.append(
                AddChange(
                    id=self._id(),
                    collection=COLLECTION,
                    record_id=record_id,
                    hlc=self._hlc(),
                    field="tags",
                    value=tag,
                )
            )
        if rnd.random() < 0.5:
            made.append(self._set(record_id, "notes", rnd.choice(_NOTES)))
        return made

    def edit(self) -> Change:
        """One visit's edit of an existing household: a new phone, head count or note."""
        return self.edit_of(self._random.choice(self._households))

    def edit_of(self, record_id: str) -> Change:
        """One visit's edit of the given household."""
        rnd = self._random
        name = rnd.choice(["phone", "members_count", "notes"])
        value: Any = {
            "phone": f"139{rnd.randint(0, 99_999_999):08d}",
            "members_count": rnd.randint(1, 7),
            "notes": rnd.choice(_NOTES),
        }[name]
        return self._set(record_id, name, value)

    def changes(self, count: int) -> list[Change]:
        """Exactly ``count`` changes: new households, with edits of earlier ones mixed in."""
        made: list[Change] = []
        for change in self._stream():
            made.append(change)
            if len(made) == count:
                break
        return made

    def _stream(self) -> Iterator[Change]:
        number = 0
        while True:
            if self._households and self._random.random() < self.edit_share:
                yield self.edit()
            else:
                number += 1
                yield from self.household(number)


def place_of(building: str, grid: str, community: str) -> list[Change]:
    """The community, grid and building records a placed workload's households live in, as the
    community office would have entered them."""
    made: list[Change] = []
    for n, (collection, record_id, name, value) in enumerate(
        [
            ("communities", community, "name", "Bench Community"),
            ("grids", grid, "community_id", community),
            ("buildings", building, "grid_id", grid),
        ],
        1,
    ):
        hlc = format_hlc(1_763_000_000_000 + n, 0, "office")
        made.append(
            SetChange(
                id=str(uuid.UUID(int=n, version=4)),
                collection=collection,
                record_id=record_id,
                hlc=hlc,
                field=name,
                value=value,
            )
        )
    return made


def push_body(replica_id: str, batch: list[Change]) -> bytes:
    return _json.encode({"replica_id": replica_id, "protocol": 1, "changes": batch})


def change_row(seq: int, change: Change, device_id: str | None, now_ms: int) -> tuple[Any, ...]:
    """The row the server stores for a change: the raw baseline inserts exactly these."""
    return (
        seq,
        change.id,
        change.collection,
        change.record_id,
        change.field,
        type(change).__name__.removesuffix("Change").lower(),
        _json.encode(change.value).decode(),
        change.hlc,
        _json.encode(change.pred).decode(),
        device_id,
        now_ms,
    )


def household_doc(changes: list[Change]) -> dict[str, Any]:
    """The same household as one CouchDB document (for the peer)."""
    doc: dict[str, Any] = {"_id": changes[0].record_id, "type": "household", "tags": []}
    for change in changes:
        if isinstance(change, AddChange):
            doc["tags"].append(change.value)
        else:
            doc[str(change.field)] = change.value
    return doc
