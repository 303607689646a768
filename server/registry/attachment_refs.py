"""The records that name each attachment, kept by the push: what a download is judged by.

A record names a photo by adding its SHA-256 to a set field of attachments (a hazard's or a
request's ``photos``). The link is kept once made, also after the photo is removed from the set,
so whoever may read the record may still read the photos its history shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.collections import CollectionSpec, Sha256
from schemas.protocol import AddChange, Change
from server.db.tables import attachment_refs

__all__ = ["attachment_fields", "link_attachments"]


def attachment_fields(collections: Mapping[str, CollectionSpec]) -> frozenset[tuple[str, str]]:
    """The (collection, field) pairs whose elements are attachment hashes."""
    return frozenset(
        (spec.name, field.name)
        for spec in collections.values()
        for field in spec.fields.values()
        if field.policy == "set" and field.type == Sha256
    )


async def link_attachments(
    connection: AsyncConnection, fields: frozenset[tuple[str, str]], accepted: Sequence[Change]
) -> None:
    """Link the photos that ``accepted`` changes add to their records (one statement)."""
    rows = [
        {"sha256": change.value, "collection": change.collection, "record_id": change.record_id}
        for change in accepted
        if isinstance(change, AddChange) and (change.collection, change.field) in fields
    ]
    if not rows:
        return
    insert = sqlite.insert if connection.dialect.name == "sqlite" else postgresql.insert
    await connection.execute(insert(attachment_refs).on_conflict_do_nothing(), rows)
