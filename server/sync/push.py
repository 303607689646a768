"""The push path: every change judged on its own, then written by the one writer of the
process, which groups the pushes waiting at that moment into one transaction (group commit).

A push is read top to bottom in ``PushWriter._apply``: read what the batch touches, judge each
change (duplicates, clock, scope, rules: each a function of what was read), merge, record,
answer. Each push of a group is applied in full and in arrival order against a view of what
the pushes before it wrote (server/sync/push_view.py), exactly as if it had its own
transaction; the group's reads are made once, its writes flushed together, and a push that
fails answers alone while the others are written again (docs/protocol.md, Push).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.codec import MalformedChange
from schemas.collections import CollectionSpec
from schemas.protocol import Change, ChangeResult, ConflictHead, PushResponse
from server.access.personal import Sealer, sealed_fields
from server.access.places import Scope, ScopeRow, follow_moves, has_moves, resolve_scopes, scope_keys
from server.access.policy import company_of, log_moves
from server.access.principals import Principal
from server.db.engine import driver_rows, driver_write, is_taken_id, write_locked
from server.db.tables import devices
from server.db.upkeep import storage_upkeep
from server.inbox.tracking import ConflictTracker
from server.observability.metrics import observe_push_group
from server.registry.attachment_refs import attachment_fields, link_attachments
from server.settings import Settings
from server.sync.cursors import sync_cursor
from server.sync.horizon import compacted_digests
from server.sync.push_checks import sealed, validated
from server.sync.push_duplicates import drop_duplicates
from server.sync.push_judge import Reads, judge_push
from server.sync.push_sql import PushSql, started, while_running
from server.sync.push_view import GroupView
from server.sync.rules import NamedChange, held_keys
from sync.hlc import HybridClock, hlc_wall_ms
from sync.merge import RecordKey, RecordState, apply_batch, conflicts, preds_to_look_up
from sync.validate import ClockBound

__all__ = ["PushWriter"]

# At most this many changes share one transaction: a lone push of the largest size is never
# held back, and the first push of a group waits for a bounded amount of work after it.
_GROUP_CHANGES = 2_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _PushJob:
    """A validated push waiting for the writer, and where its answer goes."""

    device_id: str | None
    principal: Principal | None
    check: Callable[[Mapping[RecordKey, RecordState]], None] | None
    via: str
    results: list[ChangeResult | None]
    candidates: list[tuple[int, Change]]
    outcome: asyncio.Future[PushResponse]
    # Written again after a hope of ``_MaybeDuplicateError`` failed: its ids are looked up first.
    look_up_ids: bool = False
    queued_at: float = field(default_factory=time.perf_counter)

    def fail(self, error: BaseException) -> None:
        if not self.outcome.done():
            self.outcome.set_exception(error)


@dataclass(slots=True)
class _Push:
    """One push as it goes through ``_apply``: what it read, what was judged, what it merged."""

    job: _PushJob
    now: int
    results: list[ChangeResult | None]
    fresh: list[tuple[int, Change]] = field(default_factory=list)
    states: dict[RecordKey, RecordState] = field(default_factory=dict)
    flagged: set[RecordKey] = field(default_factory=set)
    scope_rows: dict[RecordKey, ScopeRow] = field(default_factory=dict)
    named: dict[str, NamedChange] = field(default_factory=dict)
    linked: dict[RecordKey, RecordState] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    # The places the merge gave the records, when the scope judge took them from it.
    scopes: dict[RecordKey, Scope] | None = None
    conflicted: dict[RecordKey, dict[str, list[ConflictHead]]] = field(default_factory=dict)
    max_skew: int | None = None
    clock_ahead: bool = False

    @property
    def changes(self) -> list[Change]:
        return [change for _, change in self.fresh]


class _MaybeDuplicateError(Exception):
    """A group written without looking its ids up in the log met one that may be a duplicate: an
    id the log's unique index refused, or a change a rule or a scope turned down (a duplicate
    answers ``duplicate`` whatever the rules say now). Nothing of the group is kept; it is
    written again with the lookup."""


class _PushError(Exception):
    """One push of a group failed; the group's transaction is rolled back."""

    def __init__(self, job: _PushJob, error: Exception) -> None:
        super().__init__(str(error))
        self.job = job
        self.error = error


def _looks_up(group: list[_PushJob]) -> bool:
    """Whether the group's ids are looked up in the log before anything is applied: not the
    first time (a push of new changes is the usual one, and the log's unique index refuses an
    id it holds), always once that hope failed for one of its pushes."""
    return any(job.look_up_ids for job in group)


def _needs_lookup(error: BaseException) -> bool:
    cause = error.error if isinstance(error, _PushError) else error
    return isinstance(cause, _MaybeDuplicateError) or is_taken_id(cause, "changes")


class PushWriter:
    """Validates pushes and writes them, one group at a time, on one connection."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        collections: Mapping[str, CollectionSpec],
        clock: HybridClock,
        conflict_tracker: ConflictTracker,
        sealer: Sealer | None = None,
    ) -> None:
        self.engine = engine
        # ID numbers are sealed before anything compares or stores them (server/access/personal.py).
        self._sealer = sealer
        self._sealed = sealed_fields(collections)
        # Set fields that name attachments (photos): an add links the photo to its record.
        self._photo_fields = attachment_fields(collections)
        self._photo_names = frozenset(field for _, field in self._photo_fields)
        self.settings = settings
        self.collections = collections
        self.clock = clock
        self.conflict_tracker = conflict_tracker
        self._sql = PushSql(engine.dialect.name)
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
    ) -> PushResponse:
        """Apply a batch, each change judged on its own. ``principal`` None means trusted
        (server-side tools); otherwise every change is authorised against its scope.

        ``check`` sees the loaded states under the write lock and may raise to abort the whole
        push (the conflict inbox refuses a resolution whose heads moved); ``via`` names who
        closed a conflict this push resolves (``sync``, ``admin``, ``bulk``). The batch is
        validated here, then waits for the writer."""
        results, candidates = validated(items, self.collections)
        candidates = sealed(candidates, results, self._sealer, self._sealed)
        outcome: asyncio.Future[PushResponse] = asyncio.get_running_loop().create_future()
        self._queue.append(_PushJob(device_id, principal, check, via, results, candidates, outcome))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        return await outcome

    async def idle(self) -> None:
        """Wait until every push queued so far is written and the writer has let go of its
        connection."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    def _next_group(self) -> list[_PushJob]:
        """The pushes waiting, in arrival order, as many as fit in a group."""
        group: list[_PushJob] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].candidates) <= _GROUP_CHANGES):
            group.append(self._queue.popleft())
            size += len(group[-1].candidates)
        began = time.perf_counter()
        observe_push_group(len(group), size, [began - job.queued_at for job in group])
        return group

    async def _write_queued(self) -> None:
        """The one writer of this process: takes the pushes waiting in turn and writes each
        group in one transaction (one commit, one fsync, for pushes that arrive together)."""
        while self._queue:
            # One connection for as long as pushes keep coming: in a storm of phones a group
            # does not queue for the pool behind every request's reads.
            async with self.engine.connect() as connection:
                while self._queue:
                    group = self._next_group()
                    try:
                        await self._write_group(connection, group)
                    except Exception as error:
                        self._requeue(group, error)
                        break
                    except BaseException as error:
                        for job in group:
                            job.fail(error)
                        raise

    def _requeue(self, group: list[_PushJob], error: Exception) -> None:
        """After a group failed, nothing of it was kept: what goes again, first in the queue, on
        a new connection, and who answers with the error."""
        if _needs_lookup(error) and not _looks_up(group):
            for job in group:
                job.look_up_ids = True
            self._queue.extendleft(reversed(group))
        elif isinstance(error, _PushError):
            error.job.fail(error.error)
            self._queue.extendleft(reversed([job for job in group if job is not error.job]))
        else:  # the connection, the lock or the commit
            for job in group:
                job.fail(error)

    async def _write_group(self, connection: AsyncConnection, group: list[_PushJob]) -> None:
        await connection.begin()
        # First statement: takes the counter row lock (PostgreSQL) or the write lock (SQLite).
        async with write_locked(connection, self._sql.lock_counter) as (last_seq, epoch, floor):
            view = GroupView(self._sql, last_seq, looked_up=_looks_up(group))
            await self._read_group(connection, view, group, compacted=floor > 0)
            answers: list[Callable[[], PushResponse]] = []
            for job in group:
                try:
                    answer = await self._apply(
                        connection, view, job, epoch, compacted=floor > 0, last=job is group[-1]
                    )
                except Exception as error:
                    await view.settle(quietly=True)
                    raise _PushError(job, error) from error
                answers.append(answer)
            await view.flush(connection)
            if view.seq != last_seq:
                await driver_write(connection, self._sql.advance_counter, [(view.seq,)])
            # The answers are made while the commit (its fsync) runs; none is sent unless the
            # commit succeeds.
            responses = await while_running(connection.commit(), lambda: [answer() for answer in answers])
            if self.upkeep is not None:
                self.upkeep.after_commit(view.seq)
            if view.seq != last_seq:
                for watcher in self.commit_watchers:
                    watcher(view.seq)
            for job, response in zip(group, responses, strict=True):
                if not job.outcome.done():
                    job.outcome.set_result(response)

    async def _read_group(
        self, connection: AsyncConnection, view: GroupView, group: list[_PushJob], *, compacted: bool
    ) -> None:
        """What every push of the group will read, in one statement each: the logged ids, the
        compacted ones, the records the batches touch."""
        ids = [c.id for job in group for _, c in job.candidates]
        if ids and view.looked_up:
            found = await driver_rows(connection, self._sql.changes_by_id, self._sql.id_list(ids))
            view.logged.update((row[0], row) for row in found)
        if compacted:
            view.gone = await compacted_digests(connection, [i for i in ids if i not in view.logged])
        await view.load(connection, {(c.collection, c.record_id) for job in group for _, c in job.candidates})

    async def _apply(
        self,
        connection: AsyncConnection,
        view: GroupView,
        job: _PushJob,
        epoch: str,
        *,
        compacted: bool,
        last: bool,
    ) -> Callable[[], PushResponse]:
        """One push, in full, inside its group's transaction; returns how to answer it."""
        push = _Push(job, _now_ms(), list(job.results))
        # Validated hlcs: the greatest string carries the greatest wall time.
        latest = max((c.hlc for _, c in job.candidates), default=None)
        push.max_skew = None if latest is None else hlc_wall_ms(latest) - push.now
        push.clock_ahead = push.max_skew is not None and push.max_skew > self.settings.max_clock_ahead_ms
        await self._read(connection, view, push, compacted=compacted)
        # Every read of the push is made. A group written without looking its ids up is written
        # again should the rules or the scopes turn any change down (_MaybeDuplicateError), so
        # its log rows are already the accepted changes' and go in while the push is judged.
        hoped = not view.looked_up
        if hoped:
            await self._log(connection, view, push.changes, push, last=last)
        # Where a stored record was before the merge (a new record has no move to log).
        companies = {
            key: company_of(key[0], state) for key, state in push.states.items() if key in push.scope_rows
        }
        judged = len(push.fresh)
        self._judge(push)
        if hoped and len(push.fresh) < judged:
            raise _MaybeDuplicateError
        if not hoped:
            await self._log(connection, view, push.changes, push, last=last)
        if push.scopes is None:
            apply_batch(push.states, push.changes, push.known)
        else:  # the scope judge merged them: its states are the records' from now on
            view.states.update(push.states)
        push.conflicted = {
            key: conflicts(state, self.collections[key[0]]) for key, state in push.states.items()
        }
        if push.fresh:
            await self._record(connection, view, push, companies)
        await self._seen(connection, view, push)
        cursor = sync_cursor(epoch, view.seq)
        return lambda: self._answer(push, cursor)

    async def _read(
        self, connection: AsyncConnection, view: GroupView, push: _Push, *, compacted: bool
    ) -> None:
        """What the batch touches: which changes are new, the states of their records, the
        records the rules and scopes read (linked or named), the changes the preds name."""
        job = push.job
        if (view.logged or view.gone or view.accepted) and any(
            c.id in view.logged or c.id in view.gone or c.id in view.accepted for _, c in job.candidates
        ):
            # Whether a change sent again is a duplicate depends on what the caller may read of
            # its record: its row, should the group's moves have dropped it.
            await view.load(connection, [(c.collection, c.record_id) for _, c in job.candidates])
        push.fresh = drop_duplicates(self.collections, view, job.candidates, push.results, job.principal)
        keys = sorted({(c.collection, c.record_id) for _, c in push.fresh})
        await view.load(connection, keys)
        push.states = {key: view.state(key) for key in keys}
        push.flagged = {
            key for key in keys if (found := view.current.get(key)) is not None and found.conflict
        }
        if job.check is not None:
            job.check(push.states)
        await view.load(connection, scope_keys(self.collections, push.states, push.changes))
        push.scope_rows = view.places()
        linked = held_keys(self.collections, push.changes) & push.scope_rows.keys() - push.states.keys()
        push.linked = {key: view.state(key) for key in linked}
        lookup = preds_to_look_up(push.states, push.changes)
        push.named = {i: NamedChange.of(view.accepted[i]) for i in lookup if i in view.accepted}
        push.known = set(push.named)
        push.known |= await self._sql.named_changes(
            connection, sorted(lookup - push.known), push.named, compacted=compacted
        )

    def _judge(self, push: _Push) -> None:
        """Each change judged against what the push read (``push_judge.judge_push``):
        ``push.fresh`` keeps the accepted changes, ``push.states`` the records they touch (merged,
        with ``push.scopes``, when the scope judge merged them)."""
        bound = ClockBound(push.now, self.settings.max_hlc_ahead_ms)
        reads = Reads(push.states, push.scope_rows, push.named, push.known, push.linked)
        judged = judge_push(self.collections, push.job.principal, bound, push.fresh, reads, push.results)
        push.fresh, push.states, push.scopes = judged
        # A record that only refused changes touched keeps its conflict as it was.
        push.flagged &= push.states.keys()

    async def _log(
        self,
        connection: AsyncConnection,
        view: GroupView,
        changes: Sequence[Change],
        push: _Push,
        *,
        last: bool,
    ) -> None:
        """Log a push's accepted changes in the group's view. After the group's ``last`` push
        its log rows are all known: PostgreSQL writes them while this thread goes on with the
        merge, until ``view.settle`` (SQLite writes them here and now, see ``started``)."""
        view.log(changes, push.job.device_id, push.now)
        if last and view.change_rows:
            rows, view.change_rows = view.change_rows, []
            view.logging = await started(self._sql.insert_changes_rows(connection, rows))

    async def _record(
        self,
        connection: AsyncConnection,
        view: GroupView,
        push: _Push,
        companies: Mapping[RecordKey, str | None],
    ) -> None:
        """The merged records as the next push of the group sees them, their conflicts, and
        the places of records the push moved (and of those below them)."""
        changes, states = push.changes, push.states
        view.accepted.update((change.id, change) for change in changes)
        scopes = push.scopes
        if scopes is None:
            scopes = resolve_scopes(self.collections, states, push.scope_rows)
        view.written(states, scopes, push.conflicted)
        if view.logging is not None:
            view.plan()  # the records' rows are final: made while the log's go in
        await view.settle()  # the connection is the log's until its rows are in
        if any(change.field in self._photo_names for change in changes):
            await link_attachments(connection, self._photo_fields, changes)
        job = push.job
        await self.conflict_tracker.track(
            connection,
            states,
            push.conflicted,
            push.flagged,
            changes,
            seq=view.seq,
            now_ms=push.now,
            device_id=job.device_id,
            via=job.via,
        )
        if has_moves(self.collections, push.scope_rows, scopes):
            # Records below a moved one are updated in the table: it must hold everything the
            # group wrote so far, and the group's view of places is read again after.
            await view.flush(connection)
            await follow_moves(connection, self.collections, push.scope_rows, scopes)
            view.current.clear()
            await view.load(connection, list(view.states))
        await log_moves(connection, self.collections, states, push.scope_rows, companies, scopes, view.seq)

    async def _seen(self, connection: AsyncConnection, view: GroupView, push: _Push) -> None:
        """When the device was last seen, and how far ahead its clock runs when it does."""
        device_id = push.job.device_id
        if device_id is None:
            return
        if push.clock_ahead:
            await view.settle()
            await connection.execute(
                update(devices)
                .where(devices.c.id == device_id)
                .values(last_seen_at_ms=push.now, clock_skew_ms=push.max_skew, clock_flagged_at_ms=push.now)
            )
        else:
            view.seen[device_id] = push.now

    def _answer(self, push: _Push, cursor: str) -> PushResponse:
        """The push's answer, made once its group is committed. An applied change is in conflict when the merge left its field (or the
        record's deletion) with more than one head."""
        results, followed = push.results, None
        ahead_limit = self.settings.max_clock_ahead_ms
        clashing = {key: found for key, found in push.conflicted.items() if found}
        for index, change in push.fresh:
            found = clashing.get((change.collection, change.record_id)) if clashing else None
            in_conflict = found is not None and (
                "_deleted" in found or (change.field is not None and change.field in found)
            )
            result = ChangeResult(id=change.id, status="applied", conflict=in_conflict)
            if push.clock_ahead and hlc_wall_ms(change.hlc) - push.now > ahead_limit:
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
        return PushResponse(
            results=[r for r in results if r is not None],
            server_hlc=self.clock.now(),
            cursor=cursor,
            clock_skew_ms=push.max_skew if push.clock_ahead else None,
        )
