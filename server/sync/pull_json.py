"""The pull page of an unscoped caller in JSON: each change as JSON text made by the database,
so the response is the rows joined, with no object per change and nothing re-encoded.

One statement of one text column per page, on the primary or on a standby that holds the
cursor (``server.db.replicas``); scoped callers go through ``server.sync.pull`` (filters, masks,
moves).
"""

from __future__ import annotations

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import CollectionSpec
from server.access.personal import SEALED_PREFIX
from server.access.policy import is_scoped, mask_value, scope_fingerprint
from server.access.principals import Principal
from server.db.engine import classify_database_error, pooled_rows
from server.db.replicas import ReadReplicas, ReplicaBehindError
from server.sync.cursors import MAX_SEQ, cursor_epoch, cursor_seq, sync_cursor
from server.sync.position import StoreReader, judge_cursor

__all__ = ["JsonPullReader"]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

# An unscoped pull in one statement of one text column: the counter's row (a JSON array of epoch,
# last seq and floor), then each change as JSON text made by the database, ``seq`` last
# (``_seq_of``). The log has no gaps above the floor, so bounding seq on both sides drops no row
# and lets PostgreSQL plan the prepared statement once (tests/reliability/test_young_database.py).
_PULL_JSON_SQLITE = (
    "SELECT json_array(epoch, last_seq, compacted_seq) FROM sync_counter WHERE id = 1 UNION ALL "
    "SELECT * FROM (SELECT json_object('id', id, 'collection', collection, 'record_id', "
    "record_id, 'field', field, 'op', op, 'value', json(value), 'hlc', hlc, 'pred', json(pred), "
    "'seq', seq) FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?)"
)
# Concatenated rather than row_to_json: value and pred go in as stored, unparsed.
_PULL_JSON_POSTGRES = (
    "(SELECT json_build_array(epoch, last_seq, compacted_seq)::text FROM sync_counter WHERE id = 1) "
    """UNION ALL (SELECT '{"id":' || to_json(id)::text || ',"collection":' """
    """|| to_json(collection)::text || ',"record_id":' || to_json(record_id)::text """
    """|| ',"field":' || coalesce(to_json(field)::text, 'null') || ',"op":' || to_json(op)::text """
    """|| ',"value":' || value || ',"hlc":' || to_json(hlc)::text || ',"pred":' || pred """
    """|| ',"seq":' || seq::text || '}' FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3)"""
)
_position_decode = msgspec.json.Decoder(tuple[str, int, int]).decode
# On a standby the position also says whether it still follows the primary.
_PULL_JSON_REPLICA = _PULL_JSON_POSTGRES.replace(
    "json_build_array(epoch, last_seq, compacted_seq)",
    "json_build_array(epoch, last_seq, compacted_seq, pg_is_in_recovery())",
)
_replica_position_decode = msgspec.json.Decoder(tuple[str, int, int, bool]).decode
# A sealed value (an ID number at rest, server/access/personal.py) as it shows in a pulled row's JSON.
_SEALED_JSON = f'"{SEALED_PREFIX}'


def _take_position(rows: list[str]) -> str:
    """Remove and return the pull query's counter row: the only one that is not an object (the
    union keeps it first)."""
    at = 0 if rows[0][0] == "[" else next(i for i, row in enumerate(rows) if row[0] == "[")
    return rows.pop(at)


def _seq_of(pulled: str) -> int:
    """The seq of a change as the pull query writes it: its last key, an integer, so the last
    colon comes right before it."""
    return int(pulled[pulled.rindex(":") + 1 : -1])


class JsonPullReader(StoreReader):
    """The unscoped JSON pull page (``SyncStore.json_pulls``)."""

    def __init__(
        self, engine: AsyncEngine, replicas: ReadReplicas, collections: dict[str, CollectionSpec]
    ) -> None:
        super().__init__(engine, replicas, collections)
        sqlite = engine.dialect.name == "sqlite"
        # The page's statement on the primary, prepared once per connection.
        self.statement = _PULL_JSON_SQLITE if sqlite else _PULL_JSON_POSTGRES
        # The hot reads need no transaction of their own: on PostgreSQL, autocommit spares them
        # a BEGIN and a ROLLBACK round trip each. (SQLite's driver opens none for a read.)
        self.reader = engine if sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")

    async def page(
        self, since: str | None, limit: int, *, principal: Principal | None = None, at_least: int = 0
    ) -> tuple[list[str], str, bool]:
        """The page after ``since``: (each change as its JSON text, cursor, more). ``at_least``:
        a seq the page's database must hold (the exchange's own push)."""
        assert not is_scoped(principal), "scoped pulls filter and mask: use PullReader"
        # One round trip: the page after the cursor's seq, and the position to judge the cursor
        # by (its epoch, the last seq, the compaction floor); a page of a cursor judged wrong is
        # dropped unsent.
        after = min(cursor_seq(since), MAX_SEQ)
        upper = min(after + limit + 1, MAX_SEQ)
        params = (after, upper, limit + 1)
        read = await self._from_standby(since, max(after, at_least), params) if self.replicas else None
        if read is None:
            rows = [row[0] for row in await pooled_rows(self.reader, self.statement, *params)]
            epoch, last_seq, floor = _position_decode(_take_position(rows))
        else:
            rows, (epoch, last_seq, floor) = read
        after = judge_cursor(since, epoch, last_seq, principal, floor)
        more = len(rows) > limit
        del rows[limit:]
        # Without more rows than the page, every seq up to the bound was read: the cursor moves
        # there, past any gap an erasure left (server/registry/erasure.py), and says whether there is more.
        end = _seq_of(rows[-1]) if more else max(after, min(upper, last_seq))
        more = more or end < last_seq
        for index, row in enumerate(rows):
            if _SEALED_JSON in row:
                rows[index] = self._opened(row)
        return rows, sync_cursor(epoch, end, scope_fingerprint(principal)), more

    def _opened(self, row: str) -> str:
        """A pulled row (JSON text) with its sealed ID number opened, for the unscoped caller."""
        change = _json_decode(row)
        change["value"] = mask_value(
            None, self.collections, change["collection"], change["field"], change["value"]
        )
        return _json_encode(change).decode()

    async def _from_standby(
        self, since: str | None, wanted_seq: int, params: tuple[int, int, int]
    ) -> tuple[list[str], tuple[str, int, int]] | None:
        """The page from a standby that holds ``wanted_seq`` of the cursor's epoch; None when
        none can serve it (the primary does)."""
        replica = self.replicas.pick()
        if replica is None:
            return None
        try:
            rows = [row[0] for row in await pooled_rows(replica.reader, _PULL_JSON_REPLICA, *params)]
        except Exception as error:
            if classify_database_error(error) != "unavailable":
                raise
            replica.mark_down(error)
            return None
        epoch, last_seq, floor, in_recovery = _replica_position_decode(_take_position(rows))
        try:
            self.replicas.check(
                in_recovery=in_recovery,
                epoch=epoch,
                last_seq=last_seq,
                wanted_epoch=cursor_epoch(since),
                wanted_seq=wanted_seq,
            )
        except ReplicaBehindError:
            return None
        return rows, (epoch, last_seq, floor)
