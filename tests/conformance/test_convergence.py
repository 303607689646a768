"""Phones editing offline converge through the server, with the true conflicts shown."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import msgspec
import pytest
from litestar.testing import TestClient

from schemas.protocol import SetChange, SnapshotResponse
from server.db.engine import create_engine
from server.settings import Settings
from server.sync.horizon import compact
from sync.client import Replica, SyncReport
from sync.merge import DELETE_CONFLICT_KEY
from tests.factories import change_id, delete, hlc, set_

Client = TestClient  # type: ignore[type-arg]
H = "households"


def server_view(client: Client, record_id: str) -> dict[str, object]:
    reply = client.get(f"/v1/records/{H}/{record_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


def as_dict(replica: Replica, record_id: str) -> dict[str, object]:
    import msgspec

    body: dict[str, object] = msgspec.json.decode(msgspec.json.encode(replica.record(H, record_id)))
    return body


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_three_phones_offline_converge_in_any_sync_order(
    client: Client, phone: Callable[[str], Replica], order: tuple[int, int, int]
) -> None:
    a, b, c = phones = [phone("phone-a"), phone("phone-b"), phone("phone-c")]
    # Morning: the registry entries are made on phone a and reach everyone.
    a.set(H, "h-phone", "phone", "13800000001")
    a.set(H, "h-fields", "address", "Building 1, Unit 2, 301")
    a.add(H, "h-tags", "tags", "elderly-alone")
    a.set(H, "h-deleted", "head_name", "Wang Fang")
    for p in phones:
        p.sync(client)
    # All three go offline and edit.
    a.set(H, "h-phone", "phone", "13900000002")
    b.set(H, "h-phone", "phone", "13700000003")
    c.set(H, "h-phone", "phone", "13700000003")  # agrees with b: still one conflict, two values
    a.set(H, "h-fields", "phone", "021-5555")
    b.set(H, "h-fields", "members_count", 3)
    a.remove(H, "h-tags", "tags", "elderly-alone")
    b.add(H, "h-tags", "tags", "elderly-alone")  # re-added concurrently: add wins
    c.add(H, "h-tags", "tags", "party-member")
    a.delete(H, "h-deleted")
    b.set(H, "h-deleted", "notes", "visited today, still lives here")
    # Back in signal, in some order; then once more so everyone has everything.
    for index in order + order:
        phones[index].sync(client)

    views = {rid: server_view(client, rid) for rid in ("h-phone", "h-fields", "h-tags", "h-deleted")}
    for p in phones:
        for rid, expected in views.items():
            assert as_dict(p, rid) == expected, (p.replica_id, rid)

    conflict = views["h-phone"]["conflicts"]["phone"]  # type: ignore[index]
    assert sorted({h["value"] for h in conflict}) == ["13700000003", "13900000002"]
    assert views["h-fields"]["conflicts"] == {}
    assert views["h-fields"]["fields"] == {
        "address": "Building 1, Unit 2, 301",
        "phone": "021-5555",
        "members_count": 3,
    }
    assert views["h-tags"]["fields"] == {"tags": ["elderly-alone", "party-member"]}
    assert views["h-deleted"]["deleted"] is False
    assert DELETE_CONFLICT_KEY in views["h-deleted"]["conflicts"]  # type: ignore[operator]
    assert views["h-deleted"]["fields"]["notes"] == "visited today, still lives here"  # type: ignore[index]

    # Phone c resolves the phone number; everyone ends up with it and no conflict.
    c.set(H, "h-phone", "phone", "13700000003")
    for p in (c, a, b):
        p.sync(client)
    resolved = server_view(client, "h-phone")
    assert resolved["conflicts"] == {}
    assert all(as_dict(p, "h-phone") == resolved for p in phones)


@pytest.mark.parametrize("seed", range(6))
def test_random_offline_edits_converge(client: Client, phone: Callable[[str], Replica], seed: int) -> None:
    rng = random.Random(seed)
    phones = [phone(f"p{seed}-{i}") for i in range(3)]
    records = [f"h{i}" for i in range(4)]
    for _ in range(60):
        p = rng.choice(phones)
        rid = rng.choice(records)
        roll = rng.random()
        if roll < 0.15:
            p.sync(client)
        elif roll < 0.5:
            p.set(H, rid, rng.choice(["phone", "notes"]), f"{rng.randint(100, 999)}")
        elif roll < 0.7:
            p.add(H, rid, "tags", rng.choice(["veteran", "disability"]))
        elif roll < 0.85:
            p.remove(H, rid, "tags", rng.choice(["veteran", "disability"]))
        elif roll < 0.92:
            p.delete(H, rid)
        else:
            p.set(H, rid, "members_count", rng.randint(0, 9))
    for _ in range(2):
        for p in phones:
            p.sync(client)
    for rid in records:
        reply = client.get(f"/v1/records/{H}/{rid}")
        if reply.status_code == 404:
            assert all(rid not in {r.id for r in p.records(H)} for p in phones)
            continue
        expected = reply.json()
        for p in phones:
            assert as_dict(p, rid) == expected


def test_a_new_phone_bootstraps_from_a_snapshot_to_the_same_state(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    old = phone("old")
    for i in range(30):
        old.set(H, f"h{i}", "notes", f"note {i}")
        if i % 3 == 0:
            old.add(H, f"h{i}", "tags", "veteran")
        if i % 5 == 0:
            old.delete(H, f"h{i}")
    old.sync(client)
    new = phone("new")
    new.bootstrap(client, collection=H, limit=7)
    old.set(H, "h1", "notes", "changed after the snapshot")
    old.sync(client)
    new.sync(client)
    assert [as_dict(new, f"h{i}") for i in range(30)] == [as_dict(old, f"h{i}") for i in range(30)]


def _compact_all(settings: Settings) -> int:
    """Compact as an operator would once every phone was last seen past the offline period."""

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            later = time.time_ns() // 1_000_000 + settings.max_offline_ms + 24 * 3600 * 1000
            return (await compact(engine, settings, now_ms=later)).compacted
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_snapshot_keeps_a_chain_of_deletes_as_a_full_replay_does(
    client: Client, phone: Callable[[str], Replica], settings: Settings
) -> None:
    """A delete naming a delete that is no longer a head: every replica, bootstrapped from a
    snapshot (before and after the history is compacted) or replaying the log, shows what the
    server shows."""
    rid = "h-chain"
    building = SetChange(
        id=change_id(), collection="buildings", record_id="b-1", hlc=hlc(0), field="name", value="B1"
    )
    placed = set_("building_id", "b-1", record=rid, at=1)
    number = set_("phone", "13800000000", record=rid, at=2)
    first = delete(pred=(placed.id,), record=rid, at=3)
    second = delete(pred=(first.id, number.id), record=rid, at=4)
    notes = set_("notes", "written without seeing the deletes", record=rid, at=5)
    body = [msgspec.to_builtins(c) for c in (building, placed, number, first, second, notes)]
    reply = client.post("/v1/sync/push", json={"replica_id": "phone-a", "changes": body})
    assert [r["status"] for r in reply.json()["results"]] == ["applied"] * 6
    expected = server_view(client, rid)
    conflict = expected["conflicts"][DELETE_CONFLICT_KEY]  # type: ignore[index]
    assert [h["change_id"] for h in conflict] == [notes.id, second.id]
    assert expected["fields"] == {"building_id": "b-1", "phone": "13800000000", "notes": notes.value}

    replayed, bootstrapped = phone("replayed"), phone("bootstrapped")
    replayed.sync(client)
    bootstrapped.bootstrap(client)
    assert as_dict(replayed, rid) == expected
    assert as_dict(bootstrapped, rid) == expected
    # The heads the deletes covered travel with the heads (the first delete is no head).
    [record] = client.get("/v1/sync/snapshot", params={"collection": H}).json()["records"]
    assert record["covered"] == sorted([placed.id, number.id])

    assert _compact_all(settings) >= 1  # the first delete is no head: its row goes
    compacted = phone("after-compaction")
    compacted.bootstrap(client)
    compacted.sync(client)
    assert as_dict(compacted, rid) == expected

    # Editing on from any of them keeps every replica equal to the server.
    bootstrapped.set(H, rid, "notes", "the record is kept")
    bootstrapped.delete(H, rid)
    for replica in (bootstrapped, replayed, compacted, bootstrapped):
        assert replica.sync(client).rejected == []
    final = server_view(client, rid)
    assert final["deleted"] is True
    assert all(as_dict(r, rid) == final for r in (replayed, bootstrapped, compacted))


def test_a_change_written_while_a_snapshot_is_paged_is_not_merged_twice(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    """The page of a record is read after a change arrived that an earlier change had named
    (born superseded): the pull from sync_cursor sends it again, and the phone, whose snapshot
    state already holds it, must not take it for a new head."""
    rid = "h-race"
    late = set_("notes", "arrives while the snapshot is paged", record=rid, at=1)
    named = set_("notes", "names a change not yet arrived", record=rid, pred=(late.id,), at=2)
    latest = set_("notes", "the value", record=rid, pred=(named.id,), at=3)

    def push(*changes: object) -> None:
        body = {"replica_id": "phone-a", "changes": [msgspec.to_builtins(c) for c in changes]}
        results = client.post("/v1/sync/push", json=body).json()["results"]
        assert [r["status"] for r in results] == ["applied"] * len(changes)

    push(set_("notes", "first page", record="h-a"), named, latest)
    new = phone("new")
    report = SyncReport()
    first = client.get("/v1/sync/snapshot", params={"collection": H, "limit": 1})
    new.accept_snapshot_page(msgspec.json.decode(first.content, type=SnapshotResponse), report)
    push(late)
    second = client.get("/v1/sync/snapshot", params={"cursor": first.json()["cursor"], "limit": 1})
    page = msgspec.json.decode(second.content, type=SnapshotResponse)
    assert [r.id for r in page.records] == [rid]
    new.accept_snapshot_page(page, report)
    new.sync(client)
    replayed = phone("replayed")
    replayed.sync(client)
    expected = server_view(client, rid)
    assert expected["conflicts"] == {}
    assert as_dict(replayed, rid) == expected
    assert as_dict(new, rid) == expected
