"""The office's writes and reads on the desk: a field edited, a request dispatched, a task made,
the worker's list of today.

Every write is an ordinary change pushed as the signed-in admin (replica ``desk-<user>``), judged
like a phone's (types, the status machines, scopes). Its ``pred`` is the heads the page showed
(sent back by the form), not the heads at the moment of writing: a phone's edit that arrived in
between is therefore concurrent, and the two values become a conflict in the inbox instead of
the desk overwriting it.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from schemas.protocol import AddChange, Change, ChangeResult, RecordView, RemoveChange, SetChange
from server.access.principals import Principal
from server.db.tables import changes as change_log
from server.db.tables import devices, records, users
from server.errors import GridsyncError
from server.registry.lists import Registry, ScopeFilter, masked_view, scan
from server.settings import Settings
from server.sync.store import SyncStore
from sync.hlc import format_hlc, parse_hlc
from sync.ids import new_change_id
from sync.merge import record_heads, record_view, scalar_value, state_codec

__all__ = ["Desk", "StepEvent", "Written", "field_heads"]


@dataclass(frozen=True, slots=True)
class Written:
    """What a desk write did: the changes it pushed and those refused (with their reason)."""

    changes: list[Change]
    refused: list[ChangeResult]

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One write to a request's loop: which field took which value, by whom, when it arrived."""

    field: str
    value: Any
    by: str
    at_ms: int


def field_heads(state: Any) -> dict[str, list[str]]:
    """Per field, the ids of its current heads (what a form sends back as what it saw)."""
    found: dict[str, list[str]] = {}
    for head in record_heads(state):
        if head.field is not None:
            found.setdefault(head.field, []).append(head.id)
    return {name: sorted(ids) for name, ids in found.items()}


class Desk:
    """The office's desk over the sync store."""

    def __init__(self, store: SyncStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.registry = Registry(store)
        self.collections = store.collections
        self.zone = ZoneInfo(settings.timezone)

    def today(self) -> datetime.date:
        return datetime.datetime.now(self.zone).date()

    def _stamper(
        self, principal: Principal | None, collection: str, record_id: str
    ) -> Callable[[], dict[str, Any]]:
        """What each change of one record's write carries: its own id (time-ordered, as a phone's),
        the write's one hlc."""
        tick = parse_hlc(self.store.clock.now())
        common = {
            "collection": collection,
            "record_id": record_id,
            "hlc": format_hlc(tick.wall_ms, tick.counter, self.replica(principal)),
        }
        return lambda: {"id": new_change_id(), **common}

    @staticmethod
    def replica(principal: Principal | None) -> str:
        return f"desk-{principal.user_id}"[:64] if principal is not None else "desk"

    async def view(self, collection: str, record_id: str, principal: Principal) -> RecordView | None:
        """The record as ``principal`` may see it, with its heads; None when absent or out of scope."""
        spec = self.registry.spec(collection)
        query = ScopeFilter(principal=principal).apply(
            select(records.c.state).where(
                records.c.collection == collection, records.c.record_id == record_id
            )
        )
        async with self.store.engine.connect() as connection:
            blob = (await connection.execute(query)).scalar_one_or_none()
        if blob is None:
            return None
        return masked_view(
            record_view(state_codec.decode(blob), spec, record_id), principal, self.collections
        )

    async def heads(self, collection: str, record_id: str) -> dict[str, list[str]]:
        query = select(records.c.state).where(
            records.c.collection == collection, records.c.record_id == record_id
        )
        async with self.store.engine.connect() as connection:
            blob = (await connection.execute(query)).scalar_one_or_none()
        return {} if blob is None else field_heads(state_codec.decode(blob))

    def plan(
        self,
        principal: Principal | None,
        collection: str,
        record_id: str,
        values: Mapping[str, Any],
        seen: Mapping[str, Sequence[str]],
    ) -> list[Change]:
        """Scalar fields set to ``values`` over the heads in ``seen``; a set field given as a
        list is written as the adds and removes that make it that list."""
        spec = self.registry.spec(collection)
        stamp = self._stamper(principal, collection, record_id)
        planned: list[Change] = []
        for name, value in values.items():
            field_spec = spec.fields.get(name)
            if field_spec is None:
                raise GridsyncError(400, "unknown_field", f"{collection} have no field {name!r}")
            if field_spec.policy == "scalar":
                pred = tuple(sorted(seen.get(name, ())))
                planned.append(SetChange(**stamp(), field=name, value=value, pred=pred))
                continue
            planned += self._set_changes(stamp, name, value, seen)
        return planned

    @staticmethod
    def _set_changes(
        stamp: Callable[[], dict[str, Any]], name: str, value: Any, seen: Mapping[str, Sequence[str]]
    ) -> list[Change]:
        # ``seen[name + ":" + element]`` holds the adds of an element the page showed.
        wanted = set(value or ())
        shown = {key.split(":", 1)[1]: ids for key, ids in seen.items() if key.startswith(f"{name}:")}
        planned: list[Change] = [
            AddChange(**stamp(), field=name, value=element) for element in sorted(wanted - set(shown))
        ]
        planned += [
            RemoveChange(**stamp(), field=name, value=element, pred=tuple(ids))
            for element, ids in sorted(shown.items())
            if element not in wanted
        ]
        return planned

    async def push(self, principal: Principal | None, planned: Sequence[Change]) -> Written:
        """Push as the admin (judged on scope like any change), or as the server when None."""
        if not planned:
            return Written([], [])
        device = principal.id if principal is not None else None
        outcome = await self.store.writer.push(device, self.replica(principal), list(planned), principal)
        refused = [r for r in outcome.results if r.status == "rejected"]
        return Written(list(planned), refused)

    async def write(
        self,
        principal: Principal,
        collection: str,
        record_id: str,
        values: Mapping[str, Any],
        seen: Mapping[str, Sequence[str]],
    ) -> Written:
        return await self.push(principal, self.plan(principal, collection, record_id, values, seen))

    async def create_task(self, principal: Principal, values: Mapping[str, Any]) -> tuple[str, Written]:
        """A task made on the desk: open, by the office."""
        task_id = f"task-{uuid.uuid4().hex[:20]}"
        fields = {k: v for k, v in values.items() if v not in (None, "")}
        fields |= {"status": "open", "source": "desk"}
        return task_id, await self.write(principal, "tasks", task_id, fields, {})

    async def today_tasks(self, principal: Principal, day: datetime.date | None = None) -> list[RecordView]:
        """The caller's open tasks due by ``day`` (today), in their scope, soonest first."""
        day = day or self.today()
        spec = self.collections["tasks"]
        found: list[RecordView] = []
        async with self.store.engine.connect() as connection:
            async for row in scan(connection, "tasks", ScopeFilter(principal=principal)):
                due = scalar_value(row.state, "due_date")
                if (
                    scalar_value(row.state, "assignee") == principal.user_id
                    and scalar_value(row.state, "status") == "open"
                    and isinstance(due, str)
                    and due <= day.isoformat()
                ):
                    found.append(record_view(row.state, spec, row.record_id))
        found.sort(key=lambda v: (str(v.fields.get("due_date")), v.id))
        return found

    async def steps(self, collection: str, record_id: str) -> list[StepEvent]:
        """Every write to a record, oldest first, with the user (or device) that made it."""
        query = (
            select(
                change_log.c.field,
                change_log.c.value,
                change_log.c.received_at_ms,
                devices.c.name.label("device_name"),
                users.c.name.label("user_name"),
                change_log.c.hlc,
            )
            .select_from(
                change_log.outerjoin(devices, devices.c.id == change_log.c.device_id).outerjoin(
                    users, users.c.id == devices.c.user_id
                )
            )
            .where(change_log.c.collection == collection, change_log.c.record_id == record_id)
            .order_by(change_log.c.seq)
        )
        async with self.store.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            StepEvent(
                field=row.field or "(record)",
                value=_decoded(row.value),
                by=row.user_name or row.device_name or row.hlc.rsplit("-", 1)[-1],
                at_ms=row.received_at_ms,
            )
            for row in rows
        ]


def _decoded(raw: str) -> Any:
    import msgspec

    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw
