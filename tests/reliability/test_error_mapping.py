"""The one place that maps database faults to answers (server/problems.py), fed real errors."""

from __future__ import annotations

import asyncio

import pytest
from litestar.testing import TestClient
from sqlalchemy import literal, select
from sqlalchemy.exc import DBAPIError

from server.app import create_app
from server.database import create_engine
from server.problems import classify_database_error
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


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs GRIDSYNC_TEST_POSTGRES_URL")
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
