"""Points as the district runs them: a catalogue of activities and rewards (the village market,
property-fee discounts) that ledger entries name, and small wishes (微心愿) that residents post
and volunteers claim offline; the ledger stays append-only and an overspend is still flagged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sync.client import Replica
from tests.domain.district import Client, as_dict, build, view, write

CATALOGUE = [
    (
        "point_activities",
        "act-clean",
        {"community_id": "c1", "name": "楼道清扫", "points": 10, "active": True},
    ),
    (
        "rewards",
        "rw-market",
        {"community_id": "c1", "name": "便民菜市场代金券", "kind": "village-market", "cost": 30},
    ),
    (
        "rewards",
        "rw-fee",
        {"community_id": "c1", "name": "物业费折扣", "kind": "property-fee-discount", "cost": 50},
    ),
]


def test_two_volunteers_claiming_one_wish_offline_are_both_kept_and_flagged(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office, one, two = (phone(n) for n in ("office", "volunteer-1", "volunteer-2"))
    build(office, client)
    write(office, "wishes", "wish-1", {"household_id": "h3", "title": "想要一台收音机", "status": "posted"})
    assert office.sync(client).rejected == []
    one.sync(client)
    two.sync(client)
    for volunteer, resident in ((one, "r1"), (two, "r2")):
        volunteer.set("wishes", "wish-1", "status", "claimed")
        volunteer.set("wishes", "wish-1", "claimed_by", resident)
    assert one.sync(client).rejected == []
    assert two.sync(client).rejected == []
    one.sync(client)
    record = view(client, "wishes", "wish-1")
    assert {h["value"] for h in record["conflicts"]["claimed_by"]} == {"r1", "r2"}
    assert as_dict(one, "wishes", "wish-1") == as_dict(two, "wishes", "wish-1") == record
    flags = client.get("/v1/flags", params={"kind": "concurrent_transition"}).json()["flags"]
    assert [(f["collection"], f["record_id"]) for f in flags] == [("wishes", "wish-1")]
    # A wish cannot be fulfilled before it is claimed.
    office.set("wishes", "wish-2", "household_id", "h1")
    office.set("wishes", "wish-2", "status", "posted")
    office.set("wishes", "wish-2", "status", "fulfilled")
    assert [code for _, code in office.sync(client).rejected] == ["illegal_transition_from_posted"]


def test_ledger_entries_name_the_catalogue_and_an_overspend_is_still_flagged(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office, market = phone("office"), phone("market")
    build(office, client)
    for collection, record_id, fields in CATALOGUE:
        write(office, collection, record_id, fields)
    earned = {"resident_id": "r1", "kind": "earned", "points": 10, "activity_id": "act-clean"}
    write(office, "points", "p1", earned)
    assert office.sync(client).rejected == []
    market.sync(client)
    # At the market and at the property office, offline, both spend the same ten points.
    write(
        market,
        "points",
        "p2",
        {"resident_id": "r1", "kind": "redeemed", "points": 10, "reward_id": "rw-market"},
    )
    write(
        office, "points", "p3", {"resident_id": "r1", "kind": "redeemed", "points": 10, "reward_id": "rw-fee"}
    )
    assert market.sync(client).rejected == []
    assert office.sync(client).rejected == []
    balance = client.get("/v1/points/r1").json()
    assert (balance["balance"], balance["overspent"]) == (-10, True)
    with pytest.raises(ValueError, match="append_only"):  # an entry is never edited, even on the phone
        office.set("points", "p2", "reward_id", "rw-fee")
    rewards = client.get("/v1/records/rewards", params={"community": "c1"}).json()["records"]
    assert {r["fields"]["kind"] for r in rewards} == {"village-market", "property-fee-discount"}
