"""The demo district: deterministic, and it loads through the push path with nothing rejected.
(The full district's load time is measured in docs/domain.md, never asserted here.)"""

from __future__ import annotations

import datetime
import itertools
from collections import Counter
from collections.abc import Callable

import msgspec
import pytest
from litestar.testing import TestClient

from schemas.collections import COLLECTIONS
from schemas.practices import DELIBERATION_STEPS
from schemas.protocol import SetChange
from server.app import create_app
from server.cli import main
from server.registry.demo import CHINA, DemoPlan, demo_changes, load_demo
from server.registry.lists import Registry, ScopeFilter
from server.registry.reports import Reports
from server.settings import Settings
from server.sync.store import SyncStore

NOW = datetime.datetime(2026, 11, 25, 15, 30, tzinfo=CHINA)
SMALL = DemoPlan(households=150)


def test_the_demo_is_deterministic_from_seed_and_time() -> None:
    first = demo_changes(SMALL, NOW)
    assert msgspec.json.encode(first) == msgspec.json.encode(demo_changes(SMALL, NOW))
    other = demo_changes(DemoPlan(seed=8, households=150), NOW)
    assert msgspec.json.encode(first) != msgspec.json.encode(other)
    assert len({c.id for c in first}) == len(first)
    per_collection = Counter(c.collection for c in first)
    # Tasks are not loaded: the task rules make them from the demo's visits, checkins and hazards.
    assert set(per_collection) == set(COLLECTIONS) - {"tasks"}
    full = demo_changes(DemoPlan(), NOW)
    households = {c.record_id for c in full if c.collection == "households"}
    assert len(households) == 4_100
    assert len({c.record_id for c in full if c.collection == "communities"}) == 5
    assert len({c.value for c in full if c.field == "party_branch"}) == 15
    assert sum(1 for c in full if c.field == "tags" and c.value == "central-household") == 112
    assert sum(1 for c in full if c.field == "tags" and c.value == "building-leader") == 50
    statuses = {c.value for c in full if c.collection == "requests" and c.field == "status"}
    assert statuses == {"submitted", "dispatched", "accepted", "done", "rated", "cancelled", "reopened"}
    areas = {c.value for c in full if c.field == "area"}
    assert any("塌陷" in a for a in areas)
    assert any("车库" in a for a in areas)


def test_the_demo_comes_in_the_order_of_its_clocks() -> None:
    changes = demo_changes(SMALL, NOW)
    position = {change.id: index for index, change in enumerate(changes)}
    # Every pred names a change pushed before it, and every required link a record written before.
    assert all(position[named] < position[c.id] for c in changes for named in c.pred)
    written: set[tuple[str, str]] = set()
    for change in changes:
        field = COLLECTIONS[change.collection].fields.get(change.field or "")
        if field is not None and field.ref and field.ref_required and change.value is not None:
            assert (field.ref, change.value) in written, change
        written.add((change.collection, change.record_id))
    # Ids are UUIDv7s of the change's moment, in order but where the field's work (sorted by its
    # clocks) follows the registry: the log's unique index grows at its right edge.
    assert all(c.id[14] == "7" for c in changes)
    assert sum(1 for a, b in itertools.pairwise(changes) if a.id > b.id) <= 1


def test_the_demo_is_the_district_of_the_report() -> None:
    full = demo_changes(DemoPlan(), NOW)

    def records(collection: str) -> set[str]:
        return {c.record_id for c in full if c.collection == collection}

    assert len(records("compounds")) == len(records("party_branches")) == 15
    assert len(records("buildings")) == 50
    assert len({c.record_id for c in full if c.field == "leaders"}) == 50
    served: Counter[str] = Counter(c.record_id for c in full if c.field == "serves")
    assert len(served) == 112
    assert all(5 <= n <= 10 for n in served.values())
    steps = {c.value for c in full if c.collection == "deliberations" and c.field == "step"}
    assert steps == set(DELIBERATION_STEPS)
    titles = {c.value for c in full if c.collection == "deliberations" and c.field == "title"}
    assert {"路面塌陷", "地库漏水"} <= titles
    settled = Counter(c.value for c in full if c.collection == "deliberations" and c.field == "step")
    assert settled["settled"] == 62
    kinds = {c.value for c in full if c.field == "party_member_kind"}
    assert kinds == {"resident", "in-work", "transient", "retired"}
    names = [c.value for c in full if c.collection == "residents" and c.field == "name"]
    assert all("\u4e00" <= name[0] <= "\u9fff" for name in names)
    # Phones that disagreed offline: the same field written from the same head by two replicas.
    offline = [c for c in full if isinstance(c, SetChange) and c.hlc.split("-", 2)[2].startswith("phone-")]
    assert len(offline) >= 8


async def test_a_small_demo_loads_through_the_store(store: SyncStore, settings: Settings) -> None:
    changes = demo_changes(SMALL, NOW)
    loaded = await load_demo(store, changes, batch=700)
    assert loaded.rejected == []
    assert await store.change_count() == len(changes)
    # At 15:30 each community has today's exceptions to follow up: a few, not every household
    # under an agreement.
    today = await Reports(Registry(store), settings).summary(ScopeFilter(), at=NOW)
    assert 5 <= today.elderly.no_signal_today <= 15 < today.elderly.under_agreement
    again = await load_demo(store, changes[:500])
    assert again.rejected == []  # every change answers duplicate: loading twice adds nothing
    assert await store.change_count() == len(changes)


def test_the_demo_answers_the_reports(
    settings: Settings, enroll: Callable[[str], str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI reads its settings (the key the demo's ID numbers are sealed with) from the environment.
    monkeypatch.setenv("GRIDSYNC_ENCRYPTION_KEY", settings.encryption_key)
    monkeypatch.setattr("server.cli.get_settings", Settings.from_env)
    assert main(["demo", "--database-url", database_url, "--households", "150", "--seed", "3"]) == 0
    assert main(["demo", "--database-url", database_url, "--households", "150", "--if-empty"]) == 0
    assert main(["demo", "--database-url", database_url, "--households", "150"]) == 1
    token = enroll("office")
    with TestClient(create_app(settings)) as client:
        client.headers["authorization"] = f"Bearer {token}"
        summary = client.get("/v1/reports/summary", params={"community": "c1"}).json()
        assert summary["visit_coverage"]
        assert all(0 < g["coverage"] <= 1 for g in summary["visit_coverage"])
        assert summary["hazards"]["open"] >= 1
        assert summary["requests"]["opened"] > 0
        assert summary["elderly"]["under_agreement"] > 0
        # Today's agreements: a few exceptions to follow up, never every elderly person.
        # Today's exceptions only (dated by the real clock): never every elderly person.
        assert summary["elderly"]["no_signal_today"] <= 4
        district = client.get("/v1/reports/summary").json()
        assert district["deliberations"]["settled"] == 62
        conflicts = client.get("/v1/admin/conflicts").json()
        assert conflicts["counts"]["total"] >= 3
        flags = client.get("/v1/flags", params={"kind": "overspend"}).json()["flags"]
        assert len(flags) == 1
        garage = client.get("/v1/records/hazards/hz-garage").json()
        assert garage["fields"]["category"] == "water-leak"


@pytest.mark.parametrize("households", [1, 25])
async def test_tiny_districts_load(store: SyncStore, households: int) -> None:
    changes = demo_changes(DemoPlan(households=households), NOW)
    assert {c.collection for c in changes} >= {"communities", "grids", "buildings", "households", "residents"}
    assert (await load_demo(store, changes)).rejected == []
