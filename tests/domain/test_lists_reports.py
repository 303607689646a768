"""Record lists (filters, paging by id, the single-record shape) and the summary report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync.client import Replica
from tests.domain.district import Client, build, view, write

NOON = "2026-11-25T12:00:00+08:00"


def page_all(client: Client, collection: str, **params: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        reply = client.get(f"/v1/records/{collection}", params=query)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        got += body["records"]
        cursor = body["cursor"]
        if not body["more"]:
            return got


def test_lists_filter_and_page_every_record_once(client: Client, phone: Callable[[str], Replica]) -> None:
    a = phone("office")
    build(a, client)
    for i in range(23):
        write(
            a,
            "households",
            f"x{i:02d}",
            {"building_id": "b1" if i % 2 else "b3", "tags": ["veteran"] if i % 3 == 0 else []},
        )
    a.delete("households", "x22")
    a.sync(client)
    everything = page_all(client, "households", limit=4)
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == 4 + 22
    assert all(r == view(client, "households", r["id"]) for r in everything)
    with_deleted = page_all(client, "households", limit=5, include_deleted="true")
    assert [r["id"] for r in with_deleted if r["deleted"]] == ["x22"]
    in_b1 = {r["id"] for r in page_all(client, "households", building="b1", limit=3)}
    assert in_b1 == {"h1", "h2"} | {f"x{i:02d}" for i in range(1, 22, 2)}
    assert {r["id"] for r in page_all(client, "households", community="c2", limit=2)} == {"h4"} | {
        f"x{i:02d}" for i in range(0, 22, 2)
    }
    veterans = page_all(client, "households", tag="veteran", grid="g1", limit=2)
    assert [r["id"] for r in veterans] == ["x03", "x09", "x15", "x21"]
    # updated_since takes a cursor: only what changed after it.
    cursor = client.get("/v1/sync/pull", params={"limit": 5000}).json()["cursor"]
    a.set("households", "x05", "notes", "moved to the ground floor")
    a.sync(client)
    assert [r["id"] for r in page_all(client, "households", updated_since=cursor)] == ["x05"]


def test_summary_figures(client: Client, phone: Callable[[str], Replica]) -> None:
    a = phone("office")
    build(a, client)
    records: list[tuple[str, str, dict[str, Any]]] = [
        ("visits", "v1", {"household_id": "h1", "visited_at": "2026-11-20T10:00:00+08:00"}),
        ("visits", "v2", {"household_id": "h1", "visited_at": "2026-11-21T10:00:00+08:00"}),
        ("visits", "v3", {"household_id": "h2", "visited_at": "2026-09-01T10:00:00+08:00"}),  # too long ago
        ("visits", "v4", {"household_id": "h3", "visited_at": "2026-11-24T10:00:00+08:00"}),
        (
            "visits",
            "v5",
            {"household_id": "h4", "visited_at": "2026-11-24T10:00:00+08:00"},
        ),  # other community
        (
            "hazards",
            "z1",
            {
                "grid_id": "g1",
                "area": "Underground garage",
                "severity": "high",
                "status": "open",
                "reported_at": "2026-11-23T10:00:00+08:00",
            },
        ),
        (
            "hazards",
            "z2",
            {
                "building_id": "b2",
                "severity": "low",
                "status": "in-hand",
                "reported_at": "2026-10-01T10:00:00+08:00",
            },
        ),
        (
            "hazards",
            "z3",
            {
                "household_id": "h1",
                "severity": "high",
                "status": "fixed",
                "reported_at": "2026-11-01T10:00:00+08:00",
            },
        ),
        (
            "requests",
            "q1",
            {
                "household_id": "h1",
                "submitted_at": "2026-11-10T10:00:00+08:00",
                "status": "submitted",
                "due_date": "2026-11-12",
            },
        ),
        (
            "requests",
            "q2",
            {"household_id": "h2", "submitted_at": "2026-11-11T10:00:00+08:00", "status": "submitted"},
        ),
        (
            "requests",
            "q3",
            {"household_id": "h3", "submitted_at": "2026-11-12T10:00:00+08:00", "status": "submitted"},
        ),
        (
            "requests",
            "q4",
            {
                "household_id": "h3",
                "submitted_at": "2026-08-01T10:00:00+08:00",
                "status": "submitted",
                "due_date": "2026-08-03",
            },
        ),
    ]
    for collection, record_id, fields in records:
        write(a, collection, record_id, fields)
    for status in ("dispatched", "accepted", "done", "rated"):
        a.set("requests", "q2", "status", status)
    a.set("requests", "q2", "satisfaction", 4)
    a.set("requests", "q3", "status", "cancelled")
    assert a.sync(client).rejected == []
    summary = client.get("/v1/reports/summary", params={"community": "c1", "at": NOON}).json()
    assert summary["community"] == "c1"
    assert summary["window_days"] == 30
    coverage = {
        g["grid_id"]: (g["name"], g["households"], g["visited"], g["coverage"])
        for g in summary["visit_coverage"]
    }
    assert coverage == {"g1": ("Grid 1", 2, 1, 0.5), "g2": ("Grid 2", 1, 1, 1.0)}
    assert summary["hazards"] == {
        "open": 2,
        "by_severity": {"high": 1, "low": 1},
        "by_age": {"0-7d": 1, "8-30d": 0, "31-90d": 1, "91d+": 0},
    }
    assert summary["requests"] == {
        "opened": 3,
        "completed": 1,
        "cancelled": 1,
        "overdue": 2,
        "completion_rate": 0.5,
        "mean_satisfaction": 4.0,
    }
    assert summary["elderly"] == {
        "elderly_alone": 3,
        "no_signal_today": 3,
        "past_cutoff": True,
        "under_agreement": 3,
    }
    district = client.get("/v1/reports/summary", params={"at": NOON}).json()
    assert [g["grid_id"] for g in district["visit_coverage"]] == ["g1", "g2", "g3"]
    week = client.get("/v1/reports/summary", params={"community": "c1", "at": NOON, "days": 7}).json()
    assert [g["visited"] for g in week["visit_coverage"]] == [1, 1]
    assert week["requests"]["opened"] == 0
