"""Backup and restore of the whole database, online, for both backends.

SQLite uses its online backup API: a consistent copy taken while the server keeps serving.
PostgreSQL uses ``pg_dump --format=custom`` (a consistent snapshot, online) and restores with
``pg_restore`` piped into one ``psql --single-transaction``.

Every restore gives the database a **new epoch** in the same transaction as the restored data.
Cursors carry the epoch, so a phone that synced after the backup (its cursor names changes the
restored database never saw) is answered 409 ``resync_required`` instead of silently skipping or
diverging; it re-offers its changes, which puts back everything the backup missed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from server.db.engine import is_sqlite, sqlite_file

__all__ = ["BackupError", "backup", "new_epoch", "restore"]


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why."""


def new_epoch() -> str:
    return uuid.uuid4().hex[:12]


def _sqlite_path(url: str) -> Path:
    path = sqlite_file(url)
    if path is None:
        raise BackupError(f"{url} is not a SQLite database file")
    return path


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries it."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed; install the PostgreSQL client tools")
    return found


def _run(command: list[str], env: dict[str, str], stdin: bytes | None = None) -> bytes:
    done = subprocess.run(command, input=stdin, env=env, capture_output=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def backup(url: str, path: str | Path) -> Path:
    """Write a consistent copy of the database at ``url`` to ``path`` while it keeps serving."""
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_sqlite(url):
        source = sqlite3.connect(_sqlite_path(url))
        # Written beside the target and renamed: a crash mid-backup never leaves a torn file.
        fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".partial")
        os.close(fd)
        try:
            copy = sqlite3.connect(temporary)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
            finally:
                copy.close()
            os.replace(temporary, target)
        finally:
            source.close()
            Path(temporary).unlink(missing_ok=True)
        return target
    uri, env = _libpq(url)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(target), uri], env)
    return target


def _check_sqlite_backup(path: Path) -> None:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            status = connection.execute("PRAGMA integrity_check").fetchone()
            connection.execute("SELECT epoch FROM sync_counter").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise BackupError(f"{path} is not a gridsync SQLite backup: {error}") from None
    if status is None or status[0] != "ok":
        raise BackupError(f"{path} is damaged: integrity check says {status}")


def restore(url: str, path: str | Path) -> str:
    """Replace the database at ``url`` with the backup at ``path``; returns the new epoch.

    Stop the servers first (or expect their in-flight requests to fail): the restore replaces
    every table. Run ``gridsync db upgrade`` afterwards if the backup is from an older version."""
    source = Path(path)
    if not source.is_file():
        raise BackupError(f"no backup at {source}")
    epoch = new_epoch()
    if is_sqlite(url):
        _check_sqlite_backup(source)
        with tempfile.TemporaryDirectory(dir=source.parent) as work:
            # The new epoch goes into a copy first, so the restore is one atomic page copy.
            staged = Path(work) / "staged.db"
            shutil.copyfile(source, staged)
            staging = sqlite3.connect(staged)
            try:
                staging.execute("UPDATE sync_counter SET epoch = ?", (epoch,))
                staging.commit()
                target = sqlite3.connect(_sqlite_path(url), timeout=30)
                try:
                    staging.backup(target)
                finally:
                    target.close()
            finally:
                staging.close()
        return epoch
    uri, env = _libpq(url)
    script = _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--file=-",
            str(source),
        ],
        env,
    )
    # pg_restore's script empties search_path; the tables live where the server finds them.
    script += f"\nRESET search_path;\nUPDATE sync_counter SET epoch = '{epoch}';\n".encode()
    command = [
        _tool("psql"),
        "--no-psqlrc",
        "--quiet",
        "--single-transaction",
        "-v",
        "ON_ERROR_STOP=1",
        "--dbname",
        uri,
    ]
    _run(command, env, stdin=script)
    return epoch
