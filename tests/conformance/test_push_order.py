"""Pushes that arrive together take turns, in arrival order, and each gets exactly the outcome
it would have had alone."""

from __future__ import annotations

import asyncio

from server.sync.store import SyncStore
from tests.factories import set_


async def test_pushes_written_together_judge_each_other_as_if_one_came_after_the_other(
    store: SyncStore,
) -> None:
    first = set_("phone", "13800000001", record="h-group")
    reused = set_("phone", "13800000009", record="h-group", id=first.id)
    follow_up = set_("phone", "13800000002", record="h-group", pred=(first.id,))
    concurrent = set_("phone", "13800000003", record="h-group", replica="r2")

    outcomes = await asyncio.gather(
        store.writer.push(None, "r1", [first]),
        store.writer.push(None, "r1", [first]),
        store.writer.push(None, "r3", [reused]),
        store.writer.push(None, "r1", [follow_up]),
        store.writer.push(None, "r1", [follow_up]),
        store.writer.push(None, "r2", [concurrent]),
    )

    statuses = [[(r.status, r.code) for r in outcome.results] for outcome in outcomes]
    assert statuses == [
        [("applied", None)],
        [("duplicate", None)],
        [("rejected", "id_reused")],
        [("applied", None)],
        [("duplicate", None)],
        [("applied", None)],
    ]
    # The follow-up superseded the first write; the concurrent write conflicts with it, but the
    # follow-up's own answer was given as of its place in the order, before that write arrived.
    assert outcomes[3].results[0].conflict is False
    assert outcomes[5].results[0].conflict is True
    cursors = [int(outcome.cursor.rpartition(".")[2]) for outcome in outcomes]
    assert cursors == [1, 1, 1, 2, 2, 3]
    view = await store.records.view("households", "h-group")
    assert sorted(head.value for head in view.conflicts["phone"]) == ["13800000002", "13800000003"]
