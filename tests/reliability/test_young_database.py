"""A young PostgreSQL database: the push writer's lookups by id list are planned for the table as
it is on every push, never with a generic plan cached while the table was nearly empty (a
sequential scan that PostgreSQL kept as the log grew, until autovacuum analysed the table)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from server.database import create_engine
from server.settings import Settings
from server.store import SyncStore
from tests.conftest import POSTGRES_URL, _admin, _migrate
from tests.factories import set_

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL and not os.environ.get("CI"), reason="needs GRIDSYNC_TEST_POSTGRES_URL"
)


@pytest.fixture
async def young_database() -> Iterator[str]:  # type: ignore[misc]
    assert POSTGRES_URL is not None
    name = f"gs_young_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    await _migrate(url)
    yield url
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_the_writer_never_reuses_a_generic_plan(young_database: str) -> None:
    # One pooled connection, used in turn by every push and then by this test's own checks.
    engine = create_engine(young_database, pool_size=1)
    store = SyncStore(engine, Settings(database_url=young_database))
    try:
        pushes = 12  # PostgreSQL weighs a generic plan from a statement's sixth execution on
        for n in range(pushes):
            outcome = await store.push(
                None, "phone-1", [set_("notes", f"v{n}-{i}", record=f"h{i}") for i in range(5)]
            )
            assert {r.status for r in outcome.results} == {"applied"}
        await store.writer.idle()
        async with engine.connect() as connection:
            plans = (
                await connection.exec_driver_sql(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE 'SELECT id, collection, record_id%FROM changes WHERE id%'"
                )
            ).all()
            assert plans, "the duplicate lookup ran on this connection"
            assert all(generic == 0 and custom >= pushes for generic, custom in plans)
            # The setting leaves with the writer: the connection's other users keep cached plans.
            assert (await connection.exec_driver_sql("SHOW plan_cache_mode")).scalar_one() == "auto"
    finally:
        await engine.dispose()
