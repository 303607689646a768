"""Erasing a resident who moved out: their personal data gone from the server and from phones.

An admin erases a resident by id (``POST /v1/admin/residents/{id}/erase``, ``gridsync resident
erase``). In one transaction, under the push's counter lock:

* every row of the resident's history leaves the change log, and their conflicts go with their
  events;
* one delete change, made by the server and naming every head the record held, is logged at a
  new seq, and the record keeps that delete alone: no field value is left in its state;
* the record leaves every scope (a move to nowhere): a phone whose scope held it finds it in its
  next pull's ``left`` and drops it; an unscoped (district-wide) phone receives the delete;
* the erasure is written to the audit log (who, when, how many rows; never a value).

docs/security.md says what a phone sees.
"""

from __future__ import annotations

import time
import uuid

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.protocol import DeleteChange
from schemas.views import ResidentErased
from server.access.principals import Principal
from server.db.tables import (
    SCOPE_COLUMNS,
    audit_log,
    changes,
    conflict_events,
    conflicts,
    records,
    scope_moves,
    sync_counter,
)
from server.errors import GridsyncError
from server.sync.store import SyncStore
from sync.merge import RecordState, state_codec
from sync.validate import RECORD_ID_PATTERN

__all__ = ["erase_resident"]

_json_encode = msgspec.json.Encoder().encode


def _not_found(resident_id: str) -> GridsyncError:
    return GridsyncError(404, "not_found", f"no resident {resident_id!r} that you administer")


async def erase_resident(
    store: SyncStore, principal: Principal | None, resident_id: str, *, address: str | None = None
) -> ResidentErased:
    """Erase ``residents/<resident_id>``; ``principal`` None is the console (any community)."""
    if not RECORD_ID_PATTERN.match(resident_id):
        raise _not_found(resident_id)
    sqlite = store.engine.dialect.name == "sqlite"
    async with store.engine.connect() as connection:
        if sqlite:
            # Freed pages are zeroed, so the purged rows' bytes leave the file (not just the table).
            await connection.exec_driver_sql("PRAGMA secure_delete = ON")
            await connection.commit()
        try:
            async with connection.begin():
                erased = await _erase(store, connection, principal, resident_id, address)
        finally:
            if sqlite:
                await connection.exec_driver_sql("PRAGMA secure_delete = OFF")
                # The log's older page images go with the write-ahead log's checkpoint.
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                await connection.commit()
    return erased


async def _erase(
    store: SyncStore,
    connection: AsyncConnection,
    principal: Principal | None,
    resident_id: str,
    address: str | None,
) -> ResidentErased:
    collection = "residents"
    same = (records.c.collection == collection, records.c.record_id == resident_id)
    now = time.time_ns() // 1_000_000
    # Taken first: pushes wait meanwhile, and the delete's seq follows every logged change.
    last_seq = (
        await connection.execute(
            update(sync_counter)
            .where(sync_counter.c.id == 1)
            .values(last_seq=sync_counter.c.last_seq)
            .returning(sync_counter.c.last_seq)
        )
    ).scalar_one()
    row = (
        await connection.execute(
            select(records.c.state, records.c.company, *(records.c[c] for c in SCOPE_COLUMNS)).where(*same)
        )
    ).one_or_none()
    if row is None or (principal is not None and not principal.administers_community(row.community_id)):
        raise _not_found(resident_id)
    heads = state_codec.decode(row.state).heads
    erased = DeleteChange(
        id=str(uuid.uuid4()),
        collection=collection,
        record_id=resident_id,
        hlc=store.clock.now(),
        pred=tuple(sorted(heads)),
    )
    seq = last_seq + 1
    purged = (
        await connection.execute(
            delete(changes).where(changes.c.collection == collection, changes.c.record_id == resident_id)
        )
    ).rowcount
    await connection.execute(
        insert(changes).values(
            seq=seq,
            id=erased.id,
            collection=collection,
            record_id=resident_id,
            field=None,
            op="delete",
            value="null",
            hlc=erased.hlc,
            pred=_json_encode(list(erased.pred)).decode(),
            device_id=principal.device_id if principal else None,
            received_at_ms=now,
        )
    )
    await connection.execute(
        update(records)
        .where(*same)
        .values(
            state=state_codec.encode(RecordState(heads={erased.id: erased})),
            deleted=True,
            conflict=False,
            updated_seq=seq,
            company=None,
            **dict.fromkeys(SCOPE_COLUMNS),
        )
    )
    old_place = [*(row._mapping[c] for c in SCOPE_COLUMNS), row.company]
    await connection.execute(
        insert(scope_moves).values(
            seq=seq,
            collection=collection,
            record_id=resident_id,
            level=None,
            old_scope=_json_encode(old_place).decode(),
            new_scope=_json_encode([None] * len(old_place)).decode(),
        )
    )
    of_record = select(conflicts.c.id).where(
        conflicts.c.collection == collection, conflicts.c.record_id == resident_id
    )
    await connection.execute(delete(conflict_events).where(conflict_events.c.conflict_id.in_(of_record)))
    await connection.execute(
        delete(conflicts).where(conflicts.c.collection == collection, conflicts.c.record_id == resident_id)
    )
    await connection.execute(update(sync_counter).where(sync_counter.c.id == 1).values(last_seq=seq))
    await connection.execute(
        insert(audit_log).values(
            at_ms=now,
            actor_user_id=principal.user_id if principal else None,
            actor_name=principal.user_name if principal else None,
            actor_device_id=principal.device_id if principal else None,
            address=address,
            action="resident_erase",
            target=f"{collection}/{resident_id}",
            community_id=row.community_id,
            detail=_json_encode(
                {"purged_changes": purged, "seq": seq, "delete_change_id": erased.id}
            ).decode(),
        )
    )
    return ResidentErased(resident_id=resident_id, purged_changes=purged, delete_change_id=erased.id, seq=seq)
