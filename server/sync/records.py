"""A record read back whole: its merged fields, deletion and open conflicts, as its reader may
see them."""

from __future__ import annotations

from sqlalchemy import select

from schemas.collections import CollectionSpec
from schemas.protocol import RecordView
from server.access.policy import mask_view, reads_filter
from server.access.principals import Principal
from server.db.tables import records
from server.errors import GridsyncError
from server.sync.position import StoreReader
from sync.merge import record_view, state_codec
from sync.validate import RECORD_ID_PATTERN

__all__ = ["RecordReader", "collection_spec"]


def collection_spec(collections: dict[str, CollectionSpec], collection: str) -> CollectionSpec:
    """The collection's spec; 404 ``unknown_collection`` naming the known ones."""
    spec = collections.get(collection)
    if spec is None:
        known = ", ".join(sorted(collections))
        raise GridsyncError(404, "unknown_collection", f"unknown collection {collection!r}; known: {known}")
    return spec


class RecordReader(StoreReader):
    """One record at a time (``SyncStore.records``)."""

    async def view(self, collection: str, record_id: str, principal: Principal | None = None) -> RecordView:
        """The record as ``principal`` may read it (masked); 404 when it is missing or out of
        scope alike."""
        spec = collection_spec(self.collections, collection)
        if not RECORD_ID_PATTERN.match(record_id):
            # No such id can exist, and PostgreSQL refuses some of them (NUL) in a query.
            raise GridsyncError(404, "not_found", f"no record {record_id!r} in {collection!r}")
        # It needs no position: a standby serves it when there is one.
        async with self.replicas.engine_or(self.engine).connect() as connection:
            query = select(records.c.state).where(
                records.c.collection == collection, records.c.record_id == record_id, reads_filter(principal)
            )
            blob = (await connection.execute(query)).scalar_one_or_none()
        if blob is None:
            # Out of scope answers like a missing record: existence itself is not disclosed.
            raise GridsyncError(404, "not_found", f"no record {record_id!r} in {collection!r}")
        return mask_view(principal, self.collections, record_view(state_codec.decode(blob), spec, record_id))
