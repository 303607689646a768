"""Operating the server: ``GET /metrics`` parses with Prometheus' own parser and counts what the
pushes did, every response carries its request id (problem details too), a JSON log line holds
no secret, and the health endpoints tell a live process from a ready one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import text

from schemas.protocol import PushRequest
from server.app import create_app
from server.db.engine import create_engine
from server.observability.metrics import forget_dead_workers
from server.observability.requests import JsonFormatter
from server.settings import Settings
from sync.client import Replica
from tests.factories import make_conflict, set_

Client = TestClient  # type: ignore[type-arg]
METRICS_TOKEN = "scrape-secret-7f3a"
PHONE_NUMBER = "13912345678"
ID_NUMBER = "11010119900307123X"


@pytest.fixture
def ops_client(settings: Settings, enroll: Callable[[str], str]) -> Iterator[Client]:
    token = enroll("ops-phone")
    app = create_app(replace(settings, metrics_token=METRICS_TOKEN, log_format="json"))
    with TestClient(app) as client:
        client.headers["authorization"] = f"Bearer {token}"
        yield client


def _scrape(client: Client) -> dict[str, list[Sample]]:
    reply = client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(reply.text)}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _push(client: Client, *changes: object) -> dict[str, object]:
    body = msgspec.json.encode(PushRequest(replica_id="ops-phone", changes=list(changes)))  # type: ignore[arg-type]
    reply = client.post("/v1/sync/push", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 200, reply.text
    answer: dict[str, object] = reply.json()
    return answer


def test_a_scrape_parses_and_counts_pushes_conflicts_groups_and_pull_lag(
    ops_client: Client, phone: Callable[[str], Replica]
) -> None:
    before = _scrape(ops_client)
    _push(
        ops_client, set_("notes", "first visit", record="h-metrics"), set_("members_count", -3, record="h-m2")
    )
    a, b = phone("phone-a"), phone("phone-b")
    make_conflict(ops_client, a, b, record="h-conflict", field="notes", values=("from a", "from b"))
    # A pull from a cursor acknowledges it (after the page is sent): the lag histogram counts it.
    cursor = a.cursor
    assert ops_client.get("/v1/sync/pull", params={"since": cursor}).status_code == 200
    # A scanner's random paths share one label: no series per path.
    assert ops_client.get("/wp-admin/setup-config-7d1e.php").status_code == 404
    after = _scrape(ops_client)

    for family in (
        "gridsync_http_requests",
        "gridsync_http_request_duration_seconds",
        "gridsync_changes",
        "gridsync_conflicts_opened",
        "gridsync_conflicts_resolved",
        "gridsync_push_group_pushes",
        "gridsync_push_group_changes",
        "gridsync_push_wait_seconds",
        "gridsync_database_connections_in_use",
        "gridsync_sse_connections",
        "gridsync_replica_reads",
        "gridsync_pull_lag_changes",
    ):
        assert family in after, sorted(after)

    def grew(family: str, name: str, by: float, **labels: str) -> None:
        assert _value(after[family], name, **labels) - _value(before.get(family, []), name, **labels) >= by, (
            family,
            labels,
        )

    grew("gridsync_changes", "gridsync_changes_total", 1, result="applied")
    grew("gridsync_changes", "gridsync_changes_total", 1, result="rejected", code="invalid_value")
    grew("gridsync_conflicts_opened", "gridsync_conflicts_opened_total", 1)
    grew("gridsync_http_requests", "gridsync_http_requests_total", 1, route="/v1/sync/push", status="200")
    grew("gridsync_http_requests", "gridsync_http_requests_total", 4, route="/v1/sync/exchange", status="200")
    grew(
        "gridsync_http_request_duration_seconds",
        "gridsync_http_request_duration_seconds_count",
        1,
        route="/v1/sync/push",
    )
    grew("gridsync_push_group_pushes", "gridsync_push_group_pushes_count", 5)
    grew("gridsync_http_requests", "gridsync_http_requests_total", 1, route="unmatched", status="404")
    routes = {sample.labels.get("route", "") for sample in after["gridsync_http_requests"]}
    assert not any("wp-admin" in route for route in routes)
    # Every active device with an acknowledged cursor is in the +Inf bucket, none per device.
    lag = after["gridsync_pull_lag_changes"]
    assert _value(lag, "gridsync_pull_lag_changes_bucket", le="+Inf") >= 1
    assert not any("device" in key for s in lag for key in s.labels)
    # The conflict's phones pulled to the end, so the acknowledged lag is small.
    assert _value(lag, "gridsync_pull_lag_changes_bucket", le="10") >= 1


def test_metrics_need_the_token_from_anywhere_but_loopback(settings: Settings) -> None:
    with TestClient(create_app(replace(settings, metrics_token=METRICS_TOKEN))) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"authorization": "Bearer not-it"})
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "metrics_token_required"
    # No token configured: the test client is not a loopback caller, so it is refused.
    with TestClient(create_app(settings)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["code"] == "metrics_not_public"


def test_every_response_carries_its_request_id_and_problems_name_it(ops_client: Client) -> None:
    ok = ops_client.get("/health/live")
    assert len(ok.headers["x-request-id"]) == 32
    bad = ops_client.get("/v1/sync/pull", params={"since": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json()["request_id"] == bad.headers["x-request-id"]
    # A proxy's id is kept; one that could forge a log line is replaced.
    kept = ops_client.get("/v1/sync/pull", params={"since": "x"}, headers={"x-request-id": "edge-42.a"})
    assert kept.headers["x-request-id"] == "edge-42.a"
    assert kept.json()["request_id"] == "edge-42.a"
    forged = ops_client.get("/nowhere", headers={"x-request-id": 'a" "status": 200'})
    assert forged.status_code == 404
    assert forged.headers["x-request-id"] != 'a" "status": 200'
    assert forged.json()["request_id"] == forged.headers["x-request-id"]
    unauthorised = ops_client.get("/v1/sync/pull", headers={"authorization": "Bearer nope"})
    assert unauthorised.status_code == 401
    assert unauthorised.json()["request_id"] == unauthorised.headers["x-request-id"]


def test_a_push_log_line_holds_no_phone_number_id_number_or_token(
    ops_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = ops_client.headers["authorization"].removeprefix("Bearer ")
    household = set_("phone", PHONE_NUMBER, record="h-private")
    resident = set_("id_number", ID_NUMBER, record="r-private", collection="residents")
    linked = set_("household_id", "h-private", record="r-private", collection="residents")
    with caplog.at_level(logging.DEBUG):
        answer = _push(ops_client, household, resident, linked)
    statuses = [result["status"] for result in answer["results"]]  # type: ignore[attr-defined]
    assert statuses.count("applied") >= 1
    lines = [JsonFormatter().format(record) for record in caplog.records]
    for line in lines:
        assert PHONE_NUMBER not in line
        assert ID_NUMBER not in line
        assert token not in line
    requests = [json.loads(line) for line in lines if '"logger": "gridsync.requests"' in line]
    assert len(requests) == 1, lines
    [entry] = requests
    assert entry["route"] == "/v1/sync/push"
    assert entry["status"] == 200
    assert entry["method"] == "POST"
    assert entry["device_id"]
    assert entry["changes"] == {"pushed": 3, "rejected": statuses.count("rejected")}
    assert entry["duration_ms"] > 0
    assert len(entry["request_id"]) == 32


def test_live_and_ready_and_not_ready_when_the_schema_is_behind(
    ops_client: Client, settings: Settings
) -> None:
    assert ops_client.get("/health/live").json() == {"status": "ok"}
    assert ops_client.get("/health/ready").json() == {"status": "ok"}
    assert ops_client.get("/health").json() == {"status": "ok"}

    async def roll_back_the_stamp() -> None:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        finally:
            await engine.dispose()

    asyncio.run(roll_back_the_stamp())
    not_ready = ops_client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["code"] == "not_ready"
    # Live says nothing of the database: the process still answers.
    assert ops_client.get("/health/live").status_code == 200


def test_a_dead_workers_live_gauges_leave_the_sums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn replaces a worker that died; its connections and streams must not stay counted."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gone = 2**22 + 17  # above Linux's default pid_max: no such process
    for name in (f"gauge_livesum_{gone}.db", f"gauge_livesum_{os.getpid()}.db", f"counter_{gone}.db"):
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers()
    # Counters of a dead worker still count (requests it answered happened); its live gauges go.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{gone}.db",
        f"gauge_livesum_{os.getpid()}.db",
    ]
