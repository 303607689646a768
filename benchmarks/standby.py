"""A streaming hot standby of the machine's PostgreSQL, made for one test or benchmark scenario
and removed after it (tests/reliability/test_replicas.py, the standby storm of the benchmarks).

``pg_basebackup -R`` copies the primary into a temporary directory (with a replication slot, so
the primary keeps the WAL a stopped standby still needs), and ``pg_ctl`` runs it as the
``postgres`` user on a loopback port the caller picks. The primary must accept replication
connections from 127.0.0.1: when its ``pg_hba.conf`` has no rule for them, one trust rule for
127.0.0.1 is added and the configuration reloaded (idempotent; docs/deploy.md names it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["Standby"]

_BIN = Path("/usr/lib/postgresql/15/bin")
_REPLICATION_RULE = "host replication all 127.0.0.1/32 trust"
_SLOT_PREFIX = "gridsync_test_standby_"
# A standby must allow at least what its primary does.
_MATCHED = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def _pg_bin(name: str) -> str:
    found = _BIN / name
    return str(found) if found.exists() else name


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


class Standby:
    """A hot standby of the primary at ``primary_url`` (any database of it)."""

    def __init__(self, primary_url: str, port: int) -> None:
        self.primary = make_url(primary_url)
        self.port = port
        self.slot = f"{_SLOT_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:6]}"
        self.directory = Path(tempfile.mkdtemp(prefix="gridsync-standby-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.settings: dict[str, str] = {}

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on the standby."""
        return self.primary.set(host="127.0.0.1", port=self.port, database=database).render_as_string(
            hide_password=False
        )

    async def _primary_sql(self, sql: str) -> list[asyncpg.Record]:
        dsn = self.primary.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            return list(await connection.fetch(sql))
        finally:
            await connection.close()

    def _sql(self, sql: str) -> list[asyncpg.Record]:
        return asyncio.run(self._primary_sql(sql))

    def _allow_replication(self) -> None:
        [[level]] = self._sql("SHOW wal_level")
        assert level in ("replica", "logical"), (
            f"the primary's wal_level is {level}: set replica and restart it"
        )
        [[rules]] = self._sql(
            "SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) "
            "AND (address IS NULL OR address = '127.0.0.1')"
        )
        if rules:
            return
        [[hba_file]] = self._sql("SHOW hba_file")
        path = Path(hba_file)
        if _REPLICATION_RULE not in path.read_text().splitlines():
            with path.open("a") as rules_file:
                rules_file.write(
                    f"\n# Streaming standbys on this machine (gridsync docs/deploy.md)\n{_REPLICATION_RULE}\n"
                )
        self._sql("SELECT pg_reload_conf()")

    def _drop_stale_slots(self) -> None:
        """Slots an interrupted run left behind (over an hour old): they pin WAL forever."""
        for (name,) in self._sql(
            f"SELECT slot_name FROM pg_replication_slots WHERE NOT active AND slot_name LIKE '{_SLOT_PREFIX}%'"
        ):
            made = name.removeprefix(_SLOT_PREFIX).split("_")[0]
            if made.isdigit() and time.time() - int(made) > 3600:
                self._sql(f"SELECT pg_drop_replication_slot('{name}')")

    def create(self) -> None:
        """Copy the primary and start streaming from it."""
        self._allow_replication()
        self._drop_stale_slots()
        self.settings = {name: str(self._sql(f"SHOW {name}")[0][0]) for name in _MATCHED}
        _give_to_postgres(self.directory)
        self.directory.chmod(0o700)
        host, port = self.primary.host or "127.0.0.1", str(self.primary.port or 5432)
        user = self.primary.username or "postgres"
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("pg_basebackup"),
                    "-h",
                    host,
                    "-p",
                    port,
                    "-U",
                    user,
                    "-D",
                    str(self.data),
                    "-R",
                    "-X",
                    "stream",
                    "-C",
                    "-S",
                    self.slot,
                    "--checkpoint=fast",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=300,
        )
        # Debian keeps the primary's configuration outside its data directory: the copy gets
        # its own, minimal one.
        files = {
            "postgresql.conf": "",
            "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            "pg_ident.conf": "",
        }
        for name, content in files.items():
            (self.data / name).write_text(content)
            _give_to_postgres(self.data / name)
        self.start()

    def start(self) -> None:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.directory}",
            "-c hot_standby=on",
            "-c shared_buffers=32MB",
            "-c fsync=off",
            *(f"-c {name}={value}" for name, value in self.settings.items()),
        ]
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    " ".join(options),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=90,
        )

    def promote(self) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "promote"]),
            check=True,
            capture_output=True,
            timeout=90,
        )

    async def wait_caught_up(self, within: float = 60.0) -> None:
        """Until the standby has replayed everything the primary had written when asked."""
        [[target]] = await self._primary_sql("SELECT pg_current_wal_lsn()")
        dsn = (
            make_url(self.url("postgres")).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                connection = await asyncpg.connect(dsn)
                try:
                    if await connection.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                        return
                finally:
                    await connection.close()
            except (OSError, asyncpg.PostgresError):
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the standby did not catch up in {within}s; see {self.log}")

    def remove(self) -> None:
        """Stop the standby, drop its slot on the primary, delete its files."""
        self.stop("immediate")
        # The primary's sender lets go of the slot a moment after the standby stops.
        for _ in range(100):
            [[active]] = self._sql(
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{self.slot}' AND active"
            )
            if not active:
                break
            time.sleep(0.1)
        self._sql(
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{self.slot}'"
        )
        shutil.rmtree(self.directory, ignore_errors=True)
