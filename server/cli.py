"""The ``gridsync`` command line: serve, migrate, enrol devices, create admins.

Commands reach the database through the same stores the server uses, never through copies of
their logic, and write the same audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import COLLECTIONS
from server.access.accounts import AccountStore
from server.access.personal import (
    EncryptionKeyError,
    default_key_file,
    load_sealer,
    new_key,
    prepare_stored,
    write_key_file,
)
from server.access.principals import ROLES, Principal, UserScope
from server.db.backup import BackupError, backup, restore
from server.db.engine import create_engine, migrate
from server.desk.cli import add_desk_commands
from server.errors import GridsyncError
from server.settings import Settings, get_settings
from server.sync.horizon import compact
from server.sync.store import SyncStore

__all__ = ["main"]

T = TypeVar("T")
# What the operator set, before the serve command adds its own.
_given_environment = frozenset(os.environ)
# The audit log names the console as the actor of what the CLI does.
CONSOLE = Principal(user_id="console", user_name="gridsync CLI", role="district_admin")


def _settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    if getattr(args, "database_url", None):
        settings = replace(settings, database_url=args.database_url)
    return settings


async def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        return await work(engine)
    finally:
        await engine.dispose()


def _upgrade(settings: Settings) -> None:
    async def nothing(_: AsyncEngine) -> None:
        return None

    asyncio.run(_with_engine(settings, nothing))


def _check_key(settings: Settings) -> bool:
    """Whether the stored ID numbers can be served with the configured key; says why not."""

    async def check(engine: AsyncEngine) -> None:
        await prepare_stored(engine, load_sealer(settings), COLLECTIONS)

    try:
        asyncio.run(_with_engine(settings, check))
    except EncryptionKeyError as error:
        print(f"gridsync: {error}", file=sys.stderr)
        return False
    return True


def _metrics_dir() -> Path:
    """The directory where the workers keep their metrics (prometheus-client's multiprocess
    mode): ``PROMETHEUS_MULTIPROC_DIR`` if set, else a new temporary one. It is emptied first:
    files of an earlier run would be summed into this one's."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="gridsync-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.observability.requests import log_config

    settings = _settings(args)
    _upgrade(settings)
    # Event streams (GET /v1/sync/events) end with `bye` on the exit signal; an answer still
    # open after this many seconds is cut.
    grace = 3
    # Uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the app believes it only from
    # GRIDSYNC_TRUSTED_PROXIES (server/app.py), so uvicorn's own reading is turned off.
    if not _check_key(settings):
        return 1
    options: dict[str, Any] = {
        "log_level": args.log_level,
        "timeout_graceful_shutdown": grace,
        "proxy_headers": False,
    }
    if (config := log_config(settings.log_format, args.log_level)) is not None:
        options |= {"log_config": config, "access_log": False}
    if args.workers == 1:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, **options)
        return 0
    # Each worker is a fresh process that builds its own app from the environment, so the
    # database URL given here travels there. The workers share the listening socket, and
    # their metrics are summed from files in one directory (server/observability/metrics.py).
    os.environ["GRIDSYNC_DATABASE_URL"] = settings.database_url
    directory = _metrics_dir()
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            workers=args.workers,
            # A worker answers the supervisor's ping only once it has imported the app; on a busy
            # machine that takes longer than uvicorn's 5 s, and a worker killed then restarts forever.
            timeout_worker_healthcheck=60,
            host=args.host,
            port=args.port,
            **options,
        )
    finally:
        if "PROMETHEUS_MULTIPROC_DIR" not in _given_environment:
            shutil.rmtree(directory, ignore_errors=True)
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


def _scope(args: argparse.Namespace) -> UserScope:
    return UserScope(
        communities=tuple(args.community or ()),
        grids=tuple(args.grid or ()),
        buildings=tuple(args.building or ()),
        company=args.company,
    )


def _device_enroll(args: argparse.Namespace) -> int:
    async def enroll(engine: AsyncEngine) -> dict[str, object]:
        accounts = AccountStore(engine)
        user_name = args.user or args.name
        user = await accounts.user_by_name(user_name)
        if user is None:
            if args.role is None:
                raise GridsyncError(
                    400,
                    "role_required",
                    f"name the new user's role with --role: one of {', '.join(ROLES)} "
                    "(and --community/--grid/--building/--company for its scope)",
                )
            user = await accounts.add_user(CONSOLE, user_name, args.role, _scope(args), None, "console")
        elif args.role or args.grid or args.building or args.community or args.company:
            user = await accounts.update_user(user.id, args.role or user.role, _scope(args))
        if args.code:
            issued = await accounts.issue_code(
                CONSOLE, user, args.code_ttl_s or settings.enrolment_code_ttl_s, "console"
            )
            return {
                "code": issued.code,
                "expires_at_ms": issued.expires_at_ms,
                "user_id": user.id,
                "role": user.role,
            }
        device_id, token = await accounts.enroll_phone(CONSOLE, user, args.name, "console")
        return {"device_id": device_id, "token": token, "user_id": user.id, "role": user.role}

    settings = _settings(args)
    try:
        enrolled = asyncio.run(_with_engine(settings, enroll))
    except GridsyncError as error:
        print(error.message, file=sys.stderr)
        return 1
    print(json.dumps(enrolled))
    if args.code:
        _print_qr(str(enrolled["code"]))
    return 0


def _print_qr(code: str) -> None:
    """The code as a QR code on the terminal (stderr, so stdout stays one line of JSON)."""
    import segno

    print(f"enrolment code {code}: type it in the app or scan this", file=sys.stderr)
    segno.make(code, error="m").terminal(out=sys.stderr, compact=True)


def _device_revoke(args: argparse.Namespace) -> int:
    async def revoke(engine: AsyncEngine) -> bool:
        accounts = AccountStore(engine)
        revoked = await accounts.revoke(args.device_id)
        if revoked:
            await accounts.audit(CONSOLE, "device_revoke", args.device_id, address="console")
        return revoked

    if not asyncio.run(_with_engine(_settings(args), revoke)):
        print(f"no active device {args.device_id}", file=sys.stderr)
        return 1
    print(json.dumps({"device_id": args.device_id, "revoked": True}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from server.registry.demo import DemoPlan, demo_command

    plan = DemoPlan(seed=args.seed, households=args.households)
    settings = _settings(args)
    key_file = default_key_file(settings.database_url)
    if load_sealer(settings) is None and key_file is not None:
        # A development database gets its own key beside it (docs/security.md).
        write_key_file(key_file)
        print(f"made the encryption key {key_file} for this development database", file=sys.stderr)
    return asyncio.run(
        _with_engine(
            settings, lambda engine: demo_command(SyncStore(engine, settings), plan, if_empty=args.if_empty)
        )
    )


def _resident_erase(args: argparse.Namespace) -> int:
    from server.registry.erasure import erase_resident

    settings = _settings(args)

    async def erase(engine: AsyncEngine) -> dict[str, object]:
        erased = await erase_resident(SyncStore(engine, settings), CONSOLE, args.resident_id)
        return msgspec.to_builtins(erased)  # type: ignore[no-any-return]

    try:
        print(json.dumps(asyncio.run(_with_engine(settings, erase))))
    except GridsyncError as error:
        print(f"gridsync: {error.message}", file=sys.stderr)
        return 1
    return 0


def _key_new(_: argparse.Namespace) -> int:
    print(new_key())
    return 0


def _admin_create(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    if len(password) < 8:
        print("the password needs at least 8 characters", file=sys.stderr)
        return 2

    async def create(engine: AsyncEngine) -> dict[str, object]:
        accounts = AccountStore(engine)
        scope = UserScope(communities=tuple(args.community or ()))
        user = await accounts.add_user(CONSOLE, args.name, args.role, scope, password, "console")
        return msgspec.to_builtins(user)  # type: ignore[no-any-return]

    try:
        print(json.dumps(asyncio.run(_with_engine(_settings(args), create))))
    except GridsyncError as error:
        print(error.message, file=sys.stderr)
        return 1
    return 0


def _with_database(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: $GRIDSYNC_DATABASE_URL or sqlite+aiosqlite:///./gridsync.db)",
    )
    return sub


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridsync", description="Offline-first sync server for grid workers"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = _with_database(commands.add_parser("serve", help="migrate the database, then serve HTTP"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="app processes sharing the port (default 1); more than one is for PostgreSQL "
        "(README, Scaling out)",
    )
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    _with_database(db_commands.add_parser("upgrade", help="apply migrations")).set_defaults(run=_db_upgrade)
    db_backup = _with_database(
        db_commands.add_parser("backup", help="online backup to PATH (SQLite file or pg_dump)")
    )
    db_backup.add_argument("path")
    db_backup.set_defaults(run=_db_backup)
    db_restore = _with_database(
        db_commands.add_parser("restore", help="replace the database with the backup at PATH; new epoch")
    )
    db_restore.add_argument("path")
    db_restore.set_defaults(run=_db_restore)
    db_compact = _with_database(
        db_commands.add_parser("compact", help="delete change rows below the safe horizon (heads are kept)")
    )
    db_compact.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")
    db_compact.set_defaults(run=_db_compact)

    device = commands.add_parser("device", help="device tokens")
    device_commands = device.add_subparsers(dest="device_command", required=True)
    enroll = _with_database(device_commands.add_parser("enroll", help="enrol a phone; prints its token once"))
    enroll.add_argument("--name", required=True, help="the phone's name")
    enroll.add_argument("--user", help="the user the phone belongs to (created if new; default: --name)")
    enroll.add_argument("--role", choices=ROLES, help="the user's role; required for a new user (no default)")
    enroll.add_argument("--community", action="append", help="community id (repeatable)")
    enroll.add_argument("--grid", action="append", help="grid id (repeatable)")
    enroll.add_argument("--building", action="append", help="building id (repeatable)")
    enroll.add_argument("--company", help="property company id, for handlers")
    enroll.add_argument(
        "--code",
        action="store_true",
        help="print a one-time enrolment code (and its QR code) for the app instead of a token",
    )
    enroll.add_argument("--code-ttl-s", type=_positive, help="seconds the code stays valid (default 24 h)")
    enroll.set_defaults(run=_device_enroll)
    revoke = _with_database(device_commands.add_parser("revoke", help="revoke a device token"))
    revoke.add_argument("device_id")
    revoke.set_defaults(run=_device_revoke)

    demo = _with_database(commands.add_parser("demo", help="load the demo district into an empty database"))
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--households", type=int, default=4_100)
    demo.add_argument("--if-empty", action="store_true", help="do nothing (exit 0) if the database has data")
    demo.set_defaults(run=_demo)

    resident = commands.add_parser("resident", help="residents' personal data")
    resident_commands = resident.add_subparsers(dest="resident_command", required=True)
    erase = _with_database(
        resident_commands.add_parser(
            "erase", help="erase a resident who moved out: personal fields and history purged, audited"
        )
    )
    erase.add_argument("resident_id")
    erase.set_defaults(run=_resident_erase)

    key = commands.add_parser("key", help="the key that encrypts ID numbers at rest")
    key_commands = key.add_subparsers(dest="key_command", required=True)
    key_commands.add_parser("new", help="print a new key (for GRIDSYNC_ENCRYPTION_KEY)").set_defaults(
        run=_key_new
    )

    admin = commands.add_parser("admin", help="admin users")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    create = _with_database(
        admin_commands.add_parser("create", help="create an admin who signs in with a password")
    )
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=("district_admin", "community_admin"), default="district_admin")
    create.add_argument("--community", action="append", help="community id, for a community admin")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create.set_defaults(run=_admin_create)
    add_desk_commands(commands, _with_database, _with_engine, _settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
