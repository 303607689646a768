"""A young PostgreSQL database: the push writer's lookups by id list are prepared statements, and
PostgreSQL plans them generically after a few runs. A generic plan made while the tables were
nearly empty is a sequential scan that it kept as the log grew, until autovacuum analysed the
table. The writer has the tables analysed each time the log doubles while it is young
(server/db/upkeep.py), which replaces that plan by one that uses the index."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import create_engine, pooled_rows
from server.settings import Settings
from server.sync.cursors import sync_cursor
from server.sync.store import SyncStore
from tests.conftest import POSTGRES_URL, _admin, _migrate
from tests.factories import set_

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL and not os.environ.get("CI"), reason="needs PostgreSQL (see tests/conftest.py)"
)


@pytest.fixture
async def young_database() -> AsyncIterator[str]:
    assert POSTGRES_URL is not None
    name = f"gs_young_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    await _migrate(url)
    yield url
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _generic_plan(engine: AsyncEngine, store: SyncStore) -> str:
    """How PostgreSQL would run the writer's duplicate lookup with a generic plan made now."""
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        query = store.writer._sql.changes_by_id
        await connection.exec_driver_sql(f"PREPARE lookup(text[]) AS {query}")
        plan = await connection.exec_driver_sql("EXPLAIN EXECUTE lookup(ARRAY['x'])")
        text = "\n".join(row[0] for row in plan)
        await connection.exec_driver_sql("DEALLOCATE lookup")
        await connection.rollback()
        return text


async def _fill(store: SyncStore, *, pushes: int, size: int) -> None:
    """``pushes`` pushes of ``size`` new changes, each to a record of its own, then the writer's
    upkeep (the analyses of a young log) done."""
    for n in range(pushes):
        batch = [set_("notes", f"v{n}-{i}", record=f"h{n}-{i}") for i in range(size)]
        outcome = await store.writer.push(None, "phone-1", batch)
        assert {r.status for r in outcome.results} == {"applied"}
    await store.writer.idle()
    assert store.writer.upkeep is not None
    await store.writer.upkeep.idle()


async def test_the_log_is_analysed_as_it_grows_and_lookups_use_the_index(young_database: str) -> None:
    engine = create_engine(young_database)
    store = SyncStore(engine, Settings(database_url=young_database))
    try:
        assert "Seq Scan on changes" in await _generic_plan(engine, store)
        # 5,000 changes: analysed at 1,000, 2,000 and 4,000 (a table of 1,000 changes is still
        # read fastest by a scan; at 4,000 the index wins).
        await _fill(store, pushes=10, size=500)
        async with engine.connect() as connection:
            analysed = (
                await connection.exec_driver_sql(
                    "SELECT relname, reltuples FROM pg_class WHERE relname IN ('changes', 'records')"
                )
            ).all()
            # Never analysed, a table has -1; the analysis at 4,000 changes saw 4,000 or more.
            assert all(tuples >= 4000 for _, tuples in analysed)
            assert {name for name, _ in analysed} == {"changes", "records"}
        plan = await _generic_plan(engine, store)
        assert "Seq Scan on changes" not in plan
        assert "Index" in plan
    finally:
        await engine.dispose()


_LOGGED = 20_000
_LIMIT = 100
# Phones a little behind, the last few near the end of the log.
_CURSORS = range(_LOGGED - 200, _LOGGED, 20)


async def test_the_pull_is_planned_once_and_its_plan_reused(young_database: str) -> None:
    """PostgreSQL plans the unscoped pull's prepared statement once and reuses that plan. A page
    bounded by its LIMIT alone was planned afresh on every pull: its generic plan, priced for an
    unknown cursor and limit, looked dearer than each custom one (the planner was a fifth of
    PostgreSQL's CPU in a storm of phones, docs/benchmarks.md)."""
    engine = create_engine(young_database)
    try:
        # A log of some size: on a small one the generic plan looks cheap enough either way.
        await _fill(
            SyncStore(engine, Settings(database_url=young_database)), pushes=_LOGGED // 1_000, size=1_000
        )
    finally:
        await engine.dispose()
    # The pulls on an engine of their own: its one pooled connection prepares the statement and
    # is the session whose prepared statements are counted after.
    engine = create_engine(young_database)
    store = SyncStore(engine, Settings(database_url=young_database))
    try:
        _, end, _ = await store.json_pulls.page(None, 1)
        epoch = end.partition(".")[0]
        pages = []
        for since in _CURSORS:
            rows, _, more = await store.json_pulls.page(sync_cursor(epoch, since), _LIMIT)
            pages.append((len(rows), more))
        [(generic, custom)] = await pooled_rows(
            store.json_pulls.reader,
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            store.json_pulls.statement,
        )
    finally:
        await engine.dispose()
    assert pages == [(min(_LIMIT, _LOGGED - since), _LOGGED - since > _LIMIT) for since in _CURSORS]
    # PostgreSQL tries five custom plans before it weighs the generic one.
    assert custom <= 5
    assert generic == 1 + len(pages) - custom
