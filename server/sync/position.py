"""What the read paths (pull, snapshot, one record) stand on: the databases they read, where
the change log stands (its epoch, last seq and compaction floor), read with each page, and a
cursor judged against it (the pull's, the snapshot's, a list's ``updated_since``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.collections import CollectionSpec
from server.access.personal import sealed_fields
from server.access.policy import scope_fingerprint
from server.access.principals import Principal
from server.db.engine import driver_rows
from server.db.replicas import ReadReplicas
from server.errors import GridsyncError
from server.sync.cursors import cursor_seq

__all__ = ["StoreReader", "judge_cursor", "read_position"]

# The single counter row, read straight from the driver (same text for both).
_POSITION = "SELECT epoch, last_seq, compacted_seq FROM sync_counter WHERE id = 1"
# On a standby the position also says whether it still follows the primary (server/db/replicas.py).
_POSITION_REPLICA = (
    "SELECT epoch, last_seq, compacted_seq, pg_is_in_recovery() FROM sync_counter WHERE id = 1"
)


class StoreReader:
    """A read path of the store: the primary, its standbys, the collections. One instance of
    each per app, shared by requests (``server.sync.store.SyncStore``)."""

    def __init__(
        self, engine: AsyncEngine, replicas: ReadReplicas, collections: dict[str, CollectionSpec]
    ) -> None:
        self.engine = engine
        self.replicas = replicas
        self.collections = collections
        # The fields sealed at rest, which a page opens for callers who may read them whole.
        self._masked = sealed_fields(collections)


async def read_position(
    connection: AsyncConnection,
    replicas: ReadReplicas | None = None,
    wanted_epoch: str | None = None,
    wanted_seq: int = 0,
) -> tuple[str, int, int]:
    """(epoch, last seq, compaction floor), for the reads (every pull and snapshot page). With
    ``replicas`` the connection is a standby's: ``ReplicaBehindError`` unless it holds
    ``wanted_seq`` of ``wanted_epoch``."""
    if replicas is None:
        [(epoch, last_seq, floor)] = await driver_rows(connection, _POSITION)
        return epoch, last_seq, floor
    [(epoch, last_seq, floor, in_recovery)] = await driver_rows(connection, _POSITION_REPLICA)
    replicas.check(
        in_recovery=in_recovery,
        epoch=epoch,
        last_seq=last_seq,
        wanted_epoch=wanted_epoch,
        wanted_seq=wanted_seq,
    )
    return epoch, last_seq, floor


def judge_cursor(
    cursor: str | None,
    epoch: str,
    last_seq: int,
    principal: Principal | None = None,
    floor: int = 0,
) -> int:
    """The seq ``cursor`` names, once judged against the log's position: 409 ``resync_required``
    from another history (or before the floor), 409 ``scope_changed`` for another scope."""
    if not cursor:
        if floor > 0:
            raise GridsyncError(
                409,
                "resync_required",
                "the change log before this server's compaction point is gone: start from "
                "/v1/sync/snapshot and pull from its sync_cursor",
            )
        return 0
    cursor_epoch, _, rest = cursor.partition(".")
    fingerprint = rest.partition(".")[2]
    seq = cursor_seq(cursor)
    if cursor_epoch != epoch or seq > last_seq or seq < floor:
        raise GridsyncError(
            409,
            "resync_required",
            "this cursor belongs to another history of the database (it was restored or "
            "compacted): start again from /v1/sync/snapshot; pending local changes are kept "
            "and can be pushed as they are",
        )
    if fingerprint != scope_fingerprint(principal):
        raise GridsyncError(
            409,
            "scope_changed",
            "the grids or buildings assigned to this user changed: drop the records you hold "
            "that have no pending changes and start again from /v1/sync/snapshot",
        )
    return seq
