"""The cross-language conformance vectors (tests/vectors/): they are what the generator makes
from ``sync.merge`` today, and the Python engine and reference client give every view of each,
whatever the delivery. The JS SDK runs the same files (clients/js/test/vectors.test.js)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.collections import COLLECTIONS
from schemas.protocol import Change, RecordFacts
from sync.client import Replica
from sync.merge import RecordKey, RecordState, record_view
from tests.vectors.generate import VECTORS_DIR, apply_delivery, render

_VECTORS = sorted(VECTORS_DIR.glob("*.json"))


def _load(path: Path) -> tuple[dict[str, Any], list[Change]]:
    vector = json.loads(path.read_text(encoding="utf-8"))
    return vector, msgspec.convert(vector["changes"], list[Change])


def _batches(delivery: dict[str, Any], changes: list[Change]) -> list[list[Change]]:
    return [[changes[n] for n in batch] for batch in delivery["batches"]]


def test_the_committed_vectors_are_what_the_generator_makes() -> None:
    rendered = render()
    on_disk = {path: path.read_text(encoding="utf-8") for path in _VECTORS}
    assert {p for p in rendered if p.suffix == ".json"} == set(on_disk), (
        "run: python -m tests.vectors.generate"
    )
    for path, text in rendered.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} drifted: run python -m tests.vectors.generate"
        )


def test_the_vectors_cover_what_chance_might_miss() -> None:
    names = {path.stem for path in _VECTORS}
    assert {
        "delete-names-non-head",
        "delete-covers-through-chain",
        "delete-concurrent-edit",
        "delete-then-restore",
        "add-wins",
    } <= names
    kinds = {d["name"].split("-by-")[0] for path in _VECTORS for d in _load(path)[0]["deliveries"]}
    assert {"created", "reversed", "shuffled", "relayed", "snapshot"} <= kinds
    assert any(d.get("facts") for path in _VECTORS for d in _load(path)[0]["deliveries"])
    views = [view for path in _VECTORS for view in _load(path)[0]["views"]]
    assert any(view["deleted"] for view in views)
    assert any("_deleted" in view["conflicts"] for view in views)
    assert any(set(view["conflicts"]) - {"_deleted"} for view in views)


@pytest.mark.parametrize("path", _VECTORS, ids=lambda p: p.stem)
def test_the_python_engine_gives_every_view_whatever_the_delivery(path: Path) -> None:
    vector, changes = _load(path)
    for delivery in vector["deliveries"]:
        states: dict[RecordKey, RecordState] = {}
        apply_delivery(states, _batches(delivery, changes), delivery.get("facts", []))
        views = [
            msgspec.to_builtins(record_view(states[key], COLLECTIONS[key[0]], key[1]))
            for key in sorted(states)
            if states[key].heads
        ]
        assert views == vector["views"], delivery["name"]


@pytest.mark.parametrize("path", _VECTORS, ids=lambda p: p.stem)
def test_the_reference_client_gives_every_view_whatever_the_delivery(path: Path, tmp_path: Path) -> None:
    vector, changes = _load(path)
    expected = {(view["collection"], view["id"]): view for view in vector["views"]}
    for number, delivery in enumerate(vector["deliveries"]):
        replica = Replica(tmp_path / f"{number}.db", "phone-v")
        batches = _batches(delivery, changes)
        facts = msgspec.convert(delivery.get("facts", []), list[RecordFacts])
        for index, batch in enumerate(batches):
            # A snapshot's facts come with its page.
            replica._fold(batch, "synced", facts if index == len(batches) - 1 else ())
        held = {
            (view.collection, view.id): msgspec.to_builtins(view)
            for collection in ("households", "residents")
            for view in replica.records(collection)
        }
        # A record that got only removes has a row but no heads: nothing to show, as in the views.
        shown = {
            key: view for key, view in held.items() if view["deleted"] or view["fields"] or view["conflicts"]
        }
        assert shown == expected, delivery["name"]
        replica.close()
