"""The one place that maps database faults to answers (server/errors.py), fed real errors."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from litestar.testing import TestClient
from sqlalchemy import literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from server.app import create_app
from server.db.engine import classify_database_error, create_engine, driver_rows
from server.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.reliability.harness import free_port


def test_an_unreachable_database_answers_503_promptly_with_retry_after() -> None:
    # Nothing listens on this loopback port: every connection attempt is refused.
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = Settings(database_url=url, database_connect_timeout=2)
    with TestClient(create_app(settings)) as client:
        for path in ("/v1/sync/pull", "/v1/records/households/h-1"):
            reply = client.get(path, headers={"authorization": "Bearer gs_anything"})
            assert reply.status_code == 503, reply.text
            assert reply.headers["retry-after"] == "2"
            assert reply.json()["code"] == "database_unavailable"
            assert "Traceback" not in reply.text


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs PostgreSQL (see tests/conftest.py)")
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_values_postgresql_refuses_are_classified_invalid(database_url: str) -> None:
    async def refuse(value: object) -> BaseException:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                await connection.execute(select(literal(value)))
        except DBAPIError as error:
            return error
        finally:
            await engine.dispose()
        raise AssertionError(f"{value!r} was accepted")

    for value in ("a\x00b", 2**70):
        assert classify_database_error(asyncio.run(refuse(value))) == "invalid"


def test_a_connection_cut_while_idle_is_classified_unavailable() -> None:
    # What asyncpg raises when a read meets a pooled connection the server cut while it was idle
    # (seen in test_postgres_restart.py): a 503 to retry, not a 500.
    cut = asyncpg.exceptions._base.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    assert classify_database_error(cut) == "unavailable"
    assert classify_database_error(ValueError("a bug")) is None


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs PostgreSQL (see tests/conftest.py)")
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_driver_level_read_that_fails_drops_its_connection_from_the_pool(database_url: str) -> None:
    async def fail_a_read() -> bool:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                driver = (await connection.get_raw_connection()).driver_connection
                busy = asyncio.ensure_future(driver.fetch("SELECT pg_sleep(0.2)"))
                await asyncio.sleep(0.05)
                with pytest.raises(asyncpg.InterfaceError):
                    await driver_rows(connection, "SELECT 1")
                await asyncio.gather(busy, return_exceptions=True)
                return connection.invalidated
        finally:
            await engine.dispose()

    assert asyncio.run(fail_a_read())


def test_a_connection_back_in_the_pool_with_a_transaction_open_is_rolled_back(database_url: str) -> None:
    """The pool resets only connections whose driver has a transaction open: one that comes back
    with its transaction open (a DBAPI connection given back as it is, as a cancelled or
    collected connection would be) is rolled back before anyone else gets it."""

    def in_transaction(driver: Any) -> bool:
        return bool(
            driver.in_transaction if hasattr(driver, "in_transaction") else driver.is_in_transaction()
        )

    def leave_a_transaction_open(sync: Connection) -> tuple[bool, bool]:
        raw = sync.engine.raw_connection()
        cursor = raw.cursor()
        cursor.execute("INSERT INTO compacted_changes VALUES ('x', 'd', 1)")
        cursor.close()
        driver = raw.driver_connection
        opened = in_transaction(driver)
        raw.close()  # back to the pool with the transaction open
        return opened, in_transaction(driver)

    async def run() -> tuple[bool, bool, int]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                opened, still_open = await connection.run_sync(leave_a_transaction_open)
            async with engine.connect() as connection:
                [(kept,)] = await driver_rows(connection, "SELECT count(*) FROM compacted_changes")
            return opened, still_open, int(kept)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == (True, False, 0)
