"""The JS SDK's merge against the Python engine on the same work: every delivery of every
conformance vector (tests/vectors/) folded into fresh record states, the way a phone folds what
it receives (skip changes held, ask the store about preds, apply the batch). Changes per second
of each, and their ratio (target: the SDK at least as fast as the Python engine)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.harness import Measure
from schemas.protocol import Change
from sync.merge import RecordKey, RecordState, apply_batch, preds_to_look_up

__all__ = ["sdk_merge"]

_ROOT = Path(__file__).resolve().parent.parent
_VECTORS = _ROOT / "tests" / "vectors"
_SCRIPT = Path(__file__).resolve().parent / "sdk_merge.mjs"


def _deliveries() -> list[list[list[Change]]]:
    found: list[list[list[Change]]] = []
    for path in sorted(_VECTORS.glob("*.json")):
        vector = json.loads(path.read_text(encoding="utf-8"))
        changes = msgspec.convert(vector["changes"], list[Change])
        found += [[[changes[n] for n in batch] for batch in d["batches"]] for d in vector["deliveries"]]
    return found


def _fold(batches: list[list[Change]]) -> int:
    states: dict[RecordKey, RecordState] = {}
    held: set[str] = set()
    for batch in batches:
        fresh: dict[str, Change] = {}
        for change in batch:
            if change.id not in held and change.id not in fresh:
                fresh[change.id] = change
        for change in fresh.values():
            if (change.collection, change.record_id) not in states:
                states[(change.collection, change.record_id)] = RecordState()
        apply_batch(states, fresh.values(), preds_to_look_up(states, fresh.values()) & held)
        held.update(fresh)
    return len(states)


def _python_rates(rounds: int, repeats: int) -> tuple[int, list[float]]:
    deliveries = _deliveries()
    changes = sum(len(batch) for batches in deliveries for batch in batches)
    for batches in deliveries * repeats:  # warm up, as the JS side does
        _fold(batches)
    seconds: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            for batches in deliveries:
                _fold(batches)
        seconds.append(time.perf_counter() - start)
    return changes * repeats, seconds


async def sdk_merge(rounds: int = 5, repeats: int = 20) -> dict[str, Any]:
    """Changes folded per second by each engine, median of ``rounds`` rounds of ``repeats``
    passes over every delivery."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the SDK's merge benchmark needs Node.js 20+ on PATH")
    changes, seconds = await asyncio.to_thread(_python_rates, rounds, repeats)
    python = Measure([changes / s for s in seconds])
    process = await asyncio.create_subprocess_exec(
        node, str(_SCRIPT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate(json.dumps({"rounds": rounds, "repeats": repeats}).encode())
    if process.returncode != 0:
        raise RuntimeError(f"node {_SCRIPT.name} exited with {process.returncode}")
    found = json.loads(out)
    js = Measure([found["changes"] / s for s in found["seconds"]])
    python_rates, js_rates = python.summary(), js.summary()
    return {
        "changes_per_round": changes,
        "python_changes_per_s": python_rates,
        "js_changes_per_s": js_rates,
        "js_to_python": js_rates["median"] / python_rates["median"],
    }
