"""The cross-language conformance vectors: change histories and the record views they produce.

``python -m tests.vectors.generate`` writes ``tests/vectors/*.json`` from ``sync.merge`` and
``clients/js/src/collections.js`` (the field policies and scope links the JS SDK merges by) from
``schemas.collections``. Both are committed; ``tests/unit/test_vectors.py`` regenerates them and
fails on any difference, and checks that the Python engine gives every view whatever the
delivery. ``clients/js/test/vectors.test.js`` runs the same deliveries through the JS SDK.

A vector holds ``changes`` (every distinct change of a history), ``deliveries`` (ways the same
set can reach a replica: batches of indexes into ``changes``, in arrival order; an index may come
again, as a duplicate or a relay does; a snapshot's ``facts`` are what supersession knows beyond
its heads, which a replica absorbs after the batch) and ``views`` (each record as ``GET /v1/records`` shows it,
by collection and id). Histories come from simulated replicas that edit offline, with preds from
their own heads, and pass changes to one another in random subsets (so a pred often names a
change that has not arrived yet, and changes reach a replica through a third one). Hand-made
histories cover what chance might miss: a delete naming a change that is no longer a head, a
delete concurrent with an edit, a restore, two replicas writing the same value.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from schemas.collections import COLLECTIONS, CollectionSpec
from schemas.protocol import AddChange, Change, DeleteChange, RemoveChange, SetChange
from sync.hlc import HybridClock
from sync.ids import uuid7
from sync.merge import (
    RecordKey,
    RecordState,
    absorb_snapshot,
    apply_batch,
    preds_to_look_up,
    record_view,
    snapshot_facts,
)

__all__ = ["JS_COLLECTIONS_PATH", "VECTORS_DIR", "apply_delivery", "js_collections", "vectors"]

VECTORS_DIR = Path(__file__).resolve().parent
JS_COLLECTIONS_PATH = VECTORS_DIR.parents[1] / "clients" / "js" / "src" / "collections.js"
RANDOM_HISTORIES = 16
START_MS = 1_764_000_000_000

_HOUSEHOLD_VALUES: dict[str, list[Any]] = {
    "phone": ["13800000000", "13900000002", "13700000003", None],
    "head_name": ["Li Wei", "Wang Fang", "Zhang Min"],
    "members_count": [1, 2, 3, 4],
    "moved_out": [True, False],
}
_RESIDENT_VALUES: dict[str, list[Any]] = {
    "name": ["Chen Jie", "Liu Yang", "Zhao Lei"],
    "birth_year": [1940, 1955, 1988],
    "skills": ["electrician", "nurse", "电工"],
}
_TAGS = ["elderly-alone", "empty-nest", "disabled", "party-member-retired"]


def _encode(value: Any) -> Any:
    return msgspec.to_builtins(value)


class _Sim:
    """A replica of the simulation: the merge engine over its own states, a clock, and the
    order in which changes reached it."""

    def __init__(self, name: str, make_id: Callable[[int], str], clock_offset_ms: int = 0) -> None:
        self.name = name
        self.now_ms = START_MS + clock_offset_ms
        self.clock = HybridClock(name, now_ms=lambda: self.now_ms)
        self.states: dict[RecordKey, RecordState] = {}
        self.known: set[str] = set()
        self.arrivals: list[Change] = []
        self._make_id = make_id

    def receive(self, changes: list[Change]) -> None:
        fresh: list[Change] = []
        for change in changes:
            if change.id not in self.known:
                self.known.add(change.id)
                fresh.append(change)
        for change in fresh:
            self.clock.observe(change.hlc)
        for key in {(c.collection, c.record_id) for c in fresh}:
            self.states.setdefault(key, RecordState())
        looked_up = preds_to_look_up(self.states, fresh)
        known_before = looked_up & (self.known - {c.id for c in fresh})
        apply_batch(self.states, fresh, known_before)
        self.arrivals.extend(fresh)

    def _base(self, key: RecordKey) -> dict[str, Any]:
        self.now_ms += 1
        return {
            "id": self._make_id(self.now_ms),
            "collection": key[0],
            "record_id": key[1],
            "hlc": self.clock.now(),
        }

    def heads(self, key: RecordKey) -> list[Change]:
        return list(self.states.get(key, RecordState()).heads.values())

    def field_heads(self, key: RecordKey, name: str) -> list[str]:
        return [c.id for c in self.heads(key) if not isinstance(c, DeleteChange) and c.field == name]

    def set(self, key: RecordKey, name: str, value: Any, extra_pred: tuple[str, ...] = ()) -> Change:
        pred = (*self.field_heads(key, name), *extra_pred)
        change = SetChange(**self._base(key), field=name, value=value, pred=pred)
        self.receive([change])
        return change

    def add(self, key: RecordKey, name: str, element: Any) -> Change:
        change = AddChange(**self._base(key), field=name, value=element)
        self.receive([change])
        return change

    def remove(self, key: RecordKey, name: str, element: Any) -> Change | None:
        adds = tuple(
            c.id
            for c in self.heads(key)
            if isinstance(c, AddChange) and c.field == name and c.value == element
        )
        if not adds:
            return None
        change = RemoveChange(**self._base(key), field=name, value=element, pred=adds)
        self.receive([change])
        return change

    def delete(self, key: RecordKey) -> Change:
        change = DeleteChange(**self._base(key), pred=tuple(c.id for c in self.heads(key)))
        self.receive([change])
        return change


@dataclass
class _History:
    name: str
    description: str
    changes: list[Change] = field(default_factory=list)
    sims: list[_Sim] = field(default_factory=list)


def _id_maker(rng: random.Random) -> Callable[[int], str]:
    return lambda unix_ms: uuid7(unix_ms, rng.randbytes(10))


def _views(changes: list[Change], collections: dict[str, CollectionSpec]) -> list[dict[str, Any]]:
    states: dict[RecordKey, RecordState] = {}
    apply_delivery(states, [changes])
    return [
        _encode(record_view(states[key], collections[key[0]], key[1]))
        for key in sorted(states)
        if states[key].heads
    ]


def apply_delivery(
    states: dict[RecordKey, RecordState],
    batches: list[list[Change]],
    facts: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Fold batches into ``states`` as a store does: a change already held is skipped, and the
    pred ids the merge asks about are answered from the changes held before the batch. Then
    ``facts`` (a snapshot's ``covered`` and ``pending`` of its records) are absorbed."""
    held: set[str] = set()
    for batch in batches:
        fresh: list[Change] = []
        for change in batch:
            if change.id not in held and change.id not in {c.id for c in fresh}:
                fresh.append(change)
        for change in fresh:
            states.setdefault((change.collection, change.record_id), RecordState())
        apply_batch(states, fresh, preds_to_look_up(states, fresh) & held)
        held.update(c.id for c in fresh)
    for record in facts:
        state = states[(record["collection"], record["id"])]
        absorb_snapshot(state, record["covered"], record["pending"], held.__contains__)


def _deliveries(history: _History, rng: random.Random) -> list[dict[str, Any]]:
    changes = history.changes
    index = {c.id: n for n, c in enumerate(changes)}
    count = len(changes)
    shuffled = [n for n in range(count) for _ in range(rng.randint(1, 3))]
    rng.shuffle(shuffled)
    batches: list[list[int]] = []
    while shuffled:
        size = rng.randint(1, 8)
        batches.append(shuffled[:size])
        shuffled = shuffled[size:]
    found: list[dict[str, Any]] = [
        {
            "name": "created",
            "about": "every change in the order it was made, one batch",
            "batches": [list(range(count))],
        },
        {
            "name": "reversed",
            "about": "newest first, one change a batch: every pred names a change not yet arrived",
            "batches": [[n] for n in reversed(range(count))],
        },
        {
            "name": "shuffled",
            "about": "random order and batches, each change one to three times",
            "batches": batches,
        },
    ]
    for sim in history.sims:
        arrived = [index[c.id] for c in sim.arrivals]
        rest = [n for n in range(count) if n not in set(arrived)]
        found.append(
            {
                "name": f"relayed-by-{sim.name}",
                "about": f"the order {sim.name} received them (others' changes through third replicas), then the rest",
                "batches": [arrived[i : i + 5] for i in range(0, len(arrived), 5)] + ([rest] if rest else []),
            }
        )
    states: dict[RecordKey, RecordState] = {}
    apply_delivery(states, [changes])
    heads = [index[c.id] for key in sorted(states) for c in states[key].heads.values()]
    facts = []
    for key in sorted(states):
        covered, pending = snapshot_facts(states[key])
        if covered or pending:
            facts.append({"collection": key[0], "id": key[1], "covered": covered, "pending": pending})
    found.append(
        {
            "name": "snapshot",
            "about": "the heads, as a snapshot of a compacted history holds them, and in `facts` what "
            "the snapshot carries beyond them (the heads a delete covers, ids named before they arrived)",
            "batches": [heads],
            "facts": facts,
        }
    )
    return found


def _random_history(seed: int) -> _History:
    rng = random.Random(seed)
    make_id = _id_maker(rng)
    sims = [
        _Sim(f"phone-{n}", make_id, clock_offset_ms=rng.choice([0, 0, -30_000, 600_000]))
        for n in range(rng.randint(2, 4))
    ]
    history = _History(
        f"random-{seed:02d}", "replicas editing offline and gossiping random subsets", sims=sims
    )
    records: list[RecordKey] = [("households", f"h-{n}") for n in range(rng.randint(1, 3))] + [
        ("residents", "r-1")
    ]
    for _ in range(rng.randint(20, 60)):
        sim = rng.choice(sims)
        sim.now_ms += rng.randint(0, 5_000)
        key = rng.choice(records)
        values = _HOUSEHOLD_VALUES if key[0] == "households" else _RESIDENT_VALUES
        roll = rng.random()
        made: Change | None
        if roll < 0.45:
            name = rng.choice(sorted(values))
            made = sim.set(key, name, rng.choice(values[name]))
        elif roll < 0.62:
            made = sim.add(key, "tags", rng.choice(_TAGS))
        elif roll < 0.75:
            made = sim.remove(key, "tags", rng.choice(_TAGS))
        elif roll < 0.85:
            made = sim.delete(key)
        else:
            # A restore or a resolution: a write naming the deletes it saw besides the field.
            deletes = tuple(c.id for c in sim.heads(key) if isinstance(c, DeleteChange))
            name = rng.choice(sorted(values))
            made = sim.set(key, name, rng.choice(values[name]), extra_pred=deletes)
        if made is not None:
            history.changes.append(made)
        if rng.random() < 0.4:
            source, target = rng.sample(sims, 2)
            subset = [c for c in source.arrivals if rng.random() < 0.6]
            target.receive(subset)
    return history


def _crafted() -> list[_History]:
    rng = random.Random(1000)
    make_id = _id_maker(rng)
    made: list[_History] = []
    h1: RecordKey = ("households", "h-1")

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History(
        "scalar-conflict", "two phones write different phones offline: both heads kept", sims=[a, b]
    )
    history.changes.append(a.set(h1, "phone", "13800000000"))
    b.receive(list(history.changes))
    history.changes += [a.set(h1, "phone", "13900000002"), b.set(h1, "phone", "13700000003")]
    made.append(history)

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History("same-value", "two phones write the same value: two heads, no conflict", sims=[a, b])
    history.changes += [a.set(h1, "head_name", "Li Wei"), b.set(h1, "head_name", "Li Wei")]
    made.append(history)

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History("add-wins", "a remove does not take an add it did not see", sims=[a, b])
    history.changes.append(a.add(h1, "tags", "elderly-alone"))
    b.receive(list(history.changes))
    history.changes.append(a.add(h1, "tags", "elderly-alone"))
    removed = b.remove(h1, "tags", "elderly-alone")
    assert removed is not None
    history.changes += [removed, b.add(h1, "tags", "empty-nest")]
    made.append(history)

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History(
        "delete-concurrent-edit",
        "a delete and an edit it did not see: the record stays, in conflict",
        sims=[a, b],
    )
    history.changes += [a.set(h1, "phone", "13800000000"), a.add(h1, "tags", "disabled")]
    b.receive(list(history.changes))
    history.changes += [a.delete(h1), b.set(h1, "phone", "13900000002")]
    made.append(history)

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History("delete-then-restore", "a write naming the delete brings the record back", sims=[a, b])
    history.changes += [a.set(h1, "phone", "13800000000"), a.set(h1, "head_name", "Li Wei")]
    deleted = a.delete(h1)
    history.changes.append(deleted)
    b.receive(list(history.changes))
    history.changes.append(b.set(h1, "head_name", "Wang Fang", extra_pred=(deleted.id,)))
    made.append(history)

    a, b, c = _Sim("phone-a", make_id), _Sim("phone-b", make_id), _Sim("phone-c", make_id)
    history = _History(
        "delete-names-non-head",
        "a delete names a value another phone has superseded meanwhile, relayed through a third phone",
        sims=[a, b, c],
    )
    first = a.set(h1, "phone", "13800000000")
    history.changes.append(first)
    b.receive([first])
    second = a.set(h1, "phone", "13900000002")
    history.changes += [second, b.delete(h1)]
    c.receive([history.changes[-1]])
    third = c.set(h1, "phone", "13700000003")
    history.changes.append(third)
    a.receive(c.arrivals)
    history.changes.append(a.delete(h1))
    made.append(history)

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History(
        "delete-covers-through-chain",
        "a second delete names only the first, which named a value: the value stays covered, "
        "which a snapshot's heads alone do not tell",
        sims=[a, b],
    )
    history.changes.append(a.set(h1, "phone", "13800000000"))
    first_delete = a.delete(h1)
    history.changes.append(first_delete)
    b.receive([first_delete])
    history.changes.append(b.delete(h1))
    made.append(history)

    a, b = _Sim("phone-a", make_id), _Sim("phone-b", make_id)
    history = _History("delete-chain", "deletes naming earlier deletes, and a late edit", sims=[a, b])
    history.changes += [a.set(h1, "phone", "13800000000"), a.delete(h1)]
    b.receive(list(history.changes))
    history.changes += [b.delete(h1), a.delete(h1), a.set(h1, "members_count", 2)]
    made.append(history)
    return made


def vectors() -> dict[str, dict[str, Any]]:
    """Every vector by file name."""
    histories = _crafted() + [_random_history(seed) for seed in range(RANDOM_HISTORIES)]
    found: dict[str, dict[str, Any]] = {}
    for history in histories:
        rng = random.Random(history.name)
        found[f"{history.name}.json"] = {
            "name": history.name,
            "description": history.description,
            "changes": _encode(history.changes),
            "deliveries": _deliveries(history, rng),
            "views": _views(history.changes, COLLECTIONS),
        }
    return found


def js_collections() -> str:
    """``clients/js/src/collections.js``: what the JS SDK must know of each collection."""
    described: dict[str, Any] = {}
    for name, spec in COLLECTIONS.items():
        described[name] = {
            "fields": {f.name: f.policy for f in spec.fields.values()},
            "scopeSelf": spec.scope_self,
            "scopeLinks": list(spec.scope_links),
            "refs": {f.name: f.ref for f in spec.fields.values() if f.ref is not None},
        }
    body = msgspec.json.format(msgspec.json.encode(described), indent=2).decode()
    return (
        "// Generated by `python -m tests.vectors.generate` from schemas/collections.py: do not edit.\n"
        "// Each collection's fields with their merge policy, and the links that place a record.\n\n"
        '/** @type {Record<string, import("./merge.js").CollectionSpec>} */\n'
        f"export const COLLECTIONS = {body};\n"
    )


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    files = {
        VECTORS_DIR / name: msgspec.json.format(msgspec.json.encode(vector), indent=1).decode() + "\n"
        for name, vector in vectors().items()
    }
    files[JS_COLLECTIONS_PATH] = js_collections()
    return files


def main() -> None:
    for path in VECTORS_DIR.glob("*.json"):
        path.unlink()
    for path, text in render().items():
        path.write_text(text, encoding="utf-8")
    sys.stdout.write(
        f"wrote {len(list(VECTORS_DIR.glob('*.json')))} vectors and {JS_COLLECTIONS_PATH.name}\n"
    )


if __name__ == "__main__":
    main()
