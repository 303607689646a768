"""Residents rate for themselves (群众评单): a one-time link and its small page, no account; a
worker's phone types a rating only when marked as rated by phone on the resident's behalf; a
rating through the link and one typed offline are both kept, and every phone converges."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from server.access.principals import UserScope
from server.settings import Settings
from sync.client import Replica
from tests.domain.district import Client, as_dict, build, view
from tests.factories import enroll_user

Q = "requests"


def done_request(client: Client, office: Replica) -> None:
    build(office, client)
    for status in ("submitted", "dispatched", "accepted", "done"):
        office.set(Q, "q1", "status", status)
    office.set(Q, "q1", "household_id", "h1")
    office.set(Q, "q1", "title", "厨房水管漏水")
    assert office.sync(client).rejected == []


def link_token(client: Client) -> str:
    reply = client.post("/v1/requests/q1/rating-link")
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["qr_svg"].lstrip().startswith("<svg")
    token: str = body["url"].rsplit("/r/", 1)[1]
    return token


def test_the_resident_rates_through_a_one_time_link(client: Client, phone: Callable[[str], Replica]) -> None:
    office = phone("office")
    build(office, client)
    office.set(Q, "q1", "household_id", "h1")
    office.set(Q, "q1", "status", "submitted")
    office.sync(client)
    assert client.post("/v1/requests/q1/rating-link").json()["code"] == "not_done"
    done_request(client, office)
    token = link_token(client)
    page = client.get(f"/r/{token}", headers={"authorization": ""})
    assert page.status_code == 200
    assert "请为这次服务打分" in page.text
    assert "厨房水管漏水" in page.text
    assert client.post(f"/r/{token}", data={"satisfaction": "9"}).status_code == 400
    sent = client.post(
        f"/r/{token}", data={"satisfaction": "5", "comment": "修得很快"}, headers={"authorization": ""}
    )
    assert sent.status_code == 200
    assert "谢谢" in sent.text
    fields = view(client, Q, "q1")["fields"]
    assert (fields["status"], fields["satisfaction"], fields["comment"]) == ("rated", 5, "修得很快")
    assert fields["rated_on_behalf"] is False
    # Once only: the page and the form both answer that the link is spent.
    assert client.get(f"/r/{token}").status_code == 404
    assert client.post(f"/r/{token}", data={"satisfaction": "1"}).status_code == 404
    assert view(client, Q, "q1")["fields"]["satisfaction"] == 5
    assert client.get("/r/not-a-token").status_code == 404
    office.sync(client)
    assert as_dict(office, Q, "q1") == view(client, Q, "q1")


def test_a_worker_types_a_rating_only_on_the_residents_behalf(
    client: Client, phone: Callable[[str], Replica], settings: Settings, tmp_path: Path
) -> None:
    office = phone("office")
    done_request(client, office)
    token = asyncio.run(enroll_user(settings, "w", "grid_worker", UserScope(("c1",), ("g1",))))
    worker = Replica(tmp_path / "worker.db", "worker", token=token)
    worker.sync(client)
    worker.set(Q, "q1", "satisfaction", 2)
    assert [code for _, code in worker.sync(client).rejected] == ["rating_is_the_residents"]
    # Offline: the worker rates by phone on the resident's behalf while the resident, told by
    # the office, rates through the link. Both ratings are kept as a conflict, not lost.
    link = link_token(client)
    worker.set(Q, "q1", "rated_on_behalf", True)
    worker.set(Q, "q1", "satisfaction", 4)
    assert client.post(f"/r/{link}", data={"satisfaction": "5"}).status_code == 200
    assert worker.sync(client).rejected == []
    worker.sync(client)
    office.sync(client)
    record = view(client, Q, "q1")
    assert {h["value"] for h in record["conflicts"]["satisfaction"]} == {4, 5}
    assert as_dict(worker, Q, "q1") == as_dict(office, Q, "q1") == record
    worker.close()
