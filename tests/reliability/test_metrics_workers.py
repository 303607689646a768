"""``gridsync serve --workers 2``: a scrape answered by either worker counts the requests of both
(prometheus-client's multiprocess mode, its directory set up by the serve command), and with
``GRIDSYNC_LOG_FORMAT=json`` every request is one JSON line of the server's log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.reliability.harness import ServerProcess, server_clock

ROUND = 100


def test_two_workers_are_scraped_as_one_and_log_json_lines(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    token = enroll("phone")
    log = tmp_path / "server.log"
    with ServerProcess(database_url, log, env={"GRIDSYNC_LOG_FORMAT": "json"}, workers=2) as server:
        # Rounds of pushes on fresh connections until both workers answered some (on a busy
        # machine the second one may still be starting), bounded in time.
        nodes: set[str] = set()
        pushes_made = 0
        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(max_workers=16) as pool:
            while len(nodes) < 2 and time.monotonic() < deadline:
                nodes |= set(pool.map(lambda _: server_clock(server.base_url, token), range(ROUND)))
                pushes_made += ROUND
        assert len(nodes) == 2, nodes
        for _ in range(4):  # whichever worker answers, the sum is the same
            scraped = httpx.get(f"{server.base_url}/metrics", timeout=30)
            assert scraped.status_code == 200, scraped.text
            families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
            pushes = sum(
                s.value
                for s in families["gridsync_http_requests"].samples
                if s.labels.get("route") == "/v1/sync/push" and s.labels.get("status") == "200"
            )
            assert pushes == pushes_made
            assert "gridsync_pull_lag_changes" in families
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    pushed = [line for line in lines if line.get("route") == "/v1/sync/push"]
    assert len(pushed) == pushes_made
    assert {line["status"] for line in pushed} == {200}
    assert token not in log.read_text()
