"""The push path: every change judged on its own, then written by the one writer of the
process, which groups the pushes waiting at that moment into one transaction (group commit).

Each push of a group is applied in full and in arrival order against a view of what the pushes
before it wrote (duplicates, rules, scopes, conflicts), exactly as if it had its own
transaction; the group's reads are made once, its writes flushed together, and a push that
fails answers alone while the others are written again (docs/protocol.md, Push).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.codec import MalformedChange
from schemas.collections import CollectionSpec
from schemas.protocol import Change, ChangeResult, ConflictHead
from server.access.personal import Sealer, reveal, sealed_fields
from server.access.places import Scope, ScopeRow, follow_moves, has_moves, resolve_scopes, scope_keys
from server.access.policy import (
    Place,
    authorize_batch,
    can_read,
    company_of,
    is_scoped,
    log_moves,
    mask_value,
    moves_records,
    refuse_untouchable,
)
from server.access.principals import Principal
from server.db.engine import (
    driver_copy,
    driver_rows,
    driver_write,
    is_taken_id,
    write_locked,
)
from server.db.tables import SCOPE_COLUMNS, devices
from server.db.upkeep import storage_upkeep
from server.inbox.tracking import ConflictTracker
from server.observability.metrics import observe_push_group
from server.registry.attachment_refs import attachment_fields, link_attachments
from server.settings import Settings
from server.sync.horizon import change_digest, compacted_digests
from server.sync.rules import NamedChange, judge_batch
from sync.hlc import HybridClock, hlc_wall_ms
from sync.merge import (
    RecordKey,
    RecordState,
    apply_batch,
    conflicts,
    is_deleted,
    op_name,
    preds_to_look_up,
    state_codec,
)
from sync.validate import ClockBound, check_clock, validate_batch

__all__ = ["PushOutcome", "PushWriter"]

_T = TypeVar("_T")
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class PushOutcome:
    results: list[ChangeResult]
    server_hlc: str
    cursor: str
    clock_skew_ms: int | None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _within_clock(
    fresh: list[tuple[int, Change]], results: list[ChangeResult | None], bound: ClockBound
) -> list[tuple[int, Change]]:
    """The new changes whose hlc is within ``bound`` of the server's clock; the others are
    refused ``clock_too_far_ahead``. Judged after the duplicates are known, like a rule: a change
    stored before is answered ``duplicate`` whatever its hlc."""
    # Validated hlcs: the greatest string carries the greatest wall time (a fixed-width prefix).
    if not fresh or hlc_wall_ms(max(c.hlc for _, c in fresh)) - bound.now_ms <= bound.max_ahead_ms:
        return fresh
    kept: list[tuple[int, Change]] = []
    for index, change in fresh:
        rejection = check_clock(change.hlc, bound)
        if rejection is None:
            kept.append((index, change))
        else:
            results[index] = _rejected(change.id, rejection.code, rejection.message)
    return kept


_CHANGE_COLUMNS = (
    "seq",
    "id",
    "collection",
    "record_id",
    "field",
    "op",
    "value",
    "hlc",
    "pred",
    "device_id",
    "received_at_ms",
)
_STORED_COLUMNS = ("record_id", "state", "conflict", "deleted", "company", *SCOPE_COLUMNS)
_SAVED_COLUMNS = (
    "collection",
    "record_id",
    "state",
    "deleted",
    "conflict",
    "updated_seq",
    "company",
    *SCOPE_COLUMNS,
)


class _Stored(NamedTuple):
    """A record's row as a push finds it."""

    blob: bytes
    conflict: bool
    company: str | None
    row: ScopeRow


class _Place(NamedTuple):
    """What ``records`` holds of a record besides its state: where to write it as an update."""

    scope: Scope
    company: str | None


class _GroupView:
    """One group's transaction as its pushes see it. Reads are answered from what the group
    fetched up front and from what earlier pushes of the group wrote, so each push sees the
    ones before it; the writes wait here and go out together (``flush``)."""

    def __init__(self, last_seq: int, *, looked_up: bool) -> None:
        self.seq = last_seq
        # Rows of the change log with the ids the group's pushes carry (when ``looked_up``: else
        # the group hopes none is logged, see ``_MaybeDuplicateError``), and compacted digests.
        self.looked_up = looked_up
        self.logged: dict[str, Any] = {}
        self.gone: dict[str, str] = {}
        # Changes earlier pushes of the group wrote (not yet in the table until a flush).
        self.accepted: dict[str, Change] = {}
        # Every record read or written so far: its state, and its row as the next push sees it.
        self.states: dict[RecordKey, RecordState] = {}
        self.current: dict[RecordKey, _Stored | None] = {}
        # What the table holds of the records (after the last flush), and the records to write
        # with the seq that wrote each last.
        self.in_table: dict[RecordKey, _Place] = {}
        self.dirty: dict[RecordKey, int] = {}
        # The records' rows planned from ``dirty`` and not yet written (``plan``).
        self.inserts: list[tuple[Any, ...]] = []
        self.upserts: list[tuple[Any, ...]] = []
        self.updates: list[tuple[Any, ...]] = []
        self.change_rows: list[tuple[Any, ...]] = []
        # The log rows' write while it runs beside the merge; nothing else may use the
        # connection until it is settled.
        self.logging: asyncio.Future[None] | None = None
        self.seen: dict[str, int] = {}

    async def settle(self, *, quietly: bool = False) -> None:
        """Wait for the log rows' write; ``quietly`` on the way out of a failure, whose own
        error is the one to report."""
        logging, self.logging = self.logging, None
        if logging is not None:
            if quietly:
                await asyncio.gather(logging, return_exceptions=True)
            else:
                await logging

    def state(self, key: RecordKey) -> RecordState:
        state = self.states.get(key)
        if state is None:
            found = self.current.get(key)
            state = self.states[key] = RecordState() if found is None else state_codec.decode(found.blob)
        return state

    def places(self) -> dict[RecordKey, ScopeRow]:
        """Every record known to exist (in the table or written by the group), with its place."""
        return {key: found.row for key, found in self.current.items() if found is not None}

    def log(self, changes: Sequence[Change], device_id: str | None, now: int) -> None:
        """The log rows of a push's accepted changes, with the seqs they take."""
        first = self.seq + 1
        self.seq += len(changes)
        self.change_rows += [
            (
                seq,
                change.id,
                change.collection,
                change.record_id,
                change.field,
                op_name(change),
                _json_encode(change.value).decode(),
                change.hlc,
                _json_encode(change.pred).decode() if change.pred else "[]",
                device_id,
                now,
            )
            for seq, change in enumerate(changes, first)
        ]

    def plan(self) -> None:
        """Make the table rows of the records written since the last plan: an insert for a
        record the table has never held, a full upsert for one that moved, a state update for
        one that stays where it is (its scope and company indexes are left alone)."""
        for key, seq in self.dirty.items():
            collection, record_id = key
            state, found = self.states[key], self.current[key]
            assert found is not None
            blob, deleted, in_conflict = state_codec.encode(state), found.row.deleted, found.conflict
            place = _Place(found.row.scope, found.company)
            held = self.in_table.get(key)
            if held == place:
                self.updates.append((blob, deleted, in_conflict, seq, collection, record_id))
                continue
            row = (collection, record_id, blob, deleted, in_conflict, seq, place.company, *place.scope)
            (self.inserts if held is None else self.upserts).append(row)
            self.in_table[key] = place
        self.dirty.clear()

    def take_planned(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows ``plan`` made, to write now."""
        planned = self.inserts, self.upserts, self.updates
        self.inserts, self.upserts, self.updates = [], [], []
        return planned

    def written(
        self,
        states: Mapping[RecordKey, RecordState],
        scopes: Mapping[RecordKey, Scope],
        conflicted: Mapping[RecordKey, dict[str, list[ConflictHead]]],
    ) -> None:
        """A push's records, as the next push of the group must see them."""
        for key, state in states.items():
            company = company_of(key[0], state)
            # No blob: the record's state is in ``states`` from now on.
            self.current[key] = _Stored(
                b"", bool(conflicted[key]), company, ScopeRow(scopes[key], is_deleted(state))
            )
            self.dirty[key] = self.seq


# At most this many changes share one transaction: a lone push of the largest size is never
# held back, and the first push of a group waits for a bounded amount of work after it.
_GROUP_CHANGES = 2_000


@dataclass(slots=True)
class _PushJob:
    """A validated push waiting for the writer, and where its outcome goes."""

    device_id: str | None
    principal: Principal | None
    check: Callable[[Mapping[RecordKey, RecordState]], None] | None
    via: str
    results: list[ChangeResult | None]
    candidates: list[tuple[int, Change]]
    outcome: asyncio.Future[PushOutcome]
    # Written again after a hope of ``_MaybeDuplicateError`` failed: its ids are looked up first.
    look_up_ids: bool = False
    queued_at: float = field(default_factory=time.perf_counter)

    def fail(self, error: BaseException) -> None:
        if not self.outcome.done():
            self.outcome.set_exception(error)


class _MaybeDuplicateError(Exception):
    """A group written without looking its ids up in the log met one that may be a duplicate: an
    id the log's unique index refused, or a change a rule or a scope turned down (a duplicate
    answers ``duplicate`` whatever the rules say now). Nothing of the group is kept; it is
    written again with the lookup."""


def _looks_up(group: list[_PushJob]) -> bool:
    """Whether the group's ids are looked up in the log before anything is applied: not the
    first time (a push of new changes is the usual one, and the log's unique index refuses an
    id it holds), always once that hope failed for one of its pushes."""
    return any(job.look_up_ids for job in group)


def _needs_lookup(error: BaseException) -> bool:
    cause = error.error if isinstance(error, _PushError) else error
    return isinstance(cause, _MaybeDuplicateError) or is_taken_id(cause, "changes")


class _PushError(Exception):
    """One push of a group failed; the group's transaction is rolled back."""

    def __init__(self, job: _PushJob, error: Exception) -> None:
        super().__init__(str(error))
        self.job = job
        self.error = error


async def _started(statement: Awaitable[None]) -> asyncio.Future[None]:
    """``statement`` running in the database while this thread goes on; await the result to
    wait for it. That is PostgreSQL's server process, and aiosqlite's thread for a commit; a
    SQLite statement under the group's write lock runs at once in this thread
    (``server.db.engine.write_locked``), so there nothing overlaps it."""
    running = asyncio.ensure_future(statement)
    await asyncio.sleep(0)  # let the statement reach the driver before the CPU is taken
    return running


async def _while(statement: Awaitable[None], work: Callable[[], _T]) -> _T:
    """``work()`` on this thread while the database runs ``statement``; returns once both are
    done."""
    running = await _started(statement)
    try:
        return work()
    finally:
        await running


def _content(change: Change) -> tuple[Any, ...]:
    """What a change is, in the order of ``changes_by_id``'s columns after the id."""
    return (
        change.collection,
        change.record_id,
        change.field,
        op_name(change),
        change.value,
        change.hlc,
        list(change.pred),
    )


def _logged_content(row: Any) -> tuple[Any, ...]:
    """``_content`` of a logged row (``changes_by_id``'s columns, from the driver)."""
    _, collection, record_id, field, op, value, hlc, pred = row
    return (collection, record_id, field, op, _json_decode(value), hlc, _json_decode(pred))


def _rejected(change_id: str | None, code: str, message: str) -> ChangeResult:
    return ChangeResult(id=change_id, status="rejected", code=code, message=message)


class _WriteSql:
    """The push's statements as plain SQL for the driver: no per-row parameter processing,
    and a whole id list bound as one parameter (a JSON array read by ``json_each`` on SQLite, an
    array on PostgreSQL), so each step is one statement whatever the batch size."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        # Only this constant is spliced into the queries below; every value is a bound parameter.
        any_of = "IN (SELECT value FROM json_each(?))" if self.sqlite else "= ANY(?)"
        self.changes_by_id = self._numbered(
            f"SELECT id, collection, record_id, field, op, value, hlc, pred FROM changes WHERE id {any_of}"  # noqa: S608
        )
        self.changes_named = self._numbered(
            f"SELECT id, collection, record_id, field, op, value FROM changes WHERE id {any_of}"  # noqa: S608
        )
        # A record's state and what the rules and scopes read of it, for a list of ids of one
        # collection. On PostgreSQL the pair is matched as a row: planned as one primary-key
        # lookup per id even before the table has statistics, where ``record_id = ANY`` was
        # planned as a scan of the whole collection on a young database.
        stored = ", ".join(_STORED_COLUMNS)
        self.records_by_id = (
            f"SELECT {stored} FROM records WHERE collection = ? AND record_id {any_of}"  # noqa: S608
            if self.sqlite
            else f"SELECT {stored} FROM records "  # noqa: S608
            "WHERE (collection, record_id) IN (SELECT $1::text, unnest($2::text[]))"
        )
        self.upsert_records = self._numbered(
            f"INSERT INTO records ({', '.join(_SAVED_COLUMNS)}) VALUES ({', '.join('?' * len(_SAVED_COLUMNS))}) "  # noqa: S608
            "ON CONFLICT (collection, record_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in _SAVED_COLUMNS[2:])
        )
        # A record that stays where it was: its scope and company indexes are left alone.
        self.update_states = self._numbered(
            "UPDATE records SET state = ?, deleted = ?, conflict = ?, updated_seq = ? "
            "WHERE collection = ? AND record_id = ?"
        )
        # The push's first statement takes the counter row lock (PostgreSQL) or the write lock
        # (SQLite); the last moves the counter past the changes it wrote.
        self.lock_counter = "UPDATE sync_counter SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, epoch, compacted_seq"
        self.advance_counter = self._numbered("UPDATE sync_counter SET last_seq = ? WHERE id = 1")
        self.device_seen = self._numbered("UPDATE devices SET last_seen_at_ms = ? WHERE id = ?")
        # On SQLite only: PostgreSQL takes the log rows by COPY (_insert_rows).
        self.insert_changes = (
            f"INSERT INTO changes ({', '.join(_CHANGE_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(_CHANGE_COLUMNS))})"
        )

    def _numbered(self, query: str) -> str:
        """SQLite takes ``?``; asyncpg takes ``$1, $2, ...``."""
        if self.sqlite:
            return query
        parts = query.split("?")
        return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]

    def id_list(self, ids: Sequence[str]) -> Any:
        return _json_encode(list(ids)).decode() if self.sqlite else list(ids)


class PushWriter:
    """Validates pushes and writes them, one group at a time, on one connection."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        collections: Mapping[str, CollectionSpec],
        clock: HybridClock,
        conflict_tracker: ConflictTracker,
        cursor: Callable[[str, int], str],
        sealer: Sealer | None = None,
    ) -> None:
        self.engine = engine
        # ID numbers are sealed before anything compares or stores them (server/access/personal.py).
        self._sealer = sealer
        self._sealed = sealed_fields(collections)
        self._sealed_names = frozenset(field for _, field in self._sealed)
        # Set fields that name attachments (photos): an add links the photo to its record.
        self._photo_fields = attachment_fields(collections)
        self._photo_names = frozenset(field for _, field in self._photo_fields)
        self.settings = settings
        self.collections = collections
        self.clock = clock
        self.conflict_tracker = conflict_tracker
        self._cursor = cursor
        self._sql = _WriteSql(engine.dialect.name)
        self.upkeep = storage_upkeep(engine)
        # Called with the log's last seq after each commit that moved it (live events).
        self.commit_watchers: list[Callable[[int], None]] = []
        # Pushes wait here in arrival order for the one writer task of the process
        # (``_write_queued``): on SQLite no push meets the busy handler's sleep-and-poll, on
        # PostgreSQL a waiting push holds no pooled connection, and pushes that arrive together
        # share one commit.
        self._queue: deque[_PushJob] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def push(
        self,
        device_id: str | None,
        replica_id: str,
        items: Sequence[Change | MalformedChange],
        principal: Principal | None = None,
        *,
        check: Callable[[Mapping[RecordKey, RecordState]], None] | None = None,
        via: str = "sync",
    ) -> PushOutcome:
        """Apply a batch (``SyncStore.push``), each change judged on its own. ``principal`` None
        means trusted (server-side tools); otherwise every change is authorised against its
        scope.

        ``check`` sees the loaded states under the write lock and may raise to abort the whole
        push (the conflict inbox refuses a resolution whose heads moved); ``via`` names who
        closed a conflict this push resolves (``sync``, ``admin``, ``bulk``). The batch is
        validated here, then waits for the writer."""
        results: list[ChangeResult | None] = [None] * len(items)
        candidates: list[tuple[int, Change]] = []
        for index, item in enumerate(items):
            if isinstance(item, MalformedChange):
                results[index] = _rejected(item.id, "malformed_change", item.message)
            else:
                candidates.append((index, item))
        verdicts = validate_batch([change for _, change in candidates], self.collections)
        if any(verdicts):
            for (index, change), rejection in zip(candidates, verdicts, strict=True):
                if rejection is not None:
                    results[index] = _rejected(change.id, rejection.code, rejection.message)
            candidates = [
                candidate
                for candidate, rejection in zip(candidates, verdicts, strict=True)
                if rejection is None
            ]
        candidates = self._seal(candidates, results)
        job = _PushJob(
            device_id, principal, check, via, results, candidates, asyncio.get_running_loop().create_future()
        )
        self._queue.append(job)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        return await job.outcome

    def _seal(
        self, candidates: list[tuple[int, Change]], results: list[ChangeResult | None]
    ) -> list[tuple[int, Change]]:
        """The candidates with their ID numbers sealed; without a key such a change is refused."""
        names = self._sealed_names
        if not any(change.field in names for _, change in candidates):
            return candidates
        sealed: list[tuple[int, Change]] = []
        for index, change in candidates:
            if (change.collection, change.field) in self._sealed and isinstance(change.value, str):
                assert change.field is not None
                if self._sealer is None:
                    results[index] = _rejected(
                        change.id,
                        "encryption_key_missing",
                        "the server has no key to store ID numbers encrypted "
                        "(GRIDSYNC_ENCRYPTION_KEY): nothing was stored; ask the server's administrator",
                    )
                    continue
                value = self._sealer.seal(change.collection, change.field, change.value)
                change = msgspec.structs.replace(change, value=value)
            sealed.append((index, change))
        return sealed

    async def idle(self) -> None:
        """Wait until every push queued so far is written and the writer has let go of its
        connection."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _write_queued(self) -> None:
        """The one writer of this process: takes the pushes waiting in turn, as many as fit in
        a group, and writes each group in one transaction (one commit, one fsync, for pushes
        that arrive together). Within a group each push is applied in full, in arrival order,
        and sees the ones before it, exactly as if each had its own transaction."""
        while self._queue:
            # One connection for as long as pushes keep coming: in a storm of phones a group
            # does not queue for the pool behind every request's reads.
            async with self.engine.connect() as connection:
                while self._queue:
                    group: list[_PushJob] = []
                    size = 0
                    while self._queue and (
                        not group or size + len(self._queue[0].candidates) <= _GROUP_CHANGES
                    ):
                        group.append(self._queue.popleft())
                        size += len(group[-1].candidates)
                    began = time.perf_counter()
                    observe_push_group(len(group), size, [began - job.queued_at for job in group])
                    try:
                        await self._write_group(connection, group)
                    except Exception as error:
                        if _needs_lookup(error) and not _looks_up(group):
                            # Nothing of the group was kept: it goes again, first in the queue,
                            # on a new connection, with its ids looked up.
                            for job in group:
                                job.look_up_ids = True
                            self._queue.extendleft(reversed(group))
                        elif isinstance(error, _PushError):
                            # Nothing of the group was kept: the push that failed answers with
                            # its error, the others go again, first in the queue.
                            error.job.fail(error.error)
                            self._queue.extendleft(reversed([job for job in group if job is not error.job]))
                        else:  # the connection, the lock or the commit
                            for job in group:
                                job.fail(error)
                        break
                    except BaseException as error:
                        for job in group:
                            job.fail(error)
                        raise

    async def _write_group(self, connection: AsyncConnection, group: list[_PushJob]) -> None:
        await connection.begin()
        # First statement: takes the counter row lock (PostgreSQL) or the write lock (SQLite).
        async with write_locked(connection, self._sql.lock_counter) as (last_seq, epoch, floor):
            view = _GroupView(last_seq, looked_up=_looks_up(group))
            # What every push of the group will read, in one statement each.
            ids = [c.id for job in group for _, c in job.candidates]
            if ids and view.looked_up:
                found = await driver_rows(connection, self._sql.changes_by_id, self._sql.id_list(ids))
                view.logged.update((row[0], row) for row in found)
            if floor > 0:
                view.gone = await compacted_digests(connection, [i for i in ids if i not in view.logged])
            await self._load_records(
                connection, view, {(c.collection, c.record_id) for job in group for _, c in job.candidates}
            )
            answers: list[Callable[[], PushOutcome]] = []
            for job in group:
                try:
                    answers.append(
                        await self._apply(
                            connection, view, job, epoch, compacted=floor > 0, last=job is group[-1]
                        )
                    )
                except Exception as error:
                    await view.settle(quietly=True)
                    raise _PushError(job, error) from error
            await self._flush(connection, view)
            if view.seq != last_seq:
                await driver_write(connection, self._sql.advance_counter, [(view.seq,)])
            # The answers are made while the commit (its fsync) runs; none is sent unless the
            # commit succeeds.
            outcomes = await _while(connection.commit(), lambda: [answer() for answer in answers])
            if self.upkeep is not None:
                self.upkeep.after_commit(view.seq)
            if view.seq != last_seq:
                for watcher in self.commit_watchers:
                    watcher(view.seq)
            for job, outcome in zip(group, outcomes, strict=True):
                if not job.outcome.done():
                    job.outcome.set_result(outcome)

    async def _apply(
        self,
        connection: AsyncConnection,
        view: _GroupView,
        job: _PushJob,
        epoch: str,
        *,
        compacted: bool,
        last: bool,
    ) -> Callable[[], PushOutcome]:
        """One push, in full, inside its group's transaction; returns how to answer it."""
        device_id, principal = job.device_id, job.principal
        results = list(job.results)
        now = _now_ms()
        ahead_limit = self.settings.max_clock_ahead_ms
        # Every hlc here is validated, its wall time a fixed-width prefix: the greatest string
        # carries the greatest wall time.
        latest = max((c.hlc for _, c in job.candidates), default=None)
        max_skew = None if latest is None else hlc_wall_ms(latest) - now
        clock_ahead = max_skew is not None and max_skew > ahead_limit
        if (view.logged or view.gone or view.accepted) and any(
            c.id in view.logged or c.id in view.gone or c.id in view.accepted for _, c in job.candidates
        ):
            # Whether a change sent again is a duplicate depends on what the caller may read of
            # its record (``_same_as_read``): its row, should the group's moves have dropped it.
            await self._load_records(
                connection, view, [(c.collection, c.record_id) for _, c in job.candidates]
            )
        fresh = self._drop_duplicates(view, job.candidates, results, principal)
        keys = sorted({(c.collection, c.record_id) for _, c in fresh})
        await self._load_records(connection, view, keys)
        states = {key: view.state(key) for key in keys}
        flagged = {key for key in keys if (found := view.current.get(key)) is not None and found.conflict}
        if job.check is not None:
            job.check(states)
        # Domain rules (server/sync/rules.py) and scopes read the touched records and those the
        # batch links to or names.
        await self._load_records(
            connection, view, scope_keys(self.collections, states, [c for _, c in fresh])
        )
        scope_rows = view.places()
        batch = [c for _, c in fresh]
        lookup = preds_to_look_up(states, batch)
        named = {i: NamedChange.of(view.accepted[i]) for i in lookup if i in view.accepted}
        known = set(named)
        known |= await self._named_changes(connection, sorted(lookup - known), named, compacted=compacted)
        # Every read of the push is made. A group written without looking its ids up is written
        # again should the rules or the scopes turn any change down (_MaybeDuplicateError), so
        # its log rows are already the accepted changes' and go in while the push is judged.
        hoped = not view.looked_up
        if hoped:
            await self._log(connection, view, batch, device_id, now, last=last)
        judged = len(fresh)
        fresh = _within_clock(fresh, results, ClockBound(now, self.settings.max_hlc_ahead_ms))
        fresh = self._judge(principal, states, fresh, results, scope_rows, named, known)
        # A record that only refused changes touched keeps its conflict as it was.
        flagged &= states.keys()
        if hoped and len(fresh) < judged:
            raise _MaybeDuplicateError
        fresh_changes = [c for _, c in fresh]
        if not hoped:
            await self._log(connection, view, fresh_changes, device_id, now, last=last)
        companies = {key: company_of(key[0], state) for key, state in states.items()}
        apply_batch(states, fresh_changes, known)
        conflicted = {key: conflicts(state, self.collections[key[0]]) for key, state in states.items()}
        if fresh:
            view.accepted.update((change.id, change) for change in fresh_changes)
            scopes = resolve_scopes(self.collections, states, scope_rows)
            view.written(states, scopes, conflicted)
            if view.logging is not None:
                view.plan()  # the records' rows are final: made while the log's go in
            await view.settle()  # the connection is the log's until its rows are in
            if any(change.field in self._photo_names for change in fresh_changes):
                await link_attachments(connection, self._photo_fields, fresh_changes)
            await self.conflict_tracker.track(
                connection,
                states,
                {key for key, found in conflicted.items() if found},
                flagged,
                fresh_changes,
                seq=view.seq,
                now_ms=now,
                device_id=device_id,
                via=job.via,
            )
            if has_moves(self.collections, scope_rows, scopes):
                # Records below a moved one are updated in the table: it must hold everything
                # the group wrote so far, and the group's view of places is read again after.
                await self._flush(connection, view)
                await follow_moves(connection, self.collections, scope_rows, scopes)
                view.current.clear()
                await self._load_records(connection, view, list(view.states))
            await log_moves(connection, self.collections, states, scope_rows, companies, scopes, view.seq)
        if device_id is not None and clock_ahead:
            await view.settle()
            await connection.execute(
                update(devices)
                .where(devices.c.id == device_id)
                .values(last_seen_at_ms=now, clock_skew_ms=max_skew, clock_flagged_at_ms=now)
            )
        elif device_id is not None:
            view.seen[device_id] = now
        seq = view.seq

        def answer() -> PushOutcome:
            followed: str | None = None
            clashing = {key: found for key, found in conflicted.items() if found}
            for index, change in fresh:
                found = clashing.get((change.collection, change.record_id)) if clashing else None
                in_conflict = found is not None and (
                    "_deleted" in found or (change.field is not None and change.field in found)
                )
                result = ChangeResult(id=change.id, status="applied", conflict=in_conflict)
                if clock_ahead and hlc_wall_ms(change.hlc) - now > ahead_limit:
                    result.code = "clock_ahead"
                    result.message = (
                        "accepted, but this change is stamped ahead of the server's clock: "
                        "check the phone's date, time and time zone"
                    )
                elif followed is None or change.hlc > followed:
                    followed = change.hlc
                results[index] = result
            if followed is not None:
                # Observing the greatest hlc moves the clock as far as observing them all.
                self.clock.observe(followed)
            return PushOutcome(
                results=[r for r in results if r is not None],
                server_hlc=self.clock.now(),
                cursor=self._cursor(epoch, seq),
                clock_skew_ms=max_skew if clock_ahead else None,
            )

        return answer

    def _judge(
        self,
        principal: Principal | None,
        states: dict[RecordKey, RecordState],
        fresh: list[tuple[int, Change]],
        results: list[ChangeResult | None],
        scope_rows: Mapping[RecordKey, ScopeRow],
        named: Mapping[str, NamedChange],
        known: set[str],
    ) -> list[tuple[int, Change]]:
        """Role and current scope first (the rules then speak only of records the caller may
        read), then the domain rules, then where the accepted changes put the records. A move
        the last step refuses is as if never sent: when the rules had refused another change
        beside it (a second place of a hazard, a second write of a ledger entry), the rest is
        judged once more without it. Rejections go into ``results``; returns the accepted
        changes."""
        fresh = refuse_untouchable(principal, states, fresh, scope_rows, results)
        for last_round in (False, True):
            judged_states, judged_results = dict(states), list(results)
            ruled = judge_batch(self.collections, judged_states, fresh, judged_results, scope_rows, named)
            allowed = authorize_batch(
                principal, self.collections, judged_states, ruled, scope_rows, known, judged_results
            )
            kept = {index for index, _ in allowed}
            refused_moves = {
                i for i, change in ruled if i not in kept and moves_records(self.collections, change)
            }
            if last_round or not refused_moves or len(ruled) == len(fresh):
                break
            for index in refused_moves:
                results[index] = judged_results[index]
            fresh = [(index, change) for index, change in fresh if index not in refused_moves]
        results[:] = judged_results
        states.clear()
        states.update(judged_states)
        return allowed

    async def _log(
        self,
        connection: AsyncConnection,
        view: _GroupView,
        changes: Sequence[Change],
        device_id: str | None,
        now: int,
        *,
        last: bool,
    ) -> None:
        """Log a push's accepted changes in the group's view. After the group's ``last`` push
        its log rows are all known: PostgreSQL writes them while this thread goes on with the
        merge, until ``view.settle`` (SQLite writes them here and now, see ``_started``)."""
        view.log(changes, device_id, now)
        if last and view.change_rows:
            rows, view.change_rows = view.change_rows, []
            view.logging = await _started(
                self._insert_rows(connection, "changes", _CHANGE_COLUMNS, self._sql.insert_changes, rows)
            )

    async def _flush(self, connection: AsyncConnection, view: _GroupView) -> None:
        """Write what the group's pushes wrote so far: the log rows, the records (see
        ``_GroupView.plan``), the devices' last-seen times."""
        rows, view.change_rows = view.change_rows, []
        # The log insert is the biggest statement of a push: on PostgreSQL the records' rows are
        # made meanwhile.
        if rows:
            await _while(
                self._insert_rows(connection, "changes", _CHANGE_COLUMNS, self._sql.insert_changes, rows),
                view.plan,
            )
        else:
            view.plan()
        await view.settle()
        inserts, upserts, updates = view.take_planned()
        if inserts:
            # No other writer can add them meanwhile: every push holds the counter lock from the
            # read that found them missing to its commit.
            await self._insert_rows(connection, "records", _SAVED_COLUMNS, self._sql.upsert_records, inserts)
        if upserts:
            await driver_write(connection, self._sql.upsert_records, upserts)
        if updates:
            await driver_write(connection, self._sql.update_states, updates)
        if view.seen:
            await driver_write(
                connection,
                self._sql.device_seen,
                [(at, device_id) for device_id, at in sorted(view.seen.items())],
            )
            view.seen.clear()

    async def _insert_rows(
        self,
        connection: AsyncConnection,
        table: str,
        columns: Sequence[str],
        statement: str,
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Rows new to ``table``, in the group's transaction: a binary COPY on PostgreSQL,
        ``statement`` as an executemany on SQLite (a loop in C inside the process already)."""
        if self._sql.sqlite:
            await driver_write(connection, statement, rows)
        else:
            await driver_copy(connection, table, columns, rows)

    def _drop_duplicates(
        self,
        view: _GroupView,
        candidates: list[tuple[int, Change]],
        results: list[ChangeResult | None],
        principal: Principal | None,
    ) -> list[tuple[int, Change]]:
        """Judge ids seen before (in the log, compacted, written by an earlier push of the group,
        or earlier in this batch); return the new changes."""
        ids = [change.id for _, change in candidates]
        if (
            not view.logged
            and not view.gone
            and view.accepted.keys().isdisjoint(ids)
            and len(set(ids)) == len(ids)
        ):
            return list(candidates)  # none seen before, the usual push: no change to judge one by one
        fresh: list[tuple[int, Change]] = []
        in_batch: dict[str, Change] = {}
        for index, change in candidates:
            row: Any = view.logged.get(change.id)
            own = in_batch.get(change.id)
            earlier = view.accepted.get(change.id)
            digest = view.gone.get(change.id)
            if digest is not None:
                same = self._same_compacted(view, principal, change, digest)
            elif own is not None:
                same = own == change
            elif row is not None or earlier is not None:
                stored = _content(earlier) if earlier is not None else _logged_content(row)
                same = self._same_as_read(view, principal, stored, change)
            else:
                in_batch[change.id] = change
                fresh.append((index, change))
                continue
            results[index] = (
                ChangeResult(id=change.id, status="duplicate")
                if same
                else _rejected(
                    change.id,
                    "id_reused",
                    "this change id was already used for a different change; "
                    "give every new change a new UUID",
                )
            )
        return fresh

    def _may_read(self, view: _GroupView, principal: Principal | None, change: Change) -> bool:
        """Whether the caller may read the record ``change`` names, where it is now."""
        if not is_scoped(principal):
            return True
        assert principal is not None
        found = view.current.get((change.collection, change.record_id))
        return found is not None and can_read(
            principal, Place(change.collection, found.row.scope, found.company)
        )

    def _same_as_read(
        self, view: _GroupView, principal: Principal | None, stored: tuple[Any, ...], change: Change
    ) -> bool:
        """Whether a change sent again is the stored one, as far as the caller may read it:
        nothing of a record outside its scope, the masked form of a masked value. The answer
        (``duplicate`` or ``id_reused``) must not tell a guessed hidden value from a wrong one."""
        sent = _content(change)
        if stored[:2] != sent[:2] or not self._may_read(view, principal, change):
            return False
        collection, _, field, *_ = sent
        stored_value, sent_value = (
            mask_value(principal, self.collections, collection, field, content[4])
            for content in (stored, sent)
        )
        return stored[:4] == sent[:4] and stored[5:] == sent[5:] and stored_value == sent_value

    def _same_compacted(
        self, view: _GroupView, principal: Principal | None, change: Change, digest: str
    ) -> bool:
        """``_same_as_read`` for a compacted change, of which only a digest of the whole content
        is left: a value the caller would see masked is not compared (a retry is assumed)."""
        if not self._may_read(view, principal, change):
            return False
        # A sealed ID number reads whole only opened: compare what the caller sees with that.
        shown = mask_value(principal, self.collections, change.collection, change.field, change.value)
        if shown != reveal(change.collection, change.field, change.value):
            return True
        return digest == change_digest(
            change.collection,
            change.record_id,
            change.field,
            op_name(change),
            change.value,
            change.hlc,
            change.pred,
        )

    async def _load_records(
        self, connection: AsyncConnection, view: _GroupView, keys: Iterable[RecordKey]
    ) -> None:
        """Read into the view the rows of ``keys`` it does not know yet, one query per collection."""
        by_collection: dict[str, list[str]] = {}
        for key in sorted(set(keys)):
            if key not in view.current:
                by_collection.setdefault(key[0], []).append(key[1])
        for collection, record_ids in by_collection.items():
            rows = await driver_rows(
                connection, self._sql.records_by_id, collection, self._sql.id_list(record_ids)
            )
            for record_id in record_ids:
                view.current[(collection, record_id)] = None
            for row in rows:
                record_id, blob, conflict, deleted, company, *scope = tuple(row)
                key = (collection, record_id)
                found = view.current[key] = _Stored(
                    blob, bool(conflict), company, ScopeRow(Scope(*scope), bool(deleted))
                )
                view.in_table[key] = _Place(found.row.scope, company)

    async def _named_changes(
        self,
        connection: AsyncConnection,
        ids: Sequence[str],
        named: dict[str, NamedChange],
        *,
        compacted: bool = False,
    ) -> set[str]:
        """Which of ``ids`` (pred entries) the store has; what the log holds of them goes into
        ``named`` (of a compacted change only its id is left)."""
        found: set[str] = set()
        if ids:
            for change_id, collection, record_id, field, op, value in await driver_rows(
                connection, self._sql.changes_named, self._sql.id_list(ids)
            ):
                named[change_id] = NamedChange(collection, record_id, field, op, _json_decode(value))
                found.add(change_id)
        if compacted:
            found.update(await compacted_digests(connection, [i for i in ids if i not in found]))
        return found
