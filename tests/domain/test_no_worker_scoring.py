"""No scoring of workers (the 2023 guidance against formalism on the fingertips): the dashboard
speaks of households needing attention, never of percentages that read as a worker's score, and
when a phone last synced is shown to district admins only (for security)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from litestar.testing import TestClient

from server.access.principals import UserScope
from server.app import create_app
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import Client, build, change, write
from tests.factories import bearer, create_user, enroll_user, sign_in


def test_the_dashboard_counts_households_to_visit_not_a_workers_coverage(
    client: Client, phone: Callable[[str], Replica], settings: Settings
) -> None:
    office = phone("office")
    build(office, client)
    write(
        office,
        "visits",
        "v1",
        {"household_id": "h1", "worker": "w-1", "visited_at": "2026-12-01T09:00:00+08:00"},
    )
    assert office.sync(client).rejected == []
    create_user(settings, "admin", "district_admin")
    with TestClient(create_app(settings)) as browser:
        sign_in(browser, "admin")
        page = browser.get("/admin/dashboard", params={"lang": "en"})
    assert page.status_code == 200
    coverage = page.text[page.text.index('id="coverage"') :]
    coverage = coverage[: coverage.index("</table>")]
    assert "%" not in coverage
    assert "Households not visited" in page.text
    assert not re.search(r"completion rate|coverage</th>", page.text, re.IGNORECASE)


def test_the_dashboard_lists_open_hazards_most_severe_first_in_the_readers_language(
    client: Client, phone: Callable[[str], Replica], settings: Settings
) -> None:
    office = phone("office")
    build(office, client)
    for hazard_id, severity in (("z1", "low"), ("z2", "critical"), ("z3", "medium")):
        write(office, "hazards", hazard_id, {"grid_id": "g1", "severity": severity, "status": "open"})
    assert office.sync(client).rejected == []
    create_user(settings, "admin", "district_admin")
    with TestClient(create_app(settings)) as browser:
        sign_in(browser, "admin")
        chinese = browser.get("/admin/dashboard", params={"lang": "zh"}).text
        english = browser.get("/admin/dashboard", params={"lang": "en"}).text
    assert chinese.index("危急") < chinese.index("一般") < chinese.index("轻微")
    assert english.index(">Critical<") < english.index(">Medium<") < english.index(">Low<")
    assert ">critical<" not in chinese


def test_only_district_admins_see_when_a_phone_last_synced(
    client: Client, phone: Callable[[str], Replica], settings: Settings
) -> None:
    build(phone("office"), client)
    worker = asyncio.run(enroll_user(settings, "w", "grid_worker", UserScope(("c1",), ("g1",))))
    pulled = client.get("/v1/sync/pull", headers=bearer(worker))  # the phone syncs: last seen now
    assert pulled.status_code == 200, pulled.text
    write_ = client.post(
        "/v1/sync/push",
        json={"replica_id": "w-phone", "changes": [change("visits", "v9", "household_id", "h1")]},
        headers=bearer(worker),
    )
    assert write_.status_code == 200, write_.text
    create_user(settings, "district", "district_admin")
    create_user(settings, "community", "community_admin", ("c1",))
    by_district = client.get("/v1/admin/devices", headers=bearer(sign_in(client, "district"))).json()
    mine = [d for d in by_district if d["user_name"] == "w"]
    assert mine
    assert mine[0]["last_seen_at_ms"] is not None
    by_community = client.get("/v1/admin/devices", headers=bearer(sign_in(client, "community"))).json()
    assert [d["user_name"] for d in by_community] == ["w"]
    assert by_community[0]["last_seen_at_ms"] is None
