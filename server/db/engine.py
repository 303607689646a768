"""Engines and migrations for the two backends: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import errno
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn

from server.settings import Settings

__all__ = [
    "alembic_config",
    "classify_database_error",
    "create_engine",
    "create_read_engines",
    "driver_copy",
    "driver_rows",
    "driver_write",
    "is_sqlite",
    "migrate",
    "migrations_current",
    "sqlite_file",
    "write_locked",
]

MIGRATIONS = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite database URL; None for an in-memory database (or not SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


# How long a SQLite statement waits for another connection's lock before it fails.
_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=FULL makes a commit durable
    # before the push response is sent, even across a power cut.
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        f"busy_timeout={_BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _drop_closed(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server closed (a restart, a killed backend) is
    replaced before use. asyncpg notices the close as it happens, so this costs no round trip,
    where ``pool_pre_ping`` spent three (BEGIN, a ping, ROLLBACK) on every checkout."""
    if record.driver_connection.is_closed():
        raise DisconnectionError("the database closed this connection")


def _in_transaction(driver: Any) -> bool:
    """Whether the driver connection (asyncpg or aiosqlite) has a transaction open."""
    if isinstance(driver, asyncpg.Connection):
        return bool(driver.is_in_transaction())
    return bool(driver.in_transaction)  # aiosqlite: the sqlite3 connection's own flag


def _reset_if_open(dbapi_connection: Any, _record: Any, state: Any) -> None:
    """The pool's reset (with ``pool_reset_on_return=None``): whatever way a connection comes
    back, closed, dropped by a cancelled task or garbage collected, a transaction it left open
    is rolled back before anyone else gets it; one without is handed on as it is."""
    if not state.terminate_only and _in_transaction(dbapi_connection.driver_connection):
        dbapi_connection.rollback()


def create_engine(url: str, *, pool_size: int = 20, connect_timeout: float = 5.0) -> AsyncEngine:
    # A connection going back to the pool is rolled back only when its driver says a
    # transaction is open (_reset_if_open): the pool's unconditional rollback was one more trip
    # on every return, on aiosqlite a hop to the driver's thread, 70 us of CPU a checkout and
    # 3-4 checkouts a phone's sync, for connections that mostly ran one autocommitted read.
    if is_sqlite(url):
        # Two connections: the push writer keeps one while pushes keep coming, the reads share
        # the other. Each aiosqlite connection is a thread; more of them only contend for the
        # GIL (a storm of 500 phones: 3.5 ms of server CPU per device with SQLAlchemy's default
        # pool of up to 15, 2.6 ms with two). SQLite has one writer at a time anyway.
        engine = create_async_engine(
            url,
            pool_size=2,
            max_overflow=0,
            pool_timeout=30,
            pool_reset_on_return=None,
            # The writer's statements run on its connection from the event loop's thread while
            # it holds the write lock (write_locked); aiosqlite's thread is idle meanwhile.
            connect_args={"check_same_thread": False},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _reset_if_open)
        return engine
    # The bounded connect and pool waits turn an outage into a prompt 503, not a hanging request.
    # No overflow: every connection opened stays in the pool. In a storm of phones overflow
    # connections were opened and closed again, each with a connect (asyncpg's TLS attempt, the
    # startup) and a new prepare of every statement it ran: 15-20% of the storm's server CPU.
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=connect_timeout * 2,
        connect_args={"timeout": connect_timeout},
        pool_reset_on_return=None,
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    event.listen(engine.sync_engine, "reset", _reset_if_open)
    return engine


def create_read_engines(settings: Settings) -> list[AsyncEngine]:
    """Engines of the PostgreSQL hot standbys in ``database_read_urls`` (server/replicas.py)."""
    urls = [url.strip() for url in settings.database_read_urls.split(",") if url.strip()]
    if any(is_sqlite(url) for url in urls):
        raise ValueError("GRIDSYNC_DATABASE_READ_URLS lists PostgreSQL standbys only")
    return [
        create_engine(
            url, pool_size=settings.database_pool_size, connect_timeout=settings.database_connect_timeout
        )
        for url in urls
    ]


@asynccontextmanager
async def _driver(connection: AsyncConnection, *, in_transaction: bool = False) -> AsyncIterator[Any]:
    """The driver connection (aiosqlite or asyncpg) under ``connection``, dropped from the pool
    if a statement on it fails: past SQLAlchemy, nobody else knows it may be broken (a restart
    cut it mid-statement, a cancelled await left it busy). With ``in_transaction``, refused when
    no transaction is open: the driver would autocommit the statements, past the caller's
    rollback (on asyncpg, SQLAlchemy opens the transaction with its first statement)."""
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if in_transaction and not _in_transaction(driver):
        raise RuntimeError("no transaction is open: run its first statement through SQLAlchemy")
    try:
        yield driver
    except BaseException:
        await connection.invalidate()
        raise


# The aiosqlite connections whose open transaction holds the write lock (write_locked).
_write_locked: weakref.WeakSet[Any] = weakref.WeakSet()


def _locked_sqlite(driver: Any) -> sqlite3.Connection | None:
    """The sqlite3 connection under an aiosqlite one whose transaction holds the write lock:
    its statements cannot meet a lock, only SQLite's own CPU work, so they run right here in
    the event loop's thread. A trip to aiosqlite's thread cost 0.3-0.4 ms a statement on a
    busy 2-core machine, and an ``executemany`` there took the GIL back after every row, so
    it never really ran beside the merge (docs/benchmarks.md, Push)."""
    if isinstance(driver, asyncpg.Connection) or driver not in _write_locked:
        return None
    raw: sqlite3.Connection = driver._conn  # aiosqlite's own connection, idle between its calls
    return raw if raw.in_transaction else None


def _is_busy(error: sqlite3.OperationalError) -> bool:
    # The primary code, whatever the extended one (SQLITE_BUSY_RECOVERY, ...).
    return error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _lock_at_once(raw: sqlite3.Connection, query: str) -> tuple[Any, ...] | None:
    """``query``'s one row if it gets the write lock without waiting, else None (another
    process writes)."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        [row] = raw.execute(query).fetchall()
        return tuple(row)
    except sqlite3.OperationalError as error:
        if _is_busy(error):
            return None
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


@asynccontextmanager
async def write_locked(connection: AsyncConnection, query: str) -> AsyncIterator[tuple[Any, ...]]:
    """The one row of the writer's first statement, which takes the write lock (SQLite) or
    the counter's row lock (PostgreSQL) for the transaction ``connection.begin()`` opened.
    Inside the block, until the commit, the transaction's ``driver_rows`` and ``driver_write``
    run in this thread on SQLite.

    On PostgreSQL the statement goes through SQLAlchemy: that is what starts the transaction
    on asyncpg. On SQLite it runs here if the lock is free (the sqlite3 module begins the
    transaction before it), and waits for another process's lock in aiosqlite's thread, with
    the busy timeout: four trips to that thread were 1.5 ms of a push of 500."""
    if connection.dialect.name != "sqlite":
        yield tuple((await connection.exec_driver_sql(query)).one())
        return
    driver: Any = (await connection.get_raw_connection()).driver_connection
    try:
        row = _lock_at_once(driver._conn, query)
    except BaseException:
        await connection.invalidate()
        raise
    if row is None:
        row = tuple((await connection.exec_driver_sql(query)).one())
    _write_locked.add(driver)
    try:
        yield row
    finally:
        _write_locked.discard(driver)


async def driver_rows(connection: AsyncConnection, query: str, *params: Any) -> list[Any]:
    """All rows of a query straight from the driver (aiosqlite or asyncpg): one trip to the
    driver, no SQLAlchemy compile or per-row result processing. For the hot reads only; the
    query's placeholders are the driver's own (``?`` for SQLite, ``$1`` for asyncpg)."""
    async with _driver(connection) as driver:
        if (locked := _locked_sqlite(driver)) is not None:
            return locked.execute(query, params).fetchall()
        return await _fetch(driver, query, params)


class _SqliteReads(threading.local):
    """A SQLite database's hot reads on a connection of the thread's own, opened at first use:
    one per thread, because a sqlite3 connection belongs to the thread that made it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection: sqlite3.Connection | None = None

    def rows(self, query: str, params: Sequence[Any]) -> list[Any] | None:
        """The read's rows; None when SQLite would have to wait for a lock (the database is
        being recovered or its WAL reset), which this thread, the event loop's, must never do."""
        if self.connection is None:
            connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            # This connection only reads: a statement that would write is refused by SQLite.
            connection.execute("PRAGMA query_only=ON")
            self.connection = connection
        try:
            return self.connection.execute(query, params).fetchall()
        except sqlite3.OperationalError as error:
            if _is_busy(error):
                return None
            raise


_sqlite_reads: weakref.WeakKeyDictionary[Any, _SqliteReads] = weakref.WeakKeyDictionary()


async def pooled_rows(engine: AsyncEngine, query: str, *params: Any) -> list[Any]:
    """``driver_rows`` of one read outside any transaction (the token lookup of every request,
    an unscoped pull page).

    On a SQLite file it runs on a plain connection in this thread (``_SqliteReads``), never
    waiting for a lock: a token lookup takes 4 us there, where a trip through aiosqlite's
    thread took 55 us of CPU on an idle server and more with the GIL contended; a read that
    would wait goes the pooled way. Otherwise it runs on a connection of ``engine``'s pool taken
    for it alone: one hop to check it out and none to give it back, where ``engine.connect()``
    and its close take three (a token lookup spent 40% of its CPU there). A connection whose
    read fails is dropped from the pool."""
    reads = _sqlite_reads.get(engine.sync_engine)
    if reads is None and engine.dialect.name == "sqlite" and (path := sqlite_file(engine.url)) is not None:
        reads = _sqlite_reads[engine.sync_engine] = _SqliteReads(path)
    if reads is not None and (found := reads.rows(query, params)) is not None:
        return found
    fairy = await engine.raw_connection()
    try:
        found = await _fetch(fairy.driver_connection, query, params)
    except BaseException:
        await greenlet_spawn(fairy.invalidate)
        raise
    if _in_transaction(fairy.driver_connection):
        await greenlet_spawn(fairy.close)  # its reset rolls the transaction back: I/O
    else:
        fairy.close()  # back to the pool as it is: no I/O
    return found


async def _fetch(driver: Any, query: str, params: Sequence[Any]) -> list[Any]:
    if isinstance(driver, asyncpg.Connection):
        return list(await driver.fetch(query, *params))
    return list(await driver.execute_fetchall(query, params))


async def driver_write(connection: AsyncConnection, query: str, rows: Sequence[Sequence[Any]]) -> None:
    """``query`` once for each row of parameters (an executemany), straight to the driver, in
    the connection's transaction: one trip to the driver where SQLAlchemy's adapter makes
    several (on aiosqlite each is a hop to the driver's thread: 300 us a statement, not 60), and
    none on SQLite under the writer's lock (``write_locked``)."""
    async with _driver(connection, in_transaction=True) as driver:
        if (locked := _locked_sqlite(driver)) is not None:
            locked.executemany(query, rows)
        else:
            await driver.executemany(query, rows)


async def driver_copy(
    connection: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """New rows for ``table`` by binary COPY (PostgreSQL), in the connection's transaction:
    asyncpg encodes them in C and the server parses no statement per row."""
    async with _driver(connection, in_transaction=True) as driver:
        await driver.copy_records_to_table(table, records=rows, columns=columns)


def is_taken_id(error: BaseException, table: str) -> bool:
    """Whether ``error`` is the driver refusing a row because ``table``'s unique ``id`` is taken
    (sqlite3 names the column, PostgreSQL the constraint, ``<table>_id_key`` by default)."""
    if isinstance(error, sqlite3.IntegrityError):
        return str(error) == f"UNIQUE constraint failed: {table}.id"
    if isinstance(error, asyncpg.UniqueViolationError):
        return bool(error.constraint_name == f"{table}_id_key")
    return False


# What drivers and the OS say when the disk under the database is full.
_SQLITE_FULL = 13
_DISK_FULL_SQLSTATE = "53100"
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _causes(error: BaseException) -> list[BaseException]:
    """The error, the driver error it wraps, and their causes (bounded: chains can loop)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending and len(seen) < 12:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return [e for e in seen if isinstance(e, BaseException)]


def classify_database_error(error: BaseException) -> Literal["full", "invalid", "unavailable"] | None:
    """``full`` when the disk under the database is full, ``invalid`` when the database refused
    a value of the request (PostgreSQL: NUL in text, an integer beyond 64 bits), ``unavailable``
    when the database cannot be reached or answered too late (a retry later can succeed), None
    otherwise (a bug)."""
    chain = _causes(error)
    for cause in chain:
        if isinstance(cause, asyncpg.DataError | DataError):
            return "invalid"
        if isinstance(cause, sqlite3.Error) and (
            getattr(cause, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(cause)
        ):
            return "full"
        if (
            isinstance(cause, asyncpg.DiskFullError)
            or getattr(cause, "sqlstate", None) == _DISK_FULL_SQLSTATE
        ):
            return "full"
        if isinstance(cause, OSError) and cause.errno in _NO_SPACE:
            return "full"
    for cause in chain:
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return "unavailable"
        if isinstance(
            cause,
            PoolTimeoutError
            | TimeoutError
            | ConnectionError
            | sqlite3.OperationalError
            | asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.exceptions.OperatorInterventionError
            | asyncpg.InterfaceError
            # A connection the server cut while idle, met by a driver-level read ("another
            # operation is in progress"); driver_rows has dropped it from the pool.
            | asyncpg.exceptions._base.InternalClientError,
        ):
            return "unavailable"
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError | PermissionError):
            return "unavailable"
    return None


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database up to ``revision``, on the engine's own event loop."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(str(engine.url), connection), revision)

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)


@lru_cache(maxsize=1)
def _script_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


async def migrations_current(engine: AsyncEngine) -> bool:
    """Whether the database's schema is at the migrations' head (what this code expects)."""
    rows = await pooled_rows(engine, "SELECT version_num FROM alembic_version")
    return frozenset(row[0] for row in rows) == _script_heads()
