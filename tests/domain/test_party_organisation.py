"""The party organisation as data (community party committee -> compound branch -> building
party group -> party-member central household, the 1+3+N team of a grid) and requests about
common areas from every channel, written by offline phones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.access.principals import UserScope
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import Client, as_dict, build, change, push, view, write
from tests.factories import bearer, enroll_user

ORGANISATION = [
    ("compounds", "cp1", {"community_id": "c1", "name": "锦乐苑", "code": "JLY"}),
    ("buildings", "b1", {"compound_id": "cp1"}),
    ("grids", "g1", {"compound_id": "cp1", "full_time_worker": "w-1", "part_time_workers": ["w-2"]}),
    ("residents", "r1", {"party_member_kind": "retired", "party_branch_id": "pb1"}),
    ("party_branches", "pb1", {"community_id": "c1", "compound_id": "cp1", "secretary_id": "r1"}),
    ("party_groups", "pg1", {"branch_id": "pb1", "building_id": "b1", "leader_id": "r1"}),
    (
        "central_households",
        "ch1",
        {"household_id": "h1", "party_member_id": "r1", "party_group_id": "pg1", "serves": ["h2"]},
    ),
]


def test_the_organisation_is_written_offline_and_placed_without_moving_buildings(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office, other = phone("office"), phone("other")
    build(office, client)
    other.sync(client)
    for collection, record_id, fields in ORGANISATION:
        write(office, collection, record_id, fields)
    other.add("central_households", "ch1", "serves", "h3")  # offline, a neighbour added
    assert office.sync(client).rejected == []
    assert other.sync(client).rejected == []
    office.sync(client)
    served = view(client, "central_households", "ch1")
    assert sorted(served["fields"]["serves"]) == ["h2", "h3"]
    assert (
        as_dict(office, "central_households", "ch1") == as_dict(other, "central_households", "ch1") == served
    )
    # The building keeps its place by grid: its households stay listed under g1.
    in_grid = client.get("/v1/records/households", params={"grid": "g1"}).json()["records"]
    assert {r["id"] for r in in_grid} == {"h1", "h2"}
    assert view(client, "buildings", "b1")["fields"]["compound_id"] == "cp1"
    groups = client.get("/v1/records/party_groups", params={"building": "b1"}).json()["records"]
    assert [g["id"] for g in groups] == ["pg1"]
    branches = client.get("/v1/records/party_branches", params={"community": "c1"}).json()["records"]
    assert [b["fields"]["secretary_id"] for b in branches] == ["r1"]


def test_a_request_names_its_supervising_party_member(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office = phone("office")
    build(office, client)
    office.set("residents", "r1", "party_member_kind", "retired")
    office.set("requests", "q1", "household_id", "h1")
    office.set("requests", "q1", "status", "submitted")
    office.set("requests", "q1", "supervisor_id", "r1")
    office.set("requests", "q2", "household_id", "h1")
    office.set("requests", "q2", "supervisor_id", "nobody")
    report = office.sync(client)
    assert report.rejected == [(report.rejected[0][0], "unknown_reference")]
    assert view(client, "requests", "q1")["fields"]["supervisor_id"] == "r1"


def test_the_supervisor_must_be_a_party_member(client: Client, phone: Callable[[str], Replica]) -> None:
    office = phone("office")
    build(office, client)
    write(office, "requests", "q1", {"household_id": "h1", "status": "submitted", "supervisor_id": "r2"})
    report = office.sync(client)
    assert [code for _, code in report.rejected] == ["supervisor_not_party_member"]
    assert "supervisor_id" not in view(client, "requests", "q1")["fields"]
    # Named before being made a party member in the same push: the push is judged as a whole.
    office.set("requests", "q1", "supervisor_id", "r2")
    office.set("residents", "r2", "party_member_kind", "in-work")
    assert office.sync(client).rejected == []
    assert view(client, "requests", "q1")["fields"]["supervisor_id"] == "r2"


def test_two_offline_phones_name_supervisors(client: Client, phone: Callable[[str], Replica]) -> None:
    office, first, second = phone("office"), phone("first"), phone("second")
    build(office, client)
    office.set("residents", "r1", "party_member_kind", "resident")
    write(office, "requests", "q1", {"household_id": "h1", "status": "submitted"})
    assert office.sync(client).rejected == []
    first.sync(client)
    second.sync(client)
    # Offline, one phone names a party member, the other a resident who is not one.
    first.set("requests", "q1", "supervisor_id", "r1")
    second.set("requests", "q1", "supervisor_id", "r2")
    assert second.sync(client).rejected[0][1] == "supervisor_not_party_member"
    assert first.sync(client).rejected == []
    shown = view(client, "requests", "q1")
    assert shown["fields"]["supervisor_id"] == "r1"
    assert "supervisor_id" not in shown["conflicts"]
    # Both name party members: both are kept, as a conflict the office resolves.
    office.set("residents", "r2", "party_member_kind", "transient")
    office.sync(client)
    first.sync(client)
    second.sync(client)
    first.set("requests", "q1", "supervisor_id", "r2")
    second.set("requests", "q1", "supervisor_id", "r1")
    assert first.sync(client).rejected == second.sync(client).rejected == []
    assert len(view(client, "requests", "q1")["conflicts"]["supervisor_id"]) == 2


def test_a_central_household_serves_at_most_ten(client: Client, phone: Callable[[str], Replica]) -> None:
    office, first, second = phone("office"), phone("first"), phone("second")
    build(office, client)
    neighbours = [f"n{i}" for i in range(1, 12)]
    for household in neighbours:
        office.set("households", household, "building_id", "b1")
    write(office, "central_households", "ch1", {"household_id": "h1", "party_member_id": "r1"})
    for household in neighbours[:3]:
        office.add("central_households", "ch1", "serves", household)
    assert office.sync(client).rejected == []
    # Three of ten: listed for the office's attention, not refused.
    flags = client.get("/v1/flags", params={"kind": "few_served"}).json()["flags"]
    assert [(f["record_id"], f["records"]) for f in flags] == [("ch1", ["n1", "n2", "n3"])]
    for household in neighbours[3:9]:
        office.add("central_households", "ch1", "serves", household)
    assert office.sync(client).rejected == []
    assert client.get("/v1/flags", params={"kind": "few_served"}).json()["flags"] == []
    first.sync(client)
    second.sync(client)
    # Nine served: two phones offline each link one more. The first to arrive is the tenth.
    first.add("central_households", "ch1", "serves", "n10")
    second.add("central_households", "ch1", "serves", "n11")
    assert first.sync(client).rejected == []
    assert [code for _, code in second.sync(client).rejected] == ["central_household_full"]
    assert len(view(client, "central_households", "ch1")["fields"]["serves"]) == 10
    # Linking one it serves again is a retry; one removed makes room in the same push.
    second.sync(client)
    second.add("central_households", "ch1", "serves", "n1")
    second.remove("central_households", "ch1", "serves", "n2")
    second.add("central_households", "ch1", "serves", "n11")
    assert second.sync(client).rejected == []
    served = view(client, "central_households", "ch1")["fields"]["serves"]
    assert len(served) == 10
    assert "n11" in served
    assert "n2" not in served


def test_requests_about_common_areas_from_every_channel(
    client: Client, phone: Callable[[str], Replica], settings: Settings
) -> None:
    office = phone("office")
    build(office, client)
    write(office, "compounds", "cp1", {"community_id": "c1", "name": "锦乐苑"})
    write(office, "hazards", "hz1", {"grid_id": "g1", "category": "water-leak", "status": "open"})
    # A hazard raises a request about the garage (a common area of grid g1), from the chat group.
    write(
        office,
        "requests",
        "q-garage",
        {"grid_id": "g1", "area": "地库", "channel": "building-chat-group", "hazard_id": "hz1"},
    )
    office.add("hazards", "hz1", "request_ids", "q-garage")
    write(office, "requests", "q-stairs", {"building_id": "b1", "channel": "phone", "status": "submitted"})
    write(office, "requests", "q-road", {"compound_id": "cp1", "channel": "deliberation"})
    assert office.sync(client).rejected == []
    assert view(client, "hazards", "hz1")["fields"]["request_ids"] == ["q-garage"]
    # Each is placed by the place it names: a grid worker of g1 reads the garage and the stairs,
    # and the road of the whole compound (its community's); a building leader only the stairs.
    token = asyncio.run(enroll_user(settings, "w", "grid_worker", UserScope(("c1",), ("g1",))))
    listed = client.get("/v1/records/requests", headers=bearer(token)).json()["records"]
    assert {r["id"] for r in listed} == {"q-garage", "q-stairs", "q-road"}
    leader = asyncio.run(enroll_user(settings, "l", "building_leader", UserScope(("c1",), buildings=("b1",))))
    listed = client.get("/v1/records/requests", headers=bearer(leader)).json()["records"]
    assert {r["id"] for r in listed} == {"q-stairs"}
    # One place only, and a channel from the list.
    results = push(
        client,
        [
            change("requests", "q-stairs", "household_id", "h1"),
            change("requests", "q-stairs", "channel", "wechat"),
        ],
    )
    assert [r["code"] for r in results] == ["one_place_only", "invalid_value"]
