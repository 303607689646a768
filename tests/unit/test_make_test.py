"""`make test` on a fresh machine: it installs what the tests need, and finds PostgreSQL itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.conftest import DEFAULT_POSTGRES_URL, _asyncpg_dsn

ROOT = Path(__file__).resolve().parents[2]


def _fake_tools(bin_dir: Path, log: Path, uid: int) -> dict[str, str]:
    """apt-get, npm and id stand-ins that log their arguments; ``id -u`` answers ``uid``."""
    bin_dir.mkdir()
    for tool in ("apt-get", "npm"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        script.chmod(0o755)
    fake_id = bin_dir / "id"
    fake_id.write_text(f"#!/bin/sh\necho {uid}\n")
    fake_id.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _test_deps(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-C", str(workdir), "-f", str(ROOT / "Makefile"), "test-deps", "CHROMIUM=/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def test_make_test_installs_chromium_and_a_cjk_font_as_root(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    _test_deps(tmp_path, _fake_tools(tmp_path / "bin", log, uid=0))
    calls = log.read_text().splitlines()
    assert calls[0] == "apt-get update -qq"
    assert calls[1] == "apt-get install -y -qq chromium fonts-wqy-microhei"


def test_make_test_says_what_to_install_when_not_root(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    done = _test_deps(tmp_path, _fake_tools(tmp_path / "bin", log, uid=1000))
    assert not log.exists()
    assert "apt-get install -y chromium fonts-wqy-microhei" in done.stderr
    assert "fail" in done.stderr


def test_make_test_installs_an_npm_clients_packages(tmp_path: Path) -> None:
    client = tmp_path / "clients" / "js"
    client.mkdir(parents=True)
    (client / "package.json").write_text('{"name": "client", "scripts": {"test": "true"}}')
    (client / "package-lock.json").write_text("{}")
    log = tmp_path / "calls.log"
    _test_deps(tmp_path, _fake_tools(tmp_path / "bin", log, uid=0))
    assert "npm ci --no-audit --no-fund" in log.read_text().splitlines()


async def _answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


def test_the_postgresql_suite_runs_whenever_postgresql_answers_on_the_default_url() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GRIDSYNC_TEST_POSTGRES_URL", "CI")}
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.conftest import BACKENDS, POSTGRES_URL; print(POSTGRES_URL, BACKENDS)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if asyncio.run(_answers(DEFAULT_POSTGRES_URL)):
        assert found == f"{DEFAULT_POSTGRES_URL} ['sqlite', 'postgres']"
    else:
        assert found == "None ['sqlite']"
