"""The ``gridsync`` command line: serve, migrate, enrol devices.

Commands reach the database through the same store the server uses, never through copies of
its logic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from typing import TypeVar

from server.backup import BackupError, backup, restore
from server.database import create_engine, migrate
from server.horizon import compact
from server.settings import Settings, get_settings
from server.store import SyncStore

__all__ = ["main"]

T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    if getattr(args, "database_url", None):
        settings = replace(settings, database_url=args.database_url)
    return settings


async def _with_store(settings: Settings, work: Callable[[SyncStore], Awaitable[T]]) -> T:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        return await work(SyncStore(engine, settings))
    finally:
        await engine.dispose()


def _upgrade(settings: Settings) -> None:
    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings = _settings(args)
    _upgrade(settings)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _upgrade(settings)
    print(f"database at {settings.database_url} is up to date", file=sys.stderr)
    return 0


def _db_backup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        written = backup(settings.database_url, args.path)
    except BackupError as error:
        print(f"backup failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"backup": str(written), "bytes": written.stat().st_size}))
    return 0


def _db_restore(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        epoch = restore(settings.database_url, args.path)
    except BackupError as error:
        print(f"restore failed: {error}", file=sys.stderr)
        return 1
    _upgrade(settings)
    # Every phone's cursor names the old epoch: each is told to resync and re-offers its changes.
    print(json.dumps({"restored": str(args.path), "epoch": epoch}))
    return 0


def _db_compact(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> dict[str, object]:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            return asdict(await compact(engine, settings, dry_run=args.dry_run))
        finally:
            await engine.dispose()

    print(json.dumps(asyncio.run(run())))
    return 0


def _device_enroll(args: argparse.Namespace) -> int:
    device_id, token = asyncio.run(_with_store(_settings(args), lambda store: store.enroll_device(args.name)))
    print(json.dumps({"device_id": device_id, "token": token}))
    return 0


def _device_revoke(args: argparse.Namespace) -> int:
    revoked = asyncio.run(_with_store(_settings(args), lambda store: store.revoke_device(args.device_id)))
    if not revoked:
        print(f"no active device {args.device_id}", file=sys.stderr)
        return 1
    print(json.dumps({"device_id": args.device_id, "revoked": True}))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridsync", description="Offline-first sync server for grid workers"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_database(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--database-url",
            help="SQLAlchemy URL (default: $GRIDSYNC_DATABASE_URL or sqlite+aiosqlite:///./gridsync.db)",
        )
        return sub

    serve = with_database(commands.add_parser("serve", help="migrate the database, then serve HTTP"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    with_database(db.add_parser("upgrade", help="apply migrations")).set_defaults(run=_db_upgrade)
    db_backup = with_database(db.add_parser("backup", help="online backup to PATH (SQLite file or pg_dump)"))
    db_backup.add_argument("path")
    db_backup.set_defaults(run=_db_backup)
    db_restore = with_database(
        db.add_parser("restore", help="replace the database with the backup at PATH; new epoch")
    )
    db_restore.add_argument("path")
    db_restore.set_defaults(run=_db_restore)
    db_compact = with_database(
        db.add_parser("compact", help="delete change rows below the safe horizon (heads are kept)")
    )
    db_compact.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")
    db_compact.set_defaults(run=_db_compact)

    device = commands.add_parser("device", help="device tokens").add_subparsers(
        dest="device_command", required=True
    )
    enroll = with_database(device.add_parser("enroll", help="create a device; prints its token once"))
    enroll.add_argument("--name", required=True)
    enroll.set_defaults(run=_device_enroll)
    revoke = with_database(device.add_parser("revoke", help="revoke a device token"))
    revoke.add_argument("device_id")
    revoke.set_defaults(run=_device_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
