"""Fault 7: the database is restored from a backup. The restored server serves the records of
the backup, under a new epoch, so phones that synced after the backup are told to resync (409)
rather than silently diverging; they re-offer their changes and nothing is lost.

SQLite is backed up online with its backup API; PostgreSQL with pg_dump/pg_restore (the
PostgreSQL client tools are on CI machines; the test fails, not skips, without them)."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec

from tests.reliability.harness import (
    ROOT,
    FieldPhone,
    ServerProcess,
    backend_of,
    check_log_and_states,
    record_figures,
    views,
)


def _cli(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, object] = msgspec.json.decode(done.stdout)
    return result


def test_restored_server_serves_the_backup_and_phones_resync_without_loss(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    backend = backend_of(database_url)
    server = ServerProcess(database_url, tmp_path / "server.log")
    phones = [
        FieldPhone(tmp_path / f"{n}.db", n, enroll(n), server.base_url) for n in ("office", "walker", "late")
    ]
    office, walker, late = phones
    replicas = {phone.name: phone.open() for phone in phones}
    rng = random.Random(11)
    backup_path = tmp_path / "backups" / ("gridsync.db" if backend == "sqlite" else "gridsync.dump")
    server.start()
    try:
        with office.http() as http:
            for phone in phones:
                phone.edit(replicas[phone.name], rng, 120)
                phone.sync_until_done(replicas[phone.name], http)
            for phone in phones:
                phone.sync_until_done(replicas[phone.name], http)
            at_backup = check_log_and_states(database_url)
            served_at_backup = views(http, at_backup.record_ids, office.token)
            epoch_at_backup = str(replicas["office"].cursor).partition(".")[0]

            # Online: the backup is taken while a phone keeps pushing to the same server.
            stop = threading.Event()

            def keep_pushing() -> None:
                replica = late.open()
                pusher_rng = random.Random(3)
                try:
                    with late.http() as own:
                        for _ in range(200):
                            if stop.is_set():
                                return
                            # Records of its own, so the backed-up households stay comparable.
                            late.edit(replica, pusher_rng, 5, prefix="late")
                            late.push_once(replica, own)
                finally:
                    replica.close()

            replicas["late"].close()
            pusher = threading.Thread(target=keep_pushing, daemon=True)
            pusher.start()
            written = _cli("backup", str(backup_path), "--database-url", database_url)
            stop.set()
            pusher.join(60)
            assert Path(str(written["backup"])).stat().st_size > 0
            replicas["late"] = late.open()

            # After the backup: more visits reach the server (the restore will lose them there).
            for phone in (office, walker):
                phone.edit(replicas[phone.name], rng, 60)
                phone.sync_until_done(replicas[phone.name], http)
            # And the walker has visits it has not pushed yet.
            walker.edit(replicas["walker"], rng, 30)
            after_backup = check_log_and_states(database_url).stored_ids - at_backup.stored_ids
        server.stop()

        restored = _cli("restore", str(backup_path), "--database-url", database_url)
        assert restored["epoch"] != epoch_at_backup
        server.start()
        with office.http() as http:
            # The restored server serves what the backup held (at least what was there when the
            # backup began; pushes that ran during it may be in it too).
            check = check_log_and_states(database_url)
            assert at_backup.stored_ids <= check.stored_ids
            assert not (after_backup - late.made) & check.stored_ids
            assert views(http, at_backup.record_ids, office.token) == served_at_backup

            # Phones that synced after the backup are told to resync, not left to diverge.
            stale = http.get(
                "/v1/sync/pull",
                params={"since": replicas["office"].cursor},
                headers={"authorization": f"Bearer {office.token}"},
            )
            assert stale.status_code == 409
            assert stale.json()["code"] == "resync_required"
            for _ in range(2):
                for phone in phones:
                    phone.sync_until_done(replicas[phone.name], http)
            final = check_log_and_states(database_url)
            made = set().union(*(phone.made for phone in phones))
            assert final.stored_ids == made, "a change was lost (or invented) across the restore"
            assert final.rows == len(made)
            served = views(http, final.record_ids, office.token)
            for phone in phones:
                assert not replicas[phone.name].pending()
                assert not replicas[phone.name].rejected()
                assert views(replicas[phone.name], final.record_ids) == served, phone.name
    finally:
        for replica in replicas.values():
            replica.close()
        server.stop()
    record_figures(
        f"backup-restore-{backend}",
        {
            "changes_in_backup": len(at_backup.stored_ids),
            "changes_after_backup_put_back_by_phones": len(after_backup),
            "changes_checked": final.rows,
        },
    )
