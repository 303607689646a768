"""Fault 4: the disk under a SQLite database fills up. Pushes get a clear 507 problem, nothing
already stored is damaged, reads keep working, and pushes work again once space is freed.

The disk is real: a size-limited tmpfs the test mounts (it needs root; CI runs as root), with a
filler file that takes every free byte."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from server.settings import Settings
from sync.client import Replica
from tests.conftest import _enroll
from tests.reliability.harness import (
    FieldPhone,
    H,
    ServerProcess,
    check_log_and_states,
    record_figures,
    views,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"), reason="mounting a small tmpfs needs root"
)

DISK_BYTES = 6 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount_point)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True, timeout=30)


def _fill(path: Path) -> int:
    """Write until the filesystem refuses; returns the bytes written (bounded by the disk size)."""
    written = 0
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            for _ in range(DISK_BYTES // size + 1):
                try:
                    written += os.write(descriptor, b"\0" * size)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(descriptor)
    return written


def _enroll_on(url: str, name: str) -> str:
    return asyncio.run(_enroll(Settings(database_url=url), name))


def _big_visits(replica: Replica, prefix: str, count: int) -> set[str]:
    made = set()
    for n in range(count):
        note = f"{prefix}-{n} " + "long visit notes " * 500
        made.add(replica.set(H, f"h-{n % 40:03d}", "notes", note[:9_000]).id)
    return made


def test_full_disk_answers_507_damages_nothing_and_recovers(
    small_disk: Path, sqlite_template: Path, tmp_path: Path
) -> None:
    database = small_disk / "gridsync.db"
    shutil.copy(sqlite_template, database)
    url = f"sqlite+aiosqlite:///{database}"
    server = ServerProcess(url, tmp_path / "server.log")
    phone = FieldPhone(tmp_path / "phone.db", "phone-disk", _enroll_on(url, "phone-disk"), server.base_url)
    replica = phone.open()
    server.start()
    refused = 0
    try:
        with phone.http() as http:
            # A morning of visits reaches the server while there is room.
            for n in range(30):
                phone.made.add(replica.set(H, f"h-{n:03d}", "phone", f"1380000{n:04d}").id)
            phone.made |= _big_visits(replica, "morning", 40)
            phone.sync_until_done(replica, http)
            before = check_log_and_states(url)
            served_before = views(http, before.record_ids, phone.token)

            filler = small_disk / "filler"
            filled = _fill(filler)
            # The afternoon's visits: the disk is full, so the server refuses them clearly.
            afternoon = _big_visits(replica, "afternoon", 200)
            phone.made |= afternoon
            headers = {"authorization": f"Bearer {phone.token}", "content-type": "application/json"}
            for _ in range(5):
                request = replica.push_request(200)
                assert request is not None
                reply = http.post("/v1/sync/push", content=msgspec.json.encode(request), headers=headers)
                assert reply.status_code == 507, reply.text
                assert reply.headers["content-type"].startswith("application/problem+json")
                assert reply.json()["code"] == "storage_full"
                assert "Traceback" not in reply.text
                refused += 1
            # Reads still work, and nothing stored before is damaged.
            assert views(http, before.record_ids, phone.token) == served_before
            pulled = http.get("/v1/sync/pull", headers={"authorization": f"Bearer {phone.token}"})
            assert pulled.status_code == 200
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as check:
                assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert check_log_and_states(url).stored_ids == before.stored_ids
            assert {c.id for c in replica.pending()} == afternoon  # the phone kept them all

            # Space comes back: the same server process takes the afternoon's visits.
            filler.unlink()
            phone.sync_until_done(replica, http)
            after = check_log_and_states(url)
            assert after.stored_ids == phone.made
            assert not replica.pending()
            assert views(replica, after.record_ids) == views(http, after.record_ids, phone.token)
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        replica.close()
        server.stop()
    record_figures(
        "disk-full-sqlite",
        {
            "disk_bytes": DISK_BYTES,
            "filler_bytes": filled,
            "pushes_refused_507": refused,
            "changes_kept_intact": len(before.stored_ids),
            "changes_stored_after_space_freed": len(after.stored_ids) - len(before.stored_ids),
        },
    )
