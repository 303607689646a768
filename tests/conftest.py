"""Fixtures shared by every suite: one fresh, migrated database per test on each backend.

The conformance suites run on SQLite always, and on PostgreSQL at GRIDSYNC_TEST_POSTGRES_URL, or
when that is unset at the default URL whenever a PostgreSQL answers there; in CI (CI=true)
PostgreSQL is required, so that suite can never be skipped silently.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import TestClient
from sqlalchemy.engine import make_url

from server.access.accounts import AccountStore
from server.app import create_app
from server.db.engine import create_engine, migrate
from server.settings import Settings
from server.sync.store import SyncStore
from sync.client import Replica
from tests.factories import TEST_ENCRYPTION_KEY

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _reach(url: str) -> None:
    """Connect to ``url``'s database, creating it first when only the server exists."""
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    except asyncpg.InvalidCatalogNameError:
        server = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=3)
        try:
            await server.execute(f'CREATE DATABASE "{make_url(url).database}"')
        finally:
            await server.close()
        connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    await connection.close()


def _postgres_url() -> str | None:
    """The PostgreSQL the suites run on: the configured URL, else the default one if it answers."""
    configured = os.environ.get("GRIDSYNC_TEST_POSTGRES_URL")
    url = configured or DEFAULT_POSTGRES_URL
    try:
        asyncio.run(_reach(url))
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        if configured or os.environ.get("CI"):
            raise RuntimeError(
                f"PostgreSQL does not answer at {url} ({type(error).__name__}: {error}); "
                "the PostgreSQL suite may not be skipped here"
            ) from None
        return None
    return url


POSTGRES_URL = _postgres_url()
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def _admin(sql: str) -> None:
    assert POSTGRES_URL is not None
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "gridsync.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    assert POSTGRES_URL is not None
    name = f"gs_template_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)))
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "gridsync.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    assert POSTGRES_URL is not None
    template = request.getfixturevalue("postgres_template")
    name = f"gs_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, encryption_key=TEST_ENCRYPTION_KEY)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SyncStore]:
    engine = create_engine(settings.database_url)
    yield SyncStore(engine, settings)
    await engine.dispose()


async def _enroll(settings: Settings, name: str) -> str:
    engine = create_engine(settings.database_url)
    try:
        # District-wide, like protocol tooling: reads and writes everywhere, manages no users.
        _, token = await AccountStore(engine).enroll_device(None, name, role="district_admin")
    finally:
        await engine.dispose()
    return token


@pytest.fixture
def enroll(settings: Settings) -> Callable[[str], str]:
    """Enrol a device in the test database; returns its token."""
    return lambda name: asyncio.run(_enroll(settings, name))


@pytest.fixture
def client(settings: Settings, enroll: Callable[[str], str]) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An HTTP client of a running app, authenticated as one enrolled device."""
    token = enroll("test-phone")
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["authorization"] = f"Bearer {token}"
        yield test_client


@pytest.fixture
def phone(tmp_path: Path, enroll: Callable[[str], str]) -> Callable[[str], Replica]:
    """Make a reference client replica (a phone) with its own local database and token."""
    made: list[Replica] = []

    def make(name: str) -> Replica:
        replica = Replica(tmp_path / f"{name}.db", name, token=enroll(name))
        made.append(replica)
        return replica

    yield make  # type: ignore[misc]
    for replica in made:
        replica.close()
