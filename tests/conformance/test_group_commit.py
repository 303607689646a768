"""Pushes that arrive together share one transaction, and behave exactly as if each had its own:
applied in arrival order, each seeing the ones before it, and one failing push costs the others
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import event, func, select

from schemas.protocol import Change
from server.db.tables import changes
from server.sync.store import SyncStore
from sync.merge import RecordKey, RecordState
from tests.factories import set_


def _count_commits(store: SyncStore) -> list[int]:
    commits = [0]

    def on_commit(_connection: Any) -> None:
        commits[0] += 1

    event.listen(store.engine.sync_engine, "commit", on_commit)
    return commits


async def _logged(store: SyncStore) -> int:
    async with store.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(changes))).scalar_one())


async def test_pushes_that_arrive_together_share_a_commit(store: SyncStore) -> None:
    pushes = 40
    commits = _count_commits(store)
    batches = [[set_("notes", f"p{n}-{i}", record=f"h{n}") for i in range(3)] for n in range(pushes)]
    outcomes = await asyncio.gather(
        *(store.writer.push(None, f"phone-{n}", b) for n, b in enumerate(batches))
    )
    assert all(r.status == "applied" for o in outcomes for r in o.results)
    assert commits[0] < pushes  # grouped: fewer commits than pushes
    assert await _logged(store) == pushes * 3
    # Each push's cursor covers its own changes and those of the pushes before it in its group.
    seqs = sorted(int(o.cursor.split(".")[1]) for o in outcomes)
    assert seqs == [3 * (n + 1) for n in range(pushes)]


async def test_a_change_pushed_twice_in_one_group_is_applied_once(store: SyncStore) -> None:
    change = set_("notes", "once")
    first, second = await asyncio.gather(
        store.writer.push(None, "phone-a", [change]), store.writer.push(None, "phone-b", [change])
    )
    assert sorted([first.results[0].status, second.results[0].status]) == ["applied", "duplicate"]
    assert await _logged(store) == 1


async def test_a_group_holding_a_logged_change_is_written_again_whole(store: SyncStore) -> None:
    # A group's ids are not looked up in the log at first: the log's unique index refuses the
    # one it holds, and the whole group is written again with the lookup, each push answered
    # as if it had been alone.
    logged = set_("notes", "sent before", record="h1")
    await store.writer.push(None, "phone-a", [logged])
    again, other = set_("notes", "new", record="h2"), set_("notes", "other", record="h3")
    first, second = await asyncio.gather(
        store.writer.push(None, "phone-a", [logged, again]), store.writer.push(None, "phone-b", [other])
    )
    assert [r.status for r in first.results] == ["duplicate", "applied"]
    assert [r.status for r in second.results] == ["applied"]
    assert await _logged(store) == 3
    assert sorted(int(o.cursor.split(".")[1]) for o in (first, second)) == [2, 3]


async def test_later_pushes_of_a_group_see_the_earlier_ones(store: SyncStore) -> None:
    created = set_("notes", "first")
    edited = set_("notes", "second", pred=(created.id,))
    concurrent = set_("notes", "other")  # names nothing: concurrent with created
    await asyncio.gather(
        store.writer.push(None, "phone-a", [created]),
        store.writer.push(None, "phone-a", [edited]),
        store.writer.push(None, "phone-b", [concurrent]),
    )
    view = await store.records.view("households", "h1")
    # edited superseded created; concurrent stays beside it: one conflict of two heads, not three.
    assert {h.value for h in view.conflicts["notes"]} == {"second", "other"}


class _RefusedError(Exception):
    pass


async def test_a_push_refused_by_its_check_fails_alone(store: SyncStore) -> None:
    def refuse(_states: Mapping[RecordKey, RecordState]) -> None:
        raise _RefusedError

    kept = [set_("notes", f"kept-{n}", record=f"h{n}") for n in range(4)]
    refused = set_("notes", "refused", record="h9")
    tasks = [asyncio.create_task(store.writer.push(None, "phone", [c])) for c in kept[:2]]
    tasks.append(asyncio.create_task(store.writer.push(None, "admin", [refused], check=refuse)))
    tasks += [asyncio.create_task(store.writer.push(None, "phone", [c])) for c in kept[2:]]
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], _RefusedError)
    assert [o.results[0].status for o in done if not isinstance(o, BaseException)] == ["applied"] * 4
    assert await _logged(store) == 4


async def test_a_push_failing_after_its_writes_leaves_nothing_and_the_others_are_kept(
    store: SyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = store.conflict_tracker.track

    async def failing_for_h9(connection: Any, states: Any, *args: Any, **kwargs: Any) -> None:
        if ("households", "h9") in states:
            raise RuntimeError("the tracker broke on h9")
        await original(connection, states, *args, **kwargs)

    monkeypatch.setattr(store.conflict_tracker, "track", failing_for_h9)
    batches: list[list[Change]] = [[set_("notes", f"n{n}", record=f"h{n}")] for n in range(6)]
    batches.insert(3, [set_("notes", "broken", record="h9")])
    done = await asyncio.gather(
        *(store.writer.push(None, "phone", b) for b in batches), return_exceptions=True
    )
    assert isinstance(done[3], RuntimeError)
    assert sum(1 for o in done if not isinstance(o, BaseException)) == 6
    assert await _logged(store) == 6
    with pytest.raises(Exception, match="no record"):
        await store.records.view("households", "h9")
    # The seqs stay gapless: the failed push's changes took none.
    async with store.engine.connect() as connection:
        seqs = (await connection.execute(select(changes.c.seq).order_by(changes.c.seq))).scalars().all()
    assert list(seqs) == list(range(1, 7))


@pytest.mark.parametrize("position", [3, 6])
async def test_a_push_failing_while_the_log_is_written_leaves_nothing(
    store: SyncStore, monkeypatch: pytest.MonkeyPatch, position: int
) -> None:
    # The group's log rows are written while its last push's merge runs: a failure there (the
    # last push, position 6) must wait for that write and still leave nothing of the group.
    from server.sync import push as writer

    original = writer.resolve_scopes

    def failing_for_h9(collections: Any, states: Any, *args: Any) -> Any:
        if ("households", "h9") in states:
            raise RuntimeError("the scopes broke on h9")
        return original(collections, states, *args)

    monkeypatch.setattr(writer, "resolve_scopes", failing_for_h9)
    batches: list[list[Change]] = [[set_("notes", f"n{n}", record=f"h{n}")] for n in range(6)]
    batches.insert(position, [set_("notes", "broken", record="h9")])
    done = await asyncio.gather(
        *(store.writer.push(None, "phone", b) for b in batches), return_exceptions=True
    )
    assert isinstance(done[position], RuntimeError)
    assert sum(1 for o in done if not isinstance(o, BaseException)) == 6
    async with store.engine.connect() as connection:
        seqs = (await connection.execute(select(changes.c.seq).order_by(changes.c.seq))).scalars().all()
    assert list(seqs) == list(range(1, 7))
    with pytest.raises(Exception, match="no record"):
        await store.records.view("households", "h9")


async def test_rules_see_records_and_changes_of_earlier_pushes_in_the_group(store: SyncStore) -> None:
    household = set_("notes", "new household", record="h-new")
    visit = set_("household_id", "h-new", collection="visits", record="v1")
    submitted = set_("status", "submitted", collection="requests", record="r1")
    dispatched = set_("status", "dispatched", collection="requests", record="r1", pred=(submitted.id,))
    # Made by a phone that saw only "submitted" (no longer a head): judged from that value, which
    # an earlier push of the group wrote and the log does not hold yet.
    skipping = set_("status", "accepted", collection="requests", record="r1", pred=(submitted.id,))
    outcomes = await asyncio.gather(
        store.writer.push(None, "phone-a", [household]),
        store.writer.push(None, "phone-b", [visit]),  # names the household of the push before it
        store.writer.push(None, "phone-c", [submitted]),
        store.writer.push(None, "phone-c", [dispatched]),  # a legal move from the value the push before wrote
        store.writer.push(None, "phone-d", [skipping]),
    )
    assert [o.results[0].status for o in outcomes[:4]] == ["applied"] * 4
    assert outcomes[4].results[0].code == "illegal_transition_from_submitted"
    request = await store.records.view("requests", "r1")
    assert request.fields["status"] == "dispatched"
    visited = await store.records.view("visits", "v1")
    assert visited.fields["household_id"] == "h-new"


async def test_a_write_failing_after_the_log_leaves_no_rows(
    store: SyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log and records rows (binary COPYs on PostgreSQL, executemany on SQLite) are written
    in the group's transaction: when the statement after them fails, none of them stays."""
    statements = store.writer._sql
    monkeypatch.setattr(statements, "advance_counter", "UPDATE no_such_table SET x = 1")
    with pytest.raises(Exception, match="no_such_table"):
        await store.writer.push(None, "phone", [set_("notes", "lost", record="h1")])
    assert await _logged(store) == 0
    with pytest.raises(Exception, match="no record"):
        await store.records.view("households", "h1")
    monkeypatch.undo()
    outcome = await store.writer.push(None, "phone", [set_("notes", "kept", record="h1")])
    assert outcome.results[0].status == "applied"
    assert outcome.cursor.endswith(".1")  # the failed push took no seq
    assert (await store.records.view("households", "h1")).fields["notes"] == "kept"
