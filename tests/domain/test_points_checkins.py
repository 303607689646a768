"""Points: an append-only ledger whose overspends are kept and flagged. Checkins: the elderly
with no signal by the cutoff hour need a visit today."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from litestar.testing import TestClient

from server.app import create_app
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import Client, build, change, push, view

P = "points"
NOON = "2026-11-25T12:00:00+08:00"


def entry(p: Replica, record_id: str, kind: str, points: int, reason: str) -> None:
    for name, value in (("resident_id", "r1"), ("kind", kind), ("points", points), ("reason", reason)):
        p.set(P, record_id, name, value)


def test_two_offline_redemptions_that_overspend_are_both_kept_and_flagged(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    build(a, client)
    entry(a, "e1", "earned", 30, "Stairwell cleaning")
    a.sync(client)
    b.sync(client)
    assert client.get("/v1/points/r1").json()["balance"] == 30
    # Both phones see 30 points and, offline, each lets the volunteer spend 20.
    entry(a, "e2", "redeemed", 20, "Cooking oil")
    entry(b, "e3", "redeemed", 20, "Rice 5 kg")
    assert a.sync(client).rejected == []
    assert b.sync(client).rejected == []
    a.sync(client)
    balance = client.get("/v1/points/r1").json()
    assert balance["earned"] == 30
    assert balance["redeemed"] == 40
    assert balance["balance"] == -10
    assert balance["overspent"] is True
    assert balance["entries"] == ["e1", "e2", "e3"]
    assert len(balance["overspending_entries"]) == 1
    flags = client.get("/v1/flags", params={"kind": "overspend"}).json()["flags"]
    assert [(f["record_id"], f["community_id"], f["grid_id"]) for f in flags] == [("r1", "c1", "g1")]
    assert flags[0]["records"] == balance["overspending_entries"]
    assert "balance now -10" in flags[0]["message"]
    assert {r.id for r in a.records(P)} == {r.id for r in b.records(P)} == {"e1", "e2", "e3"}
    # Nothing is in conflict: each entry is its own record.
    assert all(not view(client, P, e)["conflicts"] for e in ("e1", "e2", "e3"))


def test_ledger_entries_are_written_once(client: Client, phone: Callable[[str], Replica]) -> None:
    a = phone("phone-a")
    build(a, client)
    entry(a, "e0", "earned", 5, "x")
    with pytest.raises(ValueError, match="append_only"):
        a.set(P, "e0", "points", 50)  # the phone itself refuses to edit an entry
    first = [
        change(P, "e1", "resident_id", "r1"),
        change(P, "e1", "kind", "earned"),
        change(P, "e1", "points", 10),
    ]
    assert [r["code"] for r in push(client, first)] == [None, None, None]
    edit = change(P, "e1", "points", 100, pred=(first[2]["id"],))
    gone = {**change(P, "e1", "points", None, pred=(first[0]["id"],)), "op": "delete", "field": None}
    again = change(P, "e1", "points", 100)  # a second first write, from another phone
    results = push(client, [edit, gone, again, change(P, "e9", "resident_id", "r1")])
    assert [r["code"] for r in results] == ["append_only", "append_only", "append_only", None]
    assert view(client, P, "e1")["fields"]["points"] == 10
    bad = push(client, [change(P, "e8", "resident_id", "nobody"), change(P, "e8", "points", -5)])
    assert [r["code"] for r in bad] == ["unknown_reference", "invalid_value"]


def test_a_ledger_entry_sent_again_is_a_duplicate_not_a_second_write(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    build(phone("phone-a"), client)
    first = [
        change(P, "e1", "resident_id", "r1"),
        change(P, "e1", "kind", "earned"),
        change(P, "e1", "points", 10),
    ]
    assert [r["status"] for r in push(client, first)] == ["applied"] * 3
    # The phone never heard the answer, and sends the same changes again with a new one. Judged
    # as new writes they would break append_only; they are the same changes, so duplicates.
    results = push(client, [*first, change(P, "e2", "resident_id", "r1")])
    assert [(r["status"], r.get("code")) for r in results] == [("duplicate", None)] * 3 + [("applied", None)]
    assert view(client, P, "e1")["fields"]["points"] == 10


@pytest.fixture
def late_cutoff_client(settings: Settings, enroll: Callable[[str], str]) -> Iterator[Client]:
    with TestClient(create_app(replace(settings, checkin_cutoff_hour=13))) as test_client:
        test_client.headers["authorization"] = f"Bearer {enroll('office')}"
        yield test_client


def test_elderly_with_no_signal_by_the_cutoff_need_a_visit_today(
    client: Client, phone: Callable[[str], Replica], late_cutoff_client: Client
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    build(a, client)
    b.sync(client)
    # h1, h2, h3 are elderly-alone; h4 is not. h2 moves out. Both phones check offline.
    a.set("households", "h2", "moved_out", True)
    for p, record_id, household, seen in (
        (a, "k1", "h1", True),
        (b, "k2", "h3", False),
        (b, "k3", "h4", True),
    ):
        for name, value in (
            ("household_id", household),
            ("day", "2026-11-25"),
            ("signal", seen),
            ("checked_by", p.replica_id),
        ):
            p.set("checkins", record_id, name, value)
    # Yesterday's signal does not count for today.
    for name, value in (("household_id", "h3"), ("day", "2026-11-24"), ("signal", True)):
        a.set("checkins", "k0", name, value)
    for p in (a, b):
        assert p.sync(client).rejected == []
    listed = client.get("/v1/checkins/no-signal", params={"at": NOON}).json()
    assert listed["past_cutoff"] is True
    assert listed["day"] == "2026-11-25"
    assert [h["id"] for h in listed["households"]] == ["h3"]
    assert listed["households"][0]["grid_id"] == "g2"
    assert listed["households"][0]["reason"] == "exception"
    # An exception (the watcher saw no signal) is listed at once, before the cutoff too.
    morning = client.get("/v1/checkins/no-signal", params={"at": "2026-11-25T08:00:00+08:00"}).json()
    assert (morning["past_cutoff"], morning["waiting"]) == (False, 0)
    assert [h["id"] for h in morning["households"]] == ["h3"]
    # The cutoff hour (for agreements without their own hour) is a setting.
    later = late_cutoff_client.get("/v1/checkins/no-signal", params={"at": NOON}).json()
    assert (later["past_cutoff"], later["waiting"]) == (False, 0)
    # Scoped by grid; and a signal recorded later the same day takes the household off the list.
    assert client.get("/v1/checkins/no-signal", params={"at": NOON, "grid": "g1"}).json()["households"] == []
    a.sync(client)
    for name, value in (("household_id", "h3"), ("day", "2026-11-25"), ("signal", True)):
        a.set("checkins", "k4", name, value)
    a.sync(client)
    assert client.get("/v1/checkins/no-signal", params={"at": NOON}).json()["households"] == []
    summary = client.get("/v1/reports/summary", params={"at": NOON, "community": "c1"}).json()
    assert summary["elderly"] == {
        "elderly_alone": 2,
        "no_signal_today": 0,
        "past_cutoff": True,
        "under_agreement": 2,
    }
    assert client.get("/v1/checkins/no-signal", params={"at": "yesterday"}).json()["code"] == "bad_time"
