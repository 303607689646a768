"""What the SDK's tests share: a real server (the app under uvicorn on a free loopback port) and
a turn of the JS phone (phone.mjs under node)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PHONE_SCRIPT = Path(__file__).resolve().parent / "phone.mjs"


def phone_turn(job: dict[str, Any]) -> dict[str, Any]:
    """One turn of the JS phone: ``job`` in as JSON on stdin, its report out as JSON."""
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(PHONE_SCRIPT)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, on this test's database."""
    port = _free_port()
    env = {
        **os.environ,
        "GRIDSYNC_DATABASE_URL": database_url,
        "GRIDSYNC_DEVICE_REQUESTS_PER_MINUTE": "1000000",
        "GRIDSYNC_ADDRESS_REQUESTS_PER_MINUTE": "1000000",
        # Every pull's cursor acknowledged at once, so compaction sees where each phone stands.
        "GRIDSYNC_ACK_INTERVAL_MS": "0",
    }
    command = [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory", "--port", str(port)]
    command += ["--log-level", "warning"]
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
