"""The five-step request loop across offline phones: resident orders, community dispatches,
property company takes, party member supervises, resident rates."""

from __future__ import annotations

from collections.abc import Callable

from sync.client import Replica
from tests.domain.district import Client, as_dict, build, change, push, view

Q = "requests"


def status_of(client: Client, record_id: str = "q1") -> str:
    status: str = view(client, Q, record_id)["fields"]["status"]
    return status


def dispatched(client: Client, phone: Callable[[str], Replica], *handlers: str) -> list[Replica]:
    """The office's phone and the handlers' phones, all holding request q1, dispatched."""
    office = phone("office")
    build(office, client)
    office.set(Q, "q1", "household_id", "h1")
    office.set(Q, "q1", "status", "submitted")
    office.set(Q, "q1", "status", "dispatched")
    office.sync(client)
    others = [phone(name) for name in handlers]
    for p in others:
        p.sync(client)
    return [office, *others]


def test_the_five_step_loop_with_four_offline_phones(client: Client, phone: Callable[[str], Replica]) -> None:
    worker, office, handler, supervisor = (phone(n) for n in ("worker", "office", "handler", "party-member"))
    build(worker, client)
    for p in (office, handler, supervisor):
        p.sync(client)
    # 1. The resident orders, through the grid worker's phone, offline at the door.
    worker.set(Q, "q1", "household_id", "h1")
    worker.set(Q, "q1", "title", "Kitchen pipe leaks")
    worker.set(Q, "q1", "status", "submitted")
    worker.sync(client)
    # 2. The community office dispatches it to the property company.
    office.sync(client)
    office.set(Q, "q1", "status", "dispatched")
    office.set(Q, "q1", "dispatched_to", "Lvyuan Property Services")
    office.set(Q, "q1", "due_date", "2026-11-28")
    office.sync(client)
    # 3. The company's handler takes it, offline in the basement.
    handler.sync(client)
    handler.set(Q, "q1", "status", "accepted")
    handler.set(Q, "q1", "handler", "handler-07")
    # 4. The supervising party member confirms it done, after the handler's phone came back.
    handler.sync(client)
    supervisor.sync(client)
    supervisor.set(Q, "q1", "status", "done")
    supervisor.set(Q, "q1", "supervisor", "party-member-12")
    supervisor.sync(client)
    # 5. The resident rates it on the worker's phone.
    worker.sync(client)
    worker.set(Q, "q1", "status", "rated")
    worker.set(Q, "q1", "satisfaction", 5)
    worker.set(Q, "q1", "comment", "Fixed the same day")
    report = worker.sync(client)
    assert report.rejected == []
    record = view(client, Q, "q1")
    assert record["fields"]["status"] == "rated"
    assert record["fields"]["satisfaction"] == 5
    assert record["conflicts"] == {}
    for p in (office, handler, supervisor):
        p.sync(client)
        assert as_dict(p, Q, "q1") == record
    assert client.get("/v1/records/requests", params={"status": "rated"}).json()["records"] == [record]


def test_a_skipped_step_is_rejected_with_the_status_it_came_from(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    worker = phone("worker")
    build(worker, client)
    worker.set(Q, "q1", "household_id", "h1")
    worker.set(Q, "q1", "status", "submitted")
    worker.set(Q, "q1", "status", "done")  # skips dispatched and accepted
    worker.set(Q, "q1", "title", "Still applied")
    report = worker.sync(client)
    assert [code for _, code in report.rejected] == ["illegal_transition_from_submitted"]
    ((_, _, message),) = worker.rejected()
    assert all(word in message for word in ("'submitted'", "'dispatched'", "'done'"))
    assert status_of(client) == "submitted"
    assert view(client, Q, "q1")["fields"]["title"] == "Still applied"
    # The phone drops the refused change and shows the server's status again.
    assert as_dict(worker, Q, "q1")["fields"]["status"] == "submitted"
    # A brand-new request must start at submitted.
    worker.set(Q, "q2", "household_id", "h1")
    worker.set(Q, "q2", "status", "accepted")
    assert [code for _, code in worker.sync(client).rejected] == ["illegal_transition_from_new"]


def test_a_late_phone_is_judged_by_the_status_it_saw(client: Client, phone: Callable[[str], Replica]) -> None:
    office, late, fast = dispatched(client, phone, "late-handler", "fast-handler")
    # Offline, the late phone takes the request; meanwhile another handler takes it and
    # finishes it online.
    late.set(Q, "q1", "status", "accepted")
    late.set(Q, "q1", "handler", "handler-01")
    fast.set(Q, "q1", "status", "accepted")
    fast.set(Q, "q1", "handler", "handler-02")
    fast.sync(client)
    fast.set(Q, "q1", "status", "done")
    fast.sync(client)
    assert status_of(client) == "done"
    # The late phone's accept arrives after done: legal from what it saw (dispatched), so kept.
    assert late.sync(client).rejected == []
    record = view(client, Q, "q1")
    assert {h["value"] for h in record["conflicts"]["status"]} == {"accepted", "done"}
    assert {h["value"] for h in record["conflicts"]["handler"]} == {"handler-01", "handler-02"}
    fast.sync(client)
    office.sync(client)
    for p in (late, fast, office):
        assert as_dict(p, Q, "q1") == record
    flags = client.get("/v1/flags", params={"kind": "concurrent_transition"}).json()["flags"]
    assert [(f["collection"], f["record_id"]) for f in flags] == [(Q, "q1")]
    # An admin resolves it with an ordinary set naming both heads; the flag goes away.
    office.set(Q, "q1", "status", "done")
    office.sync(client)
    assert "status" not in view(client, Q, "q1")["conflicts"]
    assert client.get("/v1/flags", params={"kind": "concurrent_transition"}).json()["flags"] == []


def test_two_handlers_accepting_offline_converge_and_show_a_conflict(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    _, one, two = dispatched(client, phone, "handler-1", "handler-2")
    one.set(Q, "q1", "status", "accepted")
    one.set(Q, "q1", "handler", "handler-1")
    two.set(Q, "q1", "status", "cancelled")
    results = [one.sync(client), two.sync(client), one.sync(client)]
    assert all(r.rejected == [] for r in results)
    record = view(client, Q, "q1")
    heads = record["conflicts"]["status"]
    assert {h["value"] for h in heads} == {"accepted", "cancelled"}
    assert record["fields"]["status"] == heads[0]["value"]  # the newest head is shown
    assert as_dict(one, Q, "q1") == as_dict(two, Q, "q1") == record


def test_bad_request_values_are_rejected_alone(client: Client, phone: Callable[[str], Replica]) -> None:
    build(phone("office"), client)
    results = push(
        client,
        [
            change(Q, "q9", "household_id", "h1"),
            change(Q, "q9", "status", "finished"),
            change(Q, "q9", "satisfaction", 6),
            change(Q, "q9", "satisfaction", 0),
            change(Q, "q9", "status", "submitted"),
            change(Q, "q9", "satisfaction", 4),
        ],
    )
    assert [r["code"] for r in results] == [
        None,
        "invalid_value",
        "invalid_value",
        "invalid_value",
        None,
        None,
    ]
    assert "allowed: submitted, dispatched" in results[1]["message"]
    assert view(client, Q, "q9")["fields"] == {"household_id": "h1", "status": "submitted", "satisfaction": 4}
