"""The curtain agreement (窗帘约定) as practised: households sign up with their hours and
watcher; only exceptions are recorded, followed up from offline phones; the no-signal list
follows the agreements, never the tags alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sync.client import Replica
from tests.domain.district import Client, as_dict, build, view, write

DAY = "2026-11-25"


def listed(client: Client, clock: str) -> dict[str, Any]:
    reply = client.get("/v1/checkins/no-signal", params={"at": f"{DAY}T{clock}:00+08:00"})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_exceptions_are_followed_up_offline_and_the_list_follows_the_agreements(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office, watcher, worker = (phone(n) for n in ("office", "neighbour", "worker"))
    build(office, client)
    # h1 records exceptions only, curtains open by 08:30, watched by neighbour r1; h2 asked for
    # each day's signal by 09:00; h3 leaves the agreement today; h4 never signed.
    write(
        office, "curtain_agreements", "ca-h1", {"open_by": "08:30", "close_by": "19:00", "watcher_id": "r1"}
    )
    office.set("curtain_agreements", "ca-h1", "daily_signal", False)
    office.set("curtain_agreements", "ca-h2", "open_by", "09:00")
    office.set("curtain_agreements", "ca-h3", "ended_on", DAY)
    office.add("curtain_agreements", "ca-h1", "circumstances", "widowed")
    assert office.sync(client).rejected == []
    watcher.sync(client)
    worker.sync(client)
    assert listed(client, "08:00")["households"] == []
    assert listed(client, "08:00")["waiting"] == 1  # h2, whose hour has not come
    # 08:40, offline: the neighbour sees h1's curtains still closed and records the exception.
    fields = {"household_id": "h1", "day": DAY, "signal": False, "agreement_id": "ca-h1", "missed": "morning"}
    write(watcher, "checkins", "ex-1", fields)
    assert watcher.sync(client).rejected == []
    found = listed(client, "09:30")["households"]
    assert [(h["id"], h["reason"]) for h in found] == [("h1", "exception"), ("h2", "no-signal")]
    assert found[0]["watcher_id"] == "r1"
    assert found[0]["open_by"] == "08:30"
    # The worker, offline at the door, records the follow-up while the neighbour adds a note.
    worker.sync(client)
    write(worker, "checkins", "ex-1", {"followed_up_by": "w-1", "found": "all-well"})
    watcher.set("checkins", "ex-1", "notes", "电话无人接")
    assert worker.sync(client).rejected == []
    assert watcher.sync(client).rejected == []
    worker.sync(client)
    assert (
        as_dict(worker, "checkins", "ex-1")
        == as_dict(watcher, "checkins", "ex-1")
        == view(client, "checkins", "ex-1")
    )
    assert [h["id"] for h in listed(client, "09:30")["households"]] == ["h2"]
    summary = client.get("/v1/reports/summary", params={"community": "c1", "at": f"{DAY}T09:30:00+08:00"})
    elderly = summary.json()["elderly"]
    assert (elderly["under_agreement"], elderly["no_signal_today"]) == (2, 1)


def test_a_household_without_an_agreement_is_never_listed(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office = phone("office")
    build(office, client)
    office.set("curtain_agreements", "ca-h1", "ended_on", "2026-11-01")
    office.set("curtain_agreements", "ca-h2", "signed_on", "2026-12-01")  # not in force yet
    write(office, "checkins", "ex-h4", {"household_id": "h4", "day": DAY, "signal": False})
    assert office.sync(client).rejected == []
    # h1 and h2 have no agreement in force, h4 never signed: only h3 is watched.
    assert [h["id"] for h in listed(client, "12:00")["households"]] == ["h3"]
    with pytest.raises(ValueError, match="open_by"):  # not HH:MM: refused on the phone already
        office.set("curtain_agreements", "ca-h3", "open_by", "8:30")
