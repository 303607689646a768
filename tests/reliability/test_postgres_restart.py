"""Fault 3: PostgreSQL goes down and comes back under load. Requests during the outage get a
prompt 503 with Retry-After and problem details (never a hang, never a 500 with a trace), the
connection pool recovers by itself, and the phones resume and converge.

The test stops the machine's real PostgreSQL cluster (other suites sharing it see a short blip)
and always leaves it running."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.reliability.harness import (
    FieldDay,
    FieldPhone,
    ServerProcess,
    check_log_and_states,
    record_figures,
    views,
)

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL and not os.environ.get("CI"), reason="needs PostgreSQL (see tests/conftest.py)"
)


def _cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        command += ["--mode", "fast"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _postgres_up() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False, timeout=10).returncode == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_restart_under_load_answers_503_and_recovers(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    server = ServerProcess(
        database_url, tmp_path / "server.log", env={"GRIDSYNC_DATABASE_CONNECT_TIMEOUT": "3"}
    )
    phones = [
        FieldPhone(tmp_path / f"phone-{n}.db", f"phone-{n}", enroll(f"phone-{n}"), server.base_url)
        for n in range(2)
    ]
    server.start()
    day = FieldDay(phones, timeout=15.0, most_edits=30, backoff=0.05)
    day.start()
    answers: list[tuple[str, int, float]] = []
    probe_headers = {"authorization": f"Bearer {phones[0].token}"}
    try:
        time.sleep(1.0)  # load is running
        _cluster("stop")
        try:
            with httpx.Client(base_url=server.base_url, timeout=15.0, headers=probe_headers) as http:
                body = {"replica_id": "probe", "changes": []}
                for _ in range(3):
                    for method, path in (
                        ("POST", "/v1/sync/push"),
                        ("GET", "/v1/sync/pull"),
                        ("GET", "/v1/sync/snapshot"),
                        ("GET", "/v1/records/households/h-001"),
                    ):
                        started = time.monotonic()
                        reply = http.request(method, path, json=body if method == "POST" else None)
                        answers.append((path, reply.status_code, time.monotonic() - started))
                        assert reply.status_code == 503, (path, reply.status_code, reply.text)
                        assert reply.headers["retry-after"] == "2"
                        assert reply.headers["content-type"].startswith("application/problem+json")
                        problem = reply.json()
                        assert problem["code"] == "database_unavailable"
                        assert "Traceback" not in reply.text
        finally:
            _cluster("start")
        # The pool heals by itself: the same server process answers again, bounded wait.
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.base_url, timeout=15.0, headers=probe_headers) as http:
            while http.get("/v1/sync/pull").status_code != 200:
                assert time.monotonic() < deadline, "the pool did not recover"
                time.sleep(0.2)
        pushes_before = sum(p.pushes - p.failures for p in phones)
        for _ in range(300):  # the phones resume: answered pushes grow again
            if sum(p.pushes - p.failures for p in phones) > pushes_before + 5:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("phones did not resume")
    finally:
        day.finish()
        if not _postgres_up():
            _cluster("start")
    assert not day.errors, day.errors

    replicas = [phone.open() for phone in phones]
    try:
        with phones[0].http() as http:
            for _ in range(2):
                for phone, replica in zip(phones, replicas, strict=True):
                    phone.sync_until_done(replica, http)
            check = check_log_and_states(database_url)
            assert set().union(*(p.told_applied for p in phones)) <= check.stored_ids
            assert check.stored_ids == set().union(*(p.made for p in phones))
            served = views(http, check.record_ids, phones[0].token)
            for replica in replicas:
                assert views(replica, check.record_ids) == served
    finally:
        for replica in replicas:
            replica.close()
        server.stop()
    record_figures(
        "postgres-restart",
        {
            "probes_during_outage": len(answers),
            "slowest_503_seconds": round(max(seconds for _, _, seconds in answers), 3),
            "pushes_refused_503_during_outage": sum(p.failures for p in phones),
            "changes_checked": check.rows,
        },
    )
