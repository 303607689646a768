"""Partial replication and push authorisation, role by role, through the HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from schemas.protocol import Change
from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.settings import Settings
from sync.client import Replica
from tests.factories import ID_NUMBER, TWO_COMMUNITIES, audit_entries, delete, enroll_user, set_

Client = TestClient  # type: ignore[type-arg]

# (collection, id) -> link fields; pushed by a district-wide device.
DISTRICT: list[tuple[str, str, dict[str, Any]]] = [
    *TWO_COMMUNITIES,
    ("requests", "q1", {"household_id": "h1", "title": "Leaking pipe", "status": "submitted"}),
]
SCOPES = {
    "worker1": ("grid_worker", UserScope(communities=("c1",), grids=("g1",))),
    "leader2": ("building_leader", UserScope(communities=("c1",), buildings=("b2",))),
    "handler": ("handler", UserScope(company="acme")),
    "admin2": ("community_admin", UserScope(communities=("c2",))),
    "volunteer1": ("volunteer", UserScope(communities=("c1",), buildings=("b1",))),
}
EXPECTED = {
    "worker1": {
        "communities/c1",
        "grids/g1",
        "buildings/b1",
        "households/h1",
        "residents/r1",
        "visits/v1",
        "requests/q1",
    },
    "leader2": {"buildings/b2", "households/h2", "residents/r2"},
    "handler": {"requests/q1"},
    "admin2": {"communities/c2", "grids/g3", "buildings/b3", "households/h3"},
    "volunteer1": {"buildings/b1", "households/h1", "residents/r1", "visits/v1", "requests/q1"},
}


def held(replica: Replica) -> set[str]:
    rows = replica.db.execute("SELECT collection, record_id FROM records").fetchall()
    return {f"{c}/{r}" for c, r in rows}


@pytest.fixture
def district(
    client: Client, tmp_path: Path, settings: Settings
) -> Iterator[tuple[Replica, dict[str, Replica]]]:
    """The district seeded by an admin phone, and one phone per scoped user."""
    admin = Replica(tmp_path / "admin.db", "admin-phone")
    for collection, record_id, fields in DISTRICT:
        for name, value in fields.items():
            admin.set(collection, record_id, name, value)
    admin.set("requests", "q1", "status", "dispatched")
    admin.set("requests", "q1", "dispatched_to", "acme")
    report = admin.sync(client)
    assert report.rejected == []
    phones = {
        name: Replica(tmp_path / f"{name}.db", name, token=asyncio.run(enroll_user(settings, name, *scope)))
        for name, scope in SCOPES.items()
    }
    yield admin, phones
    for replica in (admin, *phones.values()):
        replica.close()


def test_each_role_reads_exactly_its_scope(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    admin, phones = district
    for name, phone in phones.items():
        phone.sync(client)
        assert held(phone) == EXPECTED[name], name
        fresh = Replica(phone.db.execute("PRAGMA database_list").fetchone()[2] + ".boot", token=phone.token)
        fresh.bootstrap(client)
        assert held(fresh) == EXPECTED[name], name
        fresh.close()
        reply = client.get("/v1/records/households/h3", headers={"authorization": f"Bearer {phone.token}"})
        assert reply.status_code == (200 if "households/h3" in EXPECTED[name] else 404), name
    assert {f"{c}/{r}" for c, r, _ in DISTRICT} <= held(admin)


def _push(client: Client, token: str, *changes: Any) -> list[dict[str, Any]]:
    body = {"replica_id": "p", "changes": [msgspec.json.decode(msgspec.json.encode(c)) for c in changes]}
    reply = client.post("/v1/sync/push", json=body, headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    results: list[dict[str, Any]] = reply.json()["results"]
    return results


def test_push_outside_scope_is_rejected_and_the_rest_applies(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    _, phones = district
    token = phones["worker1"].token
    assert token is not None
    results = _push(
        client,
        token,
        set_("notes", "visited", record="h1"),
        set_("notes", "not my grid", record="h2"),
        set_("household_id", "h2", record="v9", collection="visits"),
        set_("building_id", "b1", record="h9"),
        set_("address", "new family", record="h9"),
        set_("address", "nowhere", record="h10"),
        set_("building_id", "b2", record="h1"),
    )
    assert [r["status"] for r in results] == [
        "applied",
        "rejected",
        "rejected",
        "applied",
        "applied",
        "rejected",
        "rejected",
    ]
    assert {r["code"] for r in results if r["status"] == "rejected"} == {"out_of_scope"}
    assert all(r["message"] for r in results if r["status"] == "rejected")
    assert client.get("/v1/records/households/h1").json()["fields"]["notes"] == "visited"
    assert client.get("/v1/records/households/h1").json()["fields"]["building_id"] == "b1"
    assert client.get("/v1/records/households/h2").json()["fields"].get("notes") is None


def test_building_leaders_write_field_records_and_handlers_their_requests(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    _, phones = district
    leader, handler = phones["leader2"].token, phones["handler"].token
    assert leader is not None
    assert handler is not None
    results = _push(
        client,
        leader,
        set_("household_id", "h2", record="v2", collection="visits"),
        set_("notes", "registry is read-only for me", record="h2"),
    )
    assert [(r["status"], r["code"]) for r in results] == [("applied", None), ("rejected", "out_of_scope")]
    phones["handler"].sync(client)
    accepted = phones["handler"].set("requests", "q1", "status", "accepted")
    title = phones["handler"].set("requests", "q1", "title", "Renamed by the company")
    report = phones["handler"].sync(client)
    assert (title.id, "forbidden_field") in report.rejected
    assert accepted.id not in {change_id for change_id, _ in report.rejected}
    assert client.get("/v1/records/requests/q1").json()["fields"]["status"] == "accepted"
    results = _push(client, handler, set_("notes", "x", record="h1"))
    assert results[0]["code"] == "out_of_scope"


def test_id_numbers_are_whole_only_for_admins(
    client: Client, district: tuple[Replica, dict[str, Replica]], settings: Settings
) -> None:
    admin, phones = district
    worker = phones["worker1"]
    worker.sync(client)
    assert worker.record("residents", "r1").fields["id_number"] == "1101**********1234"
    shown = client.get("/v1/records/residents/r1", headers={"authorization": f"Bearer {worker.token}"})
    assert shown.json()["fields"]["id_number"] == "1101**********1234"
    assert client.get("/v1/records/residents/r1").json()["fields"]["id_number"] == ID_NUMBER
    assert admin.record("residents", "r1").fields["id_number"] == ID_NUMBER


def test_a_household_that_moves_grid_leaves_one_phone_and_reaches_another(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    admin, phones = district
    worker, leader = phones["worker1"], phones["leader2"]
    worker.sync(client)
    leader.sync(client)
    admin.set("households", "h1", "building_id", "b2")
    admin.sync(client)
    worker.sync(client)
    leader.sync(client)
    household_and_below = {"households/h1", "residents/r1", "visits/v1", "requests/q1"}
    assert held(worker) == EXPECTED["worker1"] - household_and_below
    assert held(leader) == EXPECTED["leader2"] | household_and_below
    assert leader.record("households", "h1").fields["address"] == "1-101"
    # What happens to the household afterwards never reaches its old grid's phone.
    admin.set("households", "h1", "notes", "new grid, new worker")
    admin.set("residents", "r1", "phone", "13700000000")
    admin.sync(client)
    before = worker.cursor
    assert worker.sync(client).pulled == 0
    assert worker.cursor != before
    assert held(worker) == EXPECTED["worker1"] - household_and_below


def test_a_changed_assignment_makes_the_phone_start_over(
    client: Client, district: tuple[Replica, dict[str, Replica]], settings: Settings
) -> None:
    _, phones = district
    worker = phones["worker1"]
    worker.sync(client)
    pending = worker.set("households", "h1", "notes", "typed before the change")
    asyncio.run(_reassign(settings, "worker1", UserScope(communities=("c1",), grids=("g2",))))
    reply = client.get(
        "/v1/sync/pull", params={"since": worker.cursor}, headers={"authorization": f"Bearer {worker.token}"}
    )
    assert (reply.status_code, reply.json()["code"]) == (409, "scope_changed")
    report = worker.sync(client)
    assert (pending.id, "out_of_scope") in report.rejected
    assert held(worker) == {"communities/c1", "grids/g2", "buildings/b2", "households/h2", "residents/r2"}


async def _reassign(settings: Settings, name: str, scope: UserScope) -> None:
    engine = create_engine(settings.database_url)
    try:
        accounts = AccountStore(engine)
        user = await accounts.user_by_name(name)
        assert user is not None
        await accounts.update_user(user.id, user.role, scope)
    finally:
        await engine.dispose()


def test_sql_and_python_scope_rules_agree(
    client: Client, district: tuple[Replica, dict[str, Replica]], phone: Callable[[str], Replica]
) -> None:
    """Pull (SQL filter) and push (Python check) must draw the same line."""
    _, phones = district
    for name, replica in phones.items():
        replica.sync(client)
        for collection, record_id, _ in DISTRICT:
            if collection != "households":
                continue
            change = set_("notes", f"by {name}", record=record_id)
            assert replica.token is not None
            status = _push(client, replica.token, change)[0]["status"]
            readable = f"households/{record_id}" in held(replica)
            writable = status == "applied"
            if SCOPES[name][0] in ("grid_worker", "community_admin"):
                assert writable == readable, (name, record_id)
            else:
                assert not writable, (name, record_id)


async def _admin(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await AccountStore(engine).create_user("new-admin", "district_admin", UserScope(), "long enough pw")
    finally:
        await engine.dispose()


def test_a_new_admin_enrols_a_grid_phone_sees_its_scope_revokes_it_and_audits_it(
    client: Client, district: tuple[Replica, dict[str, Replica]], settings: Settings, tmp_path: Path
) -> None:
    asyncio.run(_admin(settings))
    signed_in = client.post("/v1/admin/login", json={"name": "new-admin", "password": "long enough pw"})
    admin = {"authorization": f"Bearer {signed_in.json()['token']}"}
    body = {
        "name": "Grid 1 phone",
        "user": {"name": "zhang", "role": "grid_worker", "scope": {"communities": ["c1"], "grids": ["g1"]}},
    }
    enrolled = client.post("/v1/admin/devices", json=body, headers=admin).json()
    phone = Replica(tmp_path / "zhang.db", "zhang-phone", token=enrolled["token"])
    phone.sync(client)
    assert {key for key in held(phone) if key.startswith("households/")} == {"households/h1"}
    assert client.delete(f"/v1/admin/devices/{enrolled['device_id']}", headers=admin).status_code == 204
    phone.set("households", "h1", "notes", "after the phone was lost")
    with pytest.raises(httpx.HTTPStatusError, match="401"):
        phone.sync(client)
    entries = client.get("/v1/admin/audit", headers=admin).json()["entries"]
    assert [(e["action"], e["actor_name"]) for e in entries[:4]] == [
        ("device_revoke", "new-admin"),
        ("device_enroll", "new-admin"),
        ("user_create", "new-admin"),
        ("sign_in", "new-admin"),
    ]
    phone.close()


def test_admins_read_id_numbers_whole_and_each_such_list_is_audited_as_an_export(
    client: Client, district: tuple[Replica, dict[str, Replica]], settings: Settings
) -> None:
    _, phones = district
    listed = client.get("/v1/records/residents", params={"community": "c1"}).json()["records"]
    assert {r["fields"].get("id_number") for r in listed} == {ID_NUMBER, None}
    exports = audit_entries(settings, "export")
    assert [(e.target, e.detail["records"], e.detail["filters"]["community"]) for e in exports] == [
        ("residents", 2, "c1")
    ]
    worker = {"authorization": f"Bearer {phones['worker1'].token}"}
    masked = client.get("/v1/records/residents", headers=worker).json()["records"]
    assert [r["fields"]["id_number"] for r in masked] == ["1101**********1234"]
    assert len(audit_entries(settings, "export")) == 1


def _push_as_admin(client: Client, change: Change) -> None:
    body = {"replica_id": "admin", "changes": [msgspec.to_builtins(change)]}
    reply = client.post("/v1/sync/push", json=body)
    assert reply.json()["results"][0]["status"] == "applied", reply.text


def _record_as_seen_by(client: Client, phone: Replica, collection: str, record_id: str) -> Any:
    headers = {"authorization": f"Bearer {phone.token}"}
    return client.get(f"/v1/records/{collection}/{record_id}", headers=headers).json()


def test_a_record_entering_the_scope_brings_what_its_deletes_covered(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    """A household whose deletes form a chain (the first no longer a head) moves into a
    volunteer's building: the volunteer's phone shows it exactly as the server does."""
    _, phones = district
    snapshot = client.get("/v1/sync/snapshot", params={"collection": "households"}).json()
    [household] = [r for r in snapshot["records"] if r["id"] == "h2"]
    heads = {c["field"]: c["id"] for c in household["heads"]}
    number = set_("phone", "13800000002", record="h2")
    first = delete(pred=(heads["address"],), record="h2")
    second = delete(pred=(first.id, number.id), record="h2")
    # A field a volunteer may read (household notes are kept from them, docs/security.md).
    notes = set_("head_name", "written without seeing the deletes", record="h2")
    moved = set_("building_id", "b1", record="h2", pred=(heads["building_id"],))
    volunteer = phones["volunteer1"]
    assert volunteer.token is not None
    for change in (number, first, second, notes, moved):
        if change is moved:
            # Pulled up to here, the chain is behind the volunteer's cursor: only the heads of
            # the household come to the phone when it enters the scope.
            volunteer.sync(client)
            assert "households/h2" not in held(volunteer)
        _push_as_admin(client, change)
    volunteer.sync(client)
    seen = _record_as_seen_by(client, volunteer, "households", "h2")
    conflict = seen["conflicts"]["_deleted"]
    assert {h["change_id"] for h in conflict} == {notes.id, moved.id, second.id}
    assert msgspec.to_builtins(volunteer.record("households", "h2")) == seen


def test_a_record_entering_the_scope_comes_whole_not_merged_twice(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    """A change that an earlier (since superseded) change named before it arrived, written in
    the same pull window as the move that brings its record into the volunteer's scope."""
    _, phones = district
    snapshot = client.get("/v1/sync/snapshot", params={"collection": "households"}).json()
    [household] = [r for r in snapshot["records"] if r["id"] == "h2"]
    heads = {c["field"]: c["id"] for c in household["heads"]}
    late = set_("head_name", "arrives after a change named it", record="h2")
    named = set_("head_name", "names a change not yet arrived", record="h2", pred=(late.id,))
    latest = set_("head_name", "the value", record="h2", pred=(named.id,))
    moved = set_("building_id", "b1", record="h2", pred=(heads["building_id"],))
    volunteer = phones["volunteer1"]
    assert volunteer.token is not None
    for change in (named, latest, late, moved):
        if change is late:
            volunteer.sync(client)
            assert "households/h2" not in held(volunteer)
        _push_as_admin(client, change)
    volunteer.sync(client)
    seen = _record_as_seen_by(client, volunteer, "households", "h2")
    assert seen["conflicts"] == {}
    assert seen["fields"]["head_name"] == "the value"
    assert msgspec.to_builtins(volunteer.record("households", "h2")) == seen


def test_grid_workers_work_the_requests_about_a_whole_compound_of_their_community(
    client: Client, district: tuple[Replica, dict[str, Replica]]
) -> None:
    """A compound spans grids: a request about it sits at its community, and the community's
    grid workers read and write it (and its community's admins); building leaders, volunteers
    and other communities do not."""
    admin, phones = district
    for compound, community in (("cp1", "c1"), ("cp3", "c2")):
        admin.set("compounds", compound, "community_id", community)
        admin.set("requests", f"q-{compound}", "compound_id", compound)
        admin.set("requests", f"q-{compound}", "status", "submitted")
    assert admin.sync(client).rejected == []
    for name, phone in phones.items():
        phone.sync(client)
        holds = {"worker1": {"requests/q-cp1"}, "admin2": {"requests/q-cp3"}}.get(name, set())
        assert held(phone) & {"requests/q-cp1", "requests/q-cp3", "compounds/cp1"} == holds, name
        assert phone.token is not None
        status = _push(
            client, phone.token, set_("description", f"by {name}", record="q-cp1", collection="requests")
        )
        assert (status[0]["status"] == "applied") == (name == "worker1"), name
        reply = client.get("/v1/records/requests/q-cp1", headers={"authorization": f"Bearer {phone.token}"})
        assert reply.status_code == (200 if name == "worker1" else 404), name
    # The worker moves it through the loop, but neither hands it to another community's compound
    # nor raises one (the compound's register is the office's: the office raises them).
    worker = phones["worker1"]
    worker.set("requests", "q-cp1", "status", "dispatched")
    assert worker.sync(client).rejected == []
    assert admin.sync(client).rejected == []
    assert admin.record("requests", "q-cp1").fields["status"] == "dispatched"
    assert worker.token is not None
    moved = _push(client, worker.token, set_("compound_id", "cp3", record="q-cp1", collection="requests"))
    raised = _push(client, worker.token, set_("compound_id", "cp1", record="q-new", collection="requests"))
    assert [r["code"] for r in moved + raised] == ["out_of_scope", "out_of_scope"]
