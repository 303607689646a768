"""Deliberation cases through the eight-step work method (收集问题 ... 民主监督) across offline
phones: the step is judged like a request's status, two concurrent moves are kept and flagged,
and the office's summary counts the cases and how many are settled."""

from __future__ import annotations

from collections.abc import Callable

from sync.client import Replica
from tests.domain.district import Client, as_dict, build, view

D = "deliberations"
EIGHT_STEPS = ("collect", "topic", "review", "pre-meeting", "meeting", "publish", "implement", "supervise")


def summary(client: Client) -> dict[str, int]:
    figures: dict[str, int] = client.get("/v1/reports/summary", params={"community": "c1"}).json()[
        "deliberations"
    ]
    return figures


def test_two_offline_workers_collect_problems_and_the_office_settles_the_case(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office, one, two = (phone(n) for n in ("office", "worker-1", "worker-2"))
    build(office, client)
    one.sync(client)
    two.sync(client)
    # Offline in the garage and on the road, each worker collects a problem.
    one.set(D, "d-garage", "grid_id", "g1")
    one.set(D, "d-garage", "title", "地库漏水")
    one.set(D, "d-garage", "step", "collect")
    one.add(D, "d-garage", "hazard_ids", "hz-garage")
    two.set(D, "d-road", "community_id", "c1")
    two.set(D, "d-road", "title", "路面塌陷")
    two.set(D, "d-road", "step", "collect")
    assert one.sync(client).rejected == []
    assert two.sync(client).rejected == []
    assert summary(client)["cases"] == 2
    # The office walks the garage case through every step to settled.
    office.sync(client)
    for step in EIGHT_STEPS[1:]:
        office.set(D, "d-garage", "step", step)
    office.set(D, "d-garage", "lead_body", "锦乐苑小区党支部")
    office.add(D, "d-garage", "participants", "物业公司")
    office.add(D, "d-garage", "attended", "物业公司")
    office.set(D, "d-garage", "decision", "维修基金出资，物业七日内完成防水")
    office.set(D, "d-garage", "votes_for", 41)
    office.set(D, "d-garage", "step", "settled")
    assert office.sync(client).rejected == []
    record = view(client, D, "d-garage")
    assert record["fields"]["step"] == "settled"
    assert record["fields"]["hazard_ids"] == ["hz-garage"]
    one.sync(client)
    assert as_dict(one, D, "d-garage") == record
    figures = summary(client)
    assert (figures["cases"], figures["settled"], figures["open"]) == (2, 1, 1)
    assert figures["by_step"]["collect"] == 1


def test_a_skipped_step_is_rejected_with_the_step_it_came_from(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    worker = phone("worker")
    build(worker, client)
    worker.set(D, "d1", "community_id", "c1")
    worker.set(D, "d1", "step", "collect")
    worker.set(D, "d1", "step", "meeting")  # skips topic, review and pre-meeting
    assert [code for _, code in worker.sync(client).rejected] == ["illegal_transition_from_collect"]
    assert view(client, D, "d1")["fields"]["step"] == "collect"
    worker.set(D, "d2", "community_id", "c1")
    worker.set(D, "d2", "step", "publish")
    assert [code for _, code in worker.sync(client).rejected] == ["illegal_transition_from_new"]


def test_two_offline_phones_moving_one_case_converge_and_are_flagged(
    client: Client, phone: Callable[[str], Replica]
) -> None:
    office, one, two = (phone(n) for n in ("office", "secretary", "worker"))
    build(office, client)
    office.set(D, "d1", "community_id", "c1")
    for step in ("collect", "topic", "review", "pre-meeting", "meeting"):
        office.set(D, "d1", "step", step)
    office.sync(client)
    one.sync(client)
    two.sync(client)
    # Offline, the secretary publishes the decision while the worker records that the meeting
    # did not agree and goes back to consultation: both legal from what each phone saw.
    one.set(D, "d1", "step", "publish")
    two.set(D, "d1", "step", "pre-meeting")
    assert one.sync(client).rejected == []
    assert two.sync(client).rejected == []
    one.sync(client)
    record = view(client, D, "d1")
    assert {h["value"] for h in record["conflicts"]["step"]} == {"publish", "pre-meeting"}
    assert as_dict(one, D, "d1") == as_dict(two, D, "d1") == record
    flags = client.get("/v1/flags", params={"kind": "concurrent_transition"}).json()["flags"]
    assert [(f["collection"], f["record_id"]) for f in flags] == [(D, "d1")]
    # The office decides with an ordinary set naming both heads; the flag goes away.
    office.sync(client)
    office.set(D, "d1", "step", "publish")
    assert office.sync(client).rejected == []
    assert client.get("/v1/flags", params={"kind": "concurrent_transition"}).json()["flags"] == []
    assert summary(client)["overdue"] == 0
