"""Migration 0002_domain runs both ways on both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from server.db.engine import alembic_config, create_engine, migrate


async def test_the_domain_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:

            def downgrade(sync: Connection) -> None:
                command.downgrade(alembic_config(database_url, sync), "0001_sync_core")

            await connection.run_sync(downgrade)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("records")}
            )
        assert "attachments" not in tables
        assert "grid_id" not in columns
        await migrate(engine)
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("records")}
            )
            indexes = await connection.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("records")}
            )
        assert {"community_id", "grid_id", "building_id", "household_id"} <= columns
        assert {"ix_records_grid_id", "ix_records_household_id"} <= indexes
    finally:
        await engine.dispose()


async def test_records_keep_half_full_pages_on_postgresql(database_url: str) -> None:
    """Migration 0007: room on each page for rewritten states (HOT updates); it goes down and
    up again on both backends, and only PostgreSQL has the setting."""
    engine = create_engine(database_url)

    def fillfactor(sync: Connection) -> str | None:
        if sync.dialect.name != "postgresql":
            return None
        options = sync.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'records'").scalar()
        return next((o.partition("=")[2] for o in options or () if o.startswith("fillfactor=")), "")

    try:
        async with engine.connect() as connection:
            migrated = await connection.run_sync(fillfactor)
        async with engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.downgrade(alembic_config(database_url, sync), "0006_reliability")
            )
        async with engine.connect() as connection:
            downgraded = await connection.run_sync(fillfactor)
        await migrate(engine)
        async with engine.connect() as connection:
            upgraded = await connection.run_sync(fillfactor)
        if engine.dialect.name == "postgresql":
            assert (migrated, downgraded, upgraded) == ("50", "", "50")
        else:
            assert (migrated, downgraded, upgraded) == (None, None, None)
    finally:
        await engine.dispose()
