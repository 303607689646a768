"""The registry's reads follow the caller's scope (docs/security.md): a grid worker's lists,
reports and flags hold their grids only, with ID numbers masked; an admin sees them whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.access.principals import UserScope
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import ID_NUMBER, Client, build, write
from tests.factories import enroll_user

NOON = "2026-11-25T12:00:00+08:00"


def test_lists_and_reports_hold_only_the_callers_grids(
    client: Client, phone: Callable[[str], Replica], settings: Settings
) -> None:
    office = phone("office")
    build(office, client)
    write(office, "residents", "r3", {"household_id": "h3", "id_number": ID_NUMBER, "tags": ["volunteer"]})
    for record_id, resident in (("p1", "r1"), ("p2", "r3")):
        write(office, "points", f"{record_id}a", {"resident_id": resident, "kind": "redeemed", "points": 5})
    assert office.sync(client).rejected == []
    worker = {
        "authorization": f"Bearer {asyncio.run(enroll_user(settings, 'w', 'grid_worker', UserScope(('c1',), ('g1',))))}"
    }
    admin = {
        "authorization": f"Bearer {asyncio.run(enroll_user(settings, 'a', 'community_admin', UserScope(('c1',))))}"
    }

    households = client.get("/v1/records/households", headers=worker).json()["records"]
    assert [r["id"] for r in households] == ["h1", "h2"]
    residents = client.get("/v1/records/residents", headers=worker).json()["records"]
    assert [(r["id"], r["fields"]["id_number"]) for r in residents] == [("r1", "1101**********1234")]
    whole = client.get("/v1/records/residents", params={"community": "c1"}, headers=admin).json()["records"]
    assert [(r["id"], r["fields"].get("id_number")) for r in whole] == [
        ("r1", ID_NUMBER),
        ("r2", None),
        ("r3", ID_NUMBER),
    ]

    summary = client.get("/v1/reports/summary", params={"at": NOON}, headers=worker).json()
    assert [g["grid_id"] for g in summary["visit_coverage"]] == ["g1"]
    assert summary["elderly"]["elderly_alone"] == 2
    missing = client.get("/v1/checkins/no-signal", params={"at": NOON}, headers=worker).json()["households"]
    assert [h["id"] for h in missing] == ["h1", "h2"]
    flags = client.get("/v1/flags", params={"kind": "overspend"}, headers=worker).json()["flags"]
    assert [f["record_id"] for f in flags] == ["r1"]
    assert client.get("/v1/points/r3", headers=worker).status_code == 404
    assert client.get("/v1/points/r3", headers=admin).json()["balance"] == -5
