"""What the browser tests share: Debian's Chromium driven by Playwright, a real ``gridsync serve``
on a loopback port, the command line, and screenshots to tests/artifacts/."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SERVE = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1"]


def free_port() -> int:
    for _ in range(200):
        port = random.randint(17000, 17999)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 17000-17999")


def cli(database_url: str, *args: str, stdin: str | None = None) -> dict[str, str]:
    """``gridsync <args>`` on the test database; its one line of JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", *args, "--database-url", database_url],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


@dataclass
class LiveServer:
    base_url: str
    database_url: str
    tmp: Path


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real ``gridsync serve`` on a loopback port over a small demo district."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gridsync.db'}"
    subprocess.run(
        [
            *(sys.executable, "-m", "server.cli", "demo", "--households", "300", "--no-offline-phones"),
            *("--database-url", database_url),
        ],
        capture_output=True,
        check=True,
    )
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [*SERVE, "--port", str(port), "--database-url", database_url, "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError((tmp_path / "server.log").read_text())
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gridsync serve did not answer /health")
        yield LiveServer(base_url, database_url, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()
