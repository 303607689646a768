"""The conflict inbox API on SQLite and PostgreSQL: conflicts open and close with the pushes that
make and mend them; admins resolve one (keep a head, write a value, keep or confirm a delete) or
many by a rule (preview, then apply); stale and double resolutions get 409; everything is audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import TestClient

from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import build
from tests.factories import PASSWORD, bearer, create_user, make_conflict, sign_in

Client = TestClient  # type: ignore[type-arg]
Phone = Callable[[str], Replica]
URL = "/v1/admin/conflicts"


@pytest.fixture
def admin(app_client: Client) -> dict[str, str]:
    return bearer(sign_in(app_client, "district"))


def open_conflicts(client: Client, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    reply = client.get(URL, params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    page: dict[str, Any] = reply.json()
    return page


def only_conflict(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    page = open_conflicts(client, headers)
    assert len(page["conflicts"]) == 1, page
    detail = client.get(f"{URL}/{page['conflicts'][0]['id']}", headers=headers)
    assert detail.status_code == 200, detail.text
    found: dict[str, Any] = detail.json()
    return found


def test_concurrent_values_open_a_conflict_that_shows_who_wrote_what(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(app_client, a, b)
    page = open_conflicts(app_client, admin)
    assert page["counts"]["total"] == 1
    assert page["counts"]["by_kind"]["field"] == 1
    assert page["counts"]["by_collection"] == {"households": 1}
    summary = page["conflicts"][0]
    assert (summary["collection"], summary["record_id"], summary["fields"]) == ("households", "h1", ["phone"])
    detail = only_conflict(app_client, admin)
    (field,) = detail["fields"]
    assert field["field"] == "phone"
    assert field["values_differ"]
    assert {h["value"] for h in field["heads"]} == {"2", "3"}
    assert {h["device_name"] for h in field["heads"]} == {"phone-a", "phone-b"}
    assert {h["replica_id"] for h in field["heads"]} == {"phone-a", "phone-b"}
    for head in field["heads"]:
        assert head["received_at_ms"] > 0
        assert head["device_clock_ms"] > 0
        assert [s["value"] for s in head["started_from"]] == ["1"]
    assert sorted(detail["seen_heads"]) == sorted(h["change_id"] for h in field["heads"])
    assert [e["event"] for e in detail["events"]] == ["opened"]
    assert len(detail["history"]) == 3
    assert detail["record"]["conflicts"]["phone"]


def test_admin_keeps_one_side_and_every_phone_pulls_it(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b, c = phone("phone-a"), phone("phone-b"), phone("phone-c")
    make_conflict(app_client, a, b)
    detail = only_conflict(app_client, admin)
    kept = next(h for h in detail["fields"][0]["heads"] if h["value"] == "2")
    body = {"seen_heads": detail["seen_heads"], "fields": {"phone": {"keep": kept["change_id"]}}}
    reply = app_client.post(f"{URL}/{detail['conflict']['id']}/resolve", json=body, headers=admin)
    assert reply.status_code == 200, reply.text
    resolved = reply.json()
    assert resolved["conflict"]["status"] == "resolved"
    assert resolved["conflict"]["resolved_via"] == "admin"
    assert resolved["conflict"]["resolved_by_user"] == "district"
    assert len(resolved["conflict"]["resolved_changes"]) == 1
    assert [e["event"] for e in resolved["events"]] == ["opened", "resolved"]
    assert resolved["record"]["conflicts"] == {}
    c.sync(app_client)
    a.sync(app_client)
    for replica in (a, c):
        view = replica.record("households", "h1")
        assert view.fields["phone"] == "2"
        assert view.conflicts == {}
    assert open_conflicts(app_client, admin)["conflicts"] == []
    assert open_conflicts(app_client, admin, status="resolved")["counts"]["total"] == 1
    entry = app_client.get("/v1/admin/audit", params={"action": "conflict_resolve"}, headers=admin).json()
    (audited,) = entry["entries"]
    assert audited["target"] == detail["conflict"]["id"]
    assert audited["actor_name"] == "district"
    assert audited["detail"]["fields"] == {"phone": {"keep": kept["change_id"]}}
    assert audited["detail"]["changes"] == resolved["conflict"]["resolved_changes"]


def test_admin_writes_a_merged_value(app_client: Client, admin: dict[str, str], phone: Phone) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(app_client, a, b, field="notes", values=("gas smell", "stairs broken"))
    detail = only_conflict(app_client, admin)
    merged = "gas smell; stairs broken"
    body = {"seen_heads": detail["seen_heads"], "fields": {"notes": {"value": merged}}}
    reply = app_client.post(f"{URL}/{detail['conflict']['id']}/resolve", json=body, headers=admin)
    assert reply.status_code == 200, reply.text
    b.sync(app_client)
    assert b.record("households", "h1").fields["notes"] == merged
    assert app_client.get("/v1/records/households/h1", headers=admin).json()["conflicts"] == {}


def test_resolving_twice_is_409_with_the_current_state(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(app_client, a, b)
    detail = only_conflict(app_client, admin)
    body = {"seen_heads": detail["seen_heads"], "fields": {"phone": {"value": "5"}}}
    path = f"{URL}/{detail['conflict']['id']}/resolve"
    assert app_client.post(path, json=body, headers=admin).status_code == 200
    again = app_client.post(path, json={**body, "fields": {"phone": {"value": "6"}}}, headers=admin)
    assert again.status_code == 409
    problem = again.json()
    assert problem["code"] == "already_resolved"
    assert problem["current"]["conflict"]["status"] == "resolved"
    assert problem["current"]["record"]["fields"]["phone"] == "5"
    assert app_client.get("/v1/records/households/h1", headers=admin).json()["fields"]["phone"] == "5"


def test_heads_that_moved_since_loading_are_409_never_overwritten(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b, c = phone("phone-a"), phone("phone-b"), phone("phone-c")
    make_conflict(app_client, a, b, bystanders=(c,))
    detail = only_conflict(app_client, admin)
    # A third phone, offline since the first value, writes another one after the admin loaded.
    c.set("households", "h1", "phone", "4")
    c.sync(app_client)
    body = {"seen_heads": detail["seen_heads"], "fields": {"phone": {"value": "5"}}}
    reply = app_client.post(f"{URL}/{detail['conflict']['id']}/resolve", json=body, headers=admin)
    assert reply.status_code == 409
    problem = reply.json()
    assert problem["code"] == "conflict_changed"
    current = problem["current"]
    assert {h["value"] for h in current["fields"][0]["heads"]} == {"2", "3", "4"}
    assert [e["event"] for e in current["events"]] == ["opened", "updated"]
    assert app_client.get("/v1/records/households/h1", headers=admin).json()["fields"]["phone"] != "5"
    # With the heads it now sees, the admin's resolution goes through.
    body["seen_heads"] = current["seen_heads"]
    assert (
        app_client.post(f"{URL}/{detail['conflict']['id']}/resolve", json=body, headers=admin).status_code
        == 200
    )


def test_a_phone_that_resolves_closes_the_conflict(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(app_client, a, b)
    a.sync(app_client)
    a.set("households", "h1", "phone", "9")  # names both heads it holds
    a.sync(app_client)
    resolved = open_conflicts(app_client, admin, status="resolved")["conflicts"]
    assert len(resolved) == 1
    assert resolved[0]["resolved_via"] == "sync"
    assert resolved[0]["resolved_by_device"] == "phone-a"
    assert open_conflicts(app_client, admin)["counts"]["total"] == 0


def test_a_third_value_updates_the_open_conflict(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b, c = phone("phone-a"), phone("phone-b"), phone("phone-c")
    make_conflict(app_client, a, b, c, values=("2", "3", "4"))
    detail = only_conflict(app_client, admin)
    assert {h["value"] for h in detail["fields"][0]["heads"]} == {"2", "3", "4"}
    assert [e["event"] for e in detail["events"]] == ["opened", "updated"]


def test_delete_against_edit_keep_and_confirm(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b, c = phone("phone-a"), phone("phone-b"), phone("phone-c")
    for record in ("h1", "h2"):
        a.set("households", record, "phone", "1")
    a.sync(app_client)
    b.sync(app_client)
    for record in ("h1", "h2"):
        a.delete("households", record)
        b.set("households", record, "notes", "visited today")
    a.sync(app_client)
    b.sync(app_client)
    page = open_conflicts(app_client, admin, kind="delete")
    assert page["counts"]["by_kind"]["delete"] == 2
    by_record = {s["record_id"]: s["id"] for s in page["conflicts"]}
    for record, choice in (("h1", "keep"), ("h2", "delete")):
        detail = app_client.get(f"{URL}/{by_record[record]}", headers=admin).json()
        assert detail["fields"][0]["field"] == "_deleted"
        assert {h["op"] for h in detail["fields"][0]["heads"]} == {"delete", "set"}
        body = {"seen_heads": detail["seen_heads"], "record": choice}
        reply = app_client.post(f"{URL}/{by_record[record]}/resolve", json=body, headers=admin)
        assert reply.status_code == 200, reply.text
    c.sync(app_client)
    kept = c.record("households", "h1")
    assert (kept.deleted, kept.fields["notes"], kept.fields["phone"], kept.conflicts) == (
        False,
        "visited today",
        "1",
        {},
    )
    assert c.record("households", "h2").deleted
    assert open_conflicts(app_client, admin)["counts"]["total"] == 0


def test_bulk_rule_previews_then_applies_and_skips_what_moved(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b, c = phone("phone-a"), phone("phone-b"), phone("phone-c")
    for record in ("h1", "h2", "h3"):
        a.set("households", record, "notes", "start")
    a.set("households", "h4", "phone", "1")
    a.sync(app_client)
    b.sync(app_client)
    for record in ("h1", "h2", "h3"):
        a.set("households", record, "notes", f"a {record}")
    a.set("households", "h4", "phone", "2")
    a.sync(app_client)
    for record in ("h1", "h2", "h3"):
        b.set("households", record, "notes", f"b {record}")
    b.set("households", "h4", "phone", "3")
    b.sync(app_client)
    rule = {"field": "notes", "rule": "newest", "filter": {"collection": "households"}}
    preview = app_client.post(f"{URL}/bulk", json=rule, headers=admin)
    assert preview.status_code == 200, preview.text
    planned = preview.json()
    assert planned["applied"] is False
    assert sorted(i["record_id"] for i in planned["items"]) == ["h1", "h2", "h3"]
    assert {i["value"] for i in planned["items"]} == {"b h1", "b h2", "b h3"}
    assert {i["outcome"] for i in planned["items"]} == {"planned"}
    # Nothing was written by the preview.
    assert open_conflicts(app_client, admin)["counts"]["total"] == 4
    # h3 moves after the preview: a third phone resolves it itself.
    c.sync(app_client)
    c.set("households", "h3", "notes", "c h3")
    c.sync(app_client)
    expect = [{"conflict_id": i["conflict_id"], "heads": i["heads"]} for i in planned["items"]]
    applied = app_client.post(f"{URL}/bulk", json={**rule, "expect": expect}, headers=admin)
    assert applied.status_code == 200, applied.text
    outcome = {i["record_id"]: i["outcome"] for i in applied.json()["items"]}
    assert outcome == {"h1": "applied", "h2": "applied", "h3": "stale"}
    a.sync(app_client)
    assert [a.record("households", r).fields["notes"] for r in ("h1", "h2", "h3")] == ["b h1", "b h2", "c h3"]
    left = open_conflicts(app_client, admin)["conflicts"]
    assert [s["record_id"] for s in left] == ["h4"]
    (entry,) = app_client.get(
        "/v1/admin/audit", params={"action": "conflict_bulk_resolve"}, headers=admin
    ).json()["entries"]
    assert entry["detail"]["rule"] == "newest"
    assert len(entry["detail"]["applied"]) == 2


def test_bulk_item_whose_heads_changed_is_stale(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b, c = phone("phone-a"), phone("phone-b"), phone("phone-c")
    make_conflict(app_client, a, b, field="notes", values=("x", "y"))
    c.sync(app_client)
    rule = {"field": "notes", "rule": "oldest"}
    planned = app_client.post(f"{URL}/bulk", json=rule, headers=admin).json()
    expect = [{"conflict_id": i["conflict_id"], "heads": i["heads"]} for i in planned["items"]]
    (item,) = planned["items"]
    # Another concurrent value arrives: the same conflict, other heads.
    d = phone("phone-d")
    d.set("households", "h1", "notes", "z")
    d.sync(app_client)
    applied = app_client.post(f"{URL}/bulk", json={**rule, "expect": expect}, headers=admin).json()
    assert [i["outcome"] for i in applied["items"]] == ["stale"]
    assert item["value"] in {"x", "y"}
    assert open_conflicts(app_client, admin)["counts"]["total"] == 1


def test_paging_with_a_cursor(app_client: Client, admin: dict[str, str], phone: Phone) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    for record in ("h1", "h2", "h3"):
        a.set("households", record, "phone", "1")
    a.sync(app_client)
    b.sync(app_client)
    for record in ("h1", "h2", "h3"):
        a.set("households", record, "phone", "2")
        b.set("households", record, "phone", "3")
    a.sync(app_client)
    b.sync(app_client)
    first = open_conflicts(app_client, admin, limit=2)
    assert (len(first["conflicts"]), first["more"], first["counts"]["total"]) == (2, True, 3)
    second = open_conflicts(app_client, admin, limit=2, cursor=first["cursor"])
    assert (len(second["conflicts"]), second["more"], second["cursor"]) == (1, False, None)
    ids = [s["id"] for s in first["conflicts"] + second["conflicts"]]
    assert len(set(ids)) == 3


def test_only_admins_and_only_their_communities(
    app_client: Client, admin: dict[str, str], phone: Phone, settings: Settings
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(app_client, a, b)
    conflict_id = open_conflicts(app_client, admin)["conflicts"][0]["id"]

    async def worker_token() -> str:
        engine = create_engine(settings.database_url)
        try:
            accounts = AccountStore(engine)
            user = await accounts.create_user("li", "grid_worker", UserScope(("c-east",), ("g-1",)), PASSWORD)
            return (await accounts.enroll_device(user.id, "li's phone"))[1]
        finally:
            await engine.dispose()

    worker = bearer(asyncio.run(worker_token()))
    assert app_client.get(URL, headers=worker).status_code == 403
    assert app_client.get(f"{URL}/{conflict_id}", headers=worker).status_code == 403
    # The record belongs to no community of east-admin's: filtered from the list, and not found
    # on it, as an unknown id is.
    east = bearer(sign_in(app_client, "east-admin"))
    assert open_conflicts(app_client, east)["conflicts"] == []
    denied = app_client.get(f"{URL}/{conflict_id}", headers=east)
    assert (denied.status_code, denied.json()["code"]) == (404, "not_found")
    body = {"seen_heads": [], "fields": {"phone": {"value": "5"}}}
    assert app_client.post(f"{URL}/{conflict_id}/resolve", json=body, headers=east).status_code == 404
    assert (
        app_client.post(f"{URL}/bulk", json={"field": "phone", "rule": "newest"}, headers=east).json()[
            "items"
        ]
        == []
    )


def test_bad_input_is_a_clear_4xx(app_client: Client, admin: dict[str, str], phone: Phone) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(app_client, a, b)
    detail = only_conflict(app_client, admin)
    path = f"{URL}/{detail['conflict']['id']}/resolve"
    seen = detail["seen_heads"]
    cases: list[tuple[str, str, dict[str, Any] | None, int, str | None]] = [
        ("get", URL + "?kind=weather", None, 400, "unknown_kind"),
        ("get", URL + "?cursor=%%%", None, 400, "bad_cursor"),
        ("get", URL + "?status=closed", None, 400, None),
        ("get", URL + "/nope", None, 404, "not_found"),
        ("post", path, {"seen_heads": seen}, 400, "incomplete_resolution"),
        ("post", path, {"seen_heads": seen, "fields": {"notes": {"value": "x"}}}, 400, "not_in_conflict"),
        ("post", path, {"seen_heads": seen, "fields": {"phone": {"keep": "nope"}}}, 400, "unknown_head"),
        ("post", path, {"seen_heads": seen, "fields": {"phone": {}}}, 400, "bad_choice"),
        ("post", path, {"seen_heads": seen, "fields": {"phone": {"value": "call me"}}}, 400, "invalid_value"),
        (
            "post",
            path,
            {"seen_heads": seen, "record": "keep", "fields": {"phone": {"value": "1"}}},
            400,
            "not_in_conflict",
        ),
        ("post", path, {"seen": seen}, 400, None),
        ("post", URL + "/bulk", {"field": "phone", "rule": "keep"}, 400, "bad_rule"),
        ("post", URL + "/bulk", {"field": "phone", "rule": "newest", "limit": 0}, 400, "bad_limit"),
    ]
    for method, url, body, status, code in cases:
        reply = app_client.request(method, url, json=body, headers=admin)
        assert reply.status_code == status, (url, body, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
        if code is not None:
            assert reply.json()["code"] == code, (url, body, reply.text)
    assert open_conflicts(app_client, admin)["counts"]["total"] == 1


def test_two_handlers_taking_one_request_is_a_transition_conflict_in_its_community(
    app_client: Client, admin: dict[str, str], phone: Phone, settings: Settings
) -> None:
    office, one, two, later = phone("office"), phone("handler-1"), phone("handler-2"), phone("later")
    build(office, app_client)
    office.set("requests", "q1", "household_id", "h1")
    office.set("requests", "q1", "status", "submitted")
    office.set("requests", "q1", "status", "dispatched")
    office.sync(app_client)
    one.sync(app_client)
    two.sync(app_client)
    # Both accept it offline: the same status, two handlers.
    one.set("requests", "q1", "status", "accepted")
    one.set("requests", "q1", "handler", "handler-1")
    two.set("requests", "q1", "status", "accepted")
    two.set("requests", "q1", "handler", "handler-2")
    one.sync(app_client)
    two.sync(app_client)
    page = open_conflicts(app_client, admin, kind="transition")
    (summary,) = page["conflicts"]
    assert (summary["community_id"], summary["grid_id"]) == ("c1", "g1")
    assert summary["kinds"] == ["field", "transition"]
    assert summary["fields"] == ["handler", "status"]
    assert page["counts"]["by_community"] == {"c1": 1}
    assert page["counts"]["by_grid"] == {"g1": 1}
    assert open_conflicts(app_client, admin, community="c1", grid="g1")["counts"]["total"] == 1
    assert open_conflicts(app_client, admin, community="c2")["counts"]["total"] == 0
    assert open_conflicts(app_client, admin, grid="g2")["conflicts"] == []
    # An admin of another community neither sees nor touches it; the community's own admin does.
    east = bearer(sign_in(app_client, "east-admin"))
    assert open_conflicts(app_client, east)["counts"]["total"] == 0
    assert app_client.get(f"{URL}/{summary['id']}", headers=east).status_code == 404
    create_user(settings, "c1-admin", "community_admin", ("c1",))
    own = bearer(sign_in(app_client, "c1-admin"))
    assert open_conflicts(app_client, own)["counts"]["by_kind"]["transition"] == 1
    detail = app_client.get(f"{URL}/{summary['id']}", headers=own).json()
    heads = {f["field"]: {h["value"]: h["change_id"] for h in f["heads"]} for f in detail["fields"]}
    # A status the request may not move to is refused like a phone's; the handler choice stands.
    illegal = {
        "seen_heads": detail["seen_heads"],
        "fields": {"handler": {"keep": heads["handler"]["handler-2"]}, "status": {"value": "rated"}},
    }
    refused = app_client.post(f"{URL}/{summary['id']}/resolve", json=illegal, headers=own)
    assert refused.status_code == 400
    assert refused.json()["code"].startswith("illegal_transition")
    detail = refused.json()["current"]
    assert (detail["conflict"]["status"], detail["conflict"]["fields"]) == ("open", ["status"])
    assert detail["record"]["fields"]["handler"] == "handler-2"
    assert set(heads["status"]) == {"accepted"}
    assert len(next(f for f in detail["fields"] if f["field"] == "status")["heads"]) == 2
    body = {
        "seen_heads": detail["seen_heads"],
        "fields": {"status": {"keep": next(iter(heads["status"].values()))}},
    }
    reply = app_client.post(f"{URL}/{summary['id']}/resolve", json=body, headers=own)
    assert reply.status_code == 200, reply.text
    assert reply.json()["conflict"]["status"] == "resolved"
    later.sync(app_client)
    record = later.record("requests", "q1")
    assert (record.fields["status"], record.fields["handler"], record.conflicts) == (
        "accepted",
        "handler-2",
        {},
    )
    assert open_conflicts(app_client, admin)["counts"]["total"] == 0
    (entry,) = app_client.get("/v1/admin/audit", params={"action": "conflict_resolve"}, headers=own).json()[
        "entries"
    ]
    assert (entry["community_id"], entry["actor_name"]) == ("c1", "c1-admin")


def test_an_overspent_balance_is_listed_in_the_inbox_for_its_community(
    app_client: Client, admin: dict[str, str], phone: Phone
) -> None:
    a, b = phone("phone-a"), phone("phone-b")
    build(a, app_client)

    def entry(p: Replica, record_id: str, kind: str, points: int) -> None:
        for name, value in (("resident_id", "r1"), ("kind", kind), ("points", points), ("reason", "x")):
            p.set("points", record_id, name, value)

    entry(a, "e1", "earned", 30)
    a.sync(app_client)
    b.sync(app_client)
    entry(a, "e2", "redeemed", 20)
    entry(b, "e3", "redeemed", 20)
    a.sync(app_client)
    b.sync(app_client)
    page = open_conflicts(app_client, admin, kind="overspend")
    assert page["counts"]["by_kind"]["overspend"] == 1
    assert page["counts"]["total"] == 1
    (flag,) = page["overspends"]
    assert (flag["record_id"], flag["community_id"], flag["grid_id"]) == ("r1", "c1", "g1")
    assert open_conflicts(app_client, admin, community="c2")["overspends"] == []
    assert open_conflicts(app_client, admin, kind="field")["overspends"] == []
    east = bearer(sign_in(app_client, "east-admin"))
    assert open_conflicts(app_client, east)["overspends"] == []


async def test_the_migration_opens_conflicts_a_database_already_holds(settings: Settings) -> None:
    from alembic import command
    from sqlalchemy import text

    from server.db.engine import alembic_config, migrate
    from server.sync.store import SyncStore
    from tests.factories import set_

    engine = create_engine(settings.database_url)
    try:
        store = SyncStore(engine, settings)

        async def untracked(*_: Any, **__: Any) -> None:
            return None

        store.conflict_tracker.track = untracked  # type: ignore[method-assign]  # as before the inbox
        first = set_("phone", "1", record="h9")
        await store.writer.push(None, "r1", [first])
        await store.writer.push(
            None,
            "r1",
            [
                set_("phone", "2", pred=(first.id,), record="h9", replica="r1"),
                set_("phone", "3", pred=(first.id,), record="h9", replica="r2"),
            ],
        )
        # Back to before the inbox (the pushes ran on today's schema, later migrations need it).
        async with engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.downgrade(alembic_config(settings.database_url, sync), "0003_access")
            )
        await migrate(engine)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(text("SELECT record_id, status, kinds, fields FROM conflicts"))
            ).all()
        assert [tuple(r) for r in rows] == [("h9", "open", ",field,", ",phone,")]
    finally:
        await engine.dispose()


def test_a_cookie_write_must_be_json(app_client: Client) -> None:
    """A cross-site form can post text/plain that looks like JSON; with only the cookie, the
    conflict API refuses anything but application/json."""
    app_client.post("/v1/admin/login", json={"name": "district", "password": PASSWORD})
    body = b'{"field": "notes", "rule": "newest"}'
    smuggled = app_client.post(f"{URL}/bulk", content=body, headers={"content-type": "text/plain"})
    assert (smuggled.status_code, smuggled.json()["code"]) == (415, "json_required")
    honest = app_client.post(f"{URL}/bulk", content=body, headers={"content-type": "application/json"})
    assert honest.status_code == 200
