"""Each office's column mapping (column name -> field) per collection, kept between imports."""

from __future__ import annotations

import json
import time

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.tables import import_mappings

__all__ = ["load_mapping", "save_mapping"]


async def load_mapping(engine: AsyncEngine, office: str | None, collection: str) -> dict[str, str]:
    """The mapping the office saved for ``collection`` (empty when none)."""
    query = select(import_mappings.c.mapping).where(
        import_mappings.c.office == (office or ""), import_mappings.c.collection == collection
    )
    async with engine.connect() as connection:
        found = (await connection.execute(query)).scalar_one_or_none()
    loaded = json.loads(found) if found else {}
    return {str(k): str(v) for k, v in loaded.items()}


async def save_mapping(
    engine: AsyncEngine, office: str | None, collection: str, mapping: dict[str, str]
) -> None:
    """Keep ``mapping`` as the office's for ``collection`` (an empty one forgets it)."""
    where = (import_mappings.c.office == (office or ""), import_mappings.c.collection == collection)
    async with engine.begin() as connection:
        await connection.execute(delete(import_mappings).where(*where))
        if mapping:
            await connection.execute(
                import_mappings.insert().values(
                    office=office or "",
                    collection=collection,
                    mapping=json.dumps(mapping, ensure_ascii=False),
                    updated_at_ms=int(time.time() * 1000),
                )
            )
