"""History compaction below a safe horizon, and the acknowledged pull cursors that bound it.

The change log grows forever unless it is compacted. A change row may go once no phone can still
need it from the log: it is not a head of its record (record states keep every head, so
snapshots and record reads never need the log), it is older than the longest allowed offline
period, and every active device has acknowledged a pull cursor past it. A phone that comes back
from below the compaction point is answered 409 ``resync_required`` and starts again from a
snapshot, re-offering its own changes: the ids of compacted changes are kept (with a digest of
their content), so those re-offers are answered ``duplicate``, never applied twice.

A device acknowledges a position by pulling from it (the ``since`` of a pull: it holds every
change up to there). Recording that on every pull would add a write to a read; instead each app
process writes it at most once per ``ack_interval_ms`` per device. A stale acknowledgement is
lower than the truth, which only makes compaction more cautious.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db.engine import classify_database_error, driver_rows
from server.db.paging import chunks
from server.db.tables import changes, compacted_changes, devices, records, sync_counter
from server.settings import Settings
from sync import hlc
from sync.merge import state_codec

__all__ = [
    "CompactionReport",
    "PullAcknowledgements",
    "change_digest",
    "compact",
    "compacted_digests",
    "plan_horizon",
]

_PAGE = 2_000
_digest_encode = msgspec.json.Encoder(order="sorted").encode


def change_digest(
    collection: str, record_id: str, field: str | None, op: str, value: Any, hlc: str, pred: Sequence[str]
) -> str:
    """A digest of a change's content: equal digests, same change (the duplicate test)."""
    body = _digest_encode([collection, record_id, field, op, value, hlc, list(pred)])
    return hashlib.sha256(body).hexdigest()


async def compacted_digests(connection: AsyncConnection, ids: Sequence[str]) -> dict[str, str]:
    """Digests of the compacted changes among ``ids``."""
    found: dict[str, str] = {}
    for chunk in chunks(ids):
        query = select(compacted_changes.c.id, compacted_changes.c.digest).where(
            compacted_changes.c.id.in_(chunk)
        )
        found.update((row.id, row.digest) for row in await connection.execute(query))
    return found


# A batch of acknowledgements in one statement; an acknowledgement never moves back.
_ACK_SQLITE = """UPDATE devices SET acked_seq = a.seq, acked_at_ms = ?
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS seq FROM json_each(?)) AS a
WHERE devices.id = a.id AND (devices.acked_seq IS NULL OR devices.acked_seq < a.seq)"""
_ACK_POSTGRES = """UPDATE devices AS d SET acked_seq = a.seq, acked_at_ms = $1
FROM unnest($2::varchar[], $3::bigint[]) AS a (id, seq)
WHERE d.id = a.id AND (d.acked_seq IS NULL OR d.acked_seq < a.seq)"""
_list_json = msgspec.json.Encoder().encode


class PullAcknowledgements:
    """Records each device's acknowledged pull position, at most once per interval per device.

    Acknowledgements that arrive together are written together: while one write is under way,
    the next ones gather, and the first of them to get its turn writes them all in one
    statement (on SQLite, one write lock and one fsync for a whole storm of pulls rather than
    one each). The pull controller records it after the page is sent (a background task), so
    the phone never waits for it."""

    def __init__(self, engine: AsyncEngine, interval_ms: int) -> None:
        self.engine = engine
        self.interval_ms = interval_ms
        self._written: dict[str, tuple[int, int]] = {}
        self._pending: dict[str, int] = {}
        self._turn = asyncio.Lock()

    async def record(self, device_id: str, since: str | None) -> None:
        """Note that ``device_id`` holds everything up to the (already validated) cursor."""
        # A cursor is "<epoch>.<seq>" or "<epoch>.<seq>.<scope fingerprint>".
        seq = int(since.partition(".")[2].partition(".")[0]) if since else 0
        now = hlc.now_ms()
        last = self._written.get(device_id)
        if last is not None and (seq <= last[0] or now - last[1] < self.interval_ms):
            return
        self._pending[device_id] = max(seq, self._pending.get(device_id, seq))
        async with self._turn:
            if device_id not in self._pending:
                return  # an earlier turn wrote it along with its own
            batch, self._pending = self._pending, {}
            await self._write(batch, hlc.now_ms())

    async def _write(self, batch: dict[str, int], now: int) -> None:
        try:
            if self.engine.dialect.name == "sqlite":
                async with self.engine.begin() as connection:
                    await connection.exec_driver_sql(_ACK_SQLITE, (now, _list_json(list(batch.items()))))
            else:
                # One statement, atomic on its own: no BEGIN and COMMIT round trips around it.
                async with self.engine.connect() as connection:
                    await driver_rows(connection, _ACK_POSTGRES, now, list(batch), list(batch.values()))
        except Exception as error:
            # Best effort: the pull itself succeeded, and a missing acknowledgement only makes
            # compaction more cautious. A full disk or a busy database must not fail a read;
            # anything else is a bug.
            if classify_database_error(error) is None:
                raise
            return
        for device, seq in batch.items():
            self._written[device] = (seq, now)


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What a compaction found and did. ``horizon`` is the highest seq that may be compacted."""

    horizon: int
    old_seq: int
    acked_seq: int | None
    active_devices: int
    previous_floor: int
    examined: int
    compacted: int
    kept_heads: int
    dry_run: bool


async def plan_horizon(
    connection: AsyncConnection, settings: Settings, now_ms: int
) -> tuple[int, int, int | None, int]:
    """(horizon, newest seq older than the offline limit, lowest acknowledged seq, active devices).

    Active devices are the unrevoked ones seen within the offline limit; a device that never
    pulled has no position to keep and starts from a snapshot anyway."""
    cutoff = now_ms - settings.max_offline_ms
    old_seq = (
        await connection.execute(select(func.max(changes.c.seq)).where(changes.c.received_at_ms < cutoff))
    ).scalar_one() or 0
    active = devices.c.revoked_at_ms.is_(None) & (devices.c.last_seen_at_ms >= cutoff)
    row = (
        await connection.execute(
            select(func.min(devices.c.acked_seq), func.count()).where(
                active, devices.c.acked_seq.is_not(None)
            )
        )
    ).one()
    acked_seq = None if row[0] is None else int(row[0])
    horizon = int(old_seq) if acked_seq is None else min(int(old_seq), acked_seq)
    return horizon, int(old_seq), acked_seq, int(row[1])


async def compact(
    engine: AsyncEngine, settings: Settings, *, now_ms: int | None = None, dry_run: bool = False
) -> CompactionReport:
    """Delete the change rows below the horizon that are no head of their record.

    The floor is raised first (so cursors below it are refused from then on), then the rows go
    page by page, each page in its own short transaction with its ids kept in
    ``compacted_changes``. Safe beside running pushes: a change that is not a head never
    becomes one again, so a concurrent push cannot make a deleted row needed."""
    now = hlc.now_ms() if now_ms is None else now_ms
    async with engine.begin() as connection:
        horizon, old_seq, acked_seq, active = await plan_horizon(connection, settings, now)
        previous = int((await connection.execute(select(sync_counter.c.compacted_seq))).scalar_one())
        horizon = max(horizon, previous)
        if not dry_run and horizon > previous:
            await connection.execute(
                update(sync_counter).where(sync_counter.c.id == 1).values(compacted_seq=horizon)
            )
    examined = removed = kept = 0
    after = 0
    while True:
        async with engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(changes)
                    .where(changes.c.seq > after, changes.c.seq <= horizon)
                    .order_by(changes.c.seq)
                    .limit(_PAGE)
                )
            ).all()
            if not rows:
                break
            after = rows[-1].seq
            examined += len(rows)
            heads = await _head_ids(connection, {(row.collection, row.record_id) for row in rows})
            gone = [row for row in rows if row.id not in heads]
            kept += len(rows) - len(gone)
            removed += len(gone)
            if gone and not dry_run:
                await _forget(connection, gone)
    return CompactionReport(
        horizon=horizon,
        old_seq=old_seq,
        acked_seq=acked_seq,
        active_devices=active,
        previous_floor=previous,
        examined=examined,
        compacted=removed,
        kept_heads=kept,
        dry_run=dry_run,
    )


async def _forget(connection: AsyncConnection, gone: Sequence[Any]) -> None:
    """Delete the change rows ``gone``, keeping each one's id and digest in ``compacted_changes``."""
    await connection.execute(
        compacted_changes.insert(),
        [
            {
                "id": row.id,
                "seq": row.seq,
                "digest": change_digest(
                    row.collection,
                    row.record_id,
                    row.field,
                    row.op,
                    msgspec.json.decode(row.value),
                    row.hlc,
                    msgspec.json.decode(row.pred),
                ),
            }
            for row in gone
        ],
    )
    for chunk in chunks([row.seq for row in gone]):
        await connection.execute(delete(changes).where(changes.c.seq.in_(chunk)))


async def _head_ids(connection: AsyncConnection, keys: set[tuple[str, str]]) -> set[str]:
    found: set[str] = set()
    ordered = sorted(keys)
    for chunk in chunks(ordered):
        query = select(records.c.state).where(tuple_(records.c.collection, records.c.record_id).in_(chunk))
        for blob in (await connection.execute(query)).scalars():
            found.update(state_codec.decode(blob).heads)
    return found
