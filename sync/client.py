"""The reference client replica: what a phone does, in Python, on its own SQLite file.

It edits offline (making ids, hlcs and preds), pushes pending changes, pulls, and holds the same
merged state as the server because it folds changes with the same pure merge rules. Local I/O is
the stdlib ``sqlite3``; the network is any httpx client (sync or async).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from schemas.collections import COLLECTIONS, CollectionSpec
from schemas.protocol import (
    AddChange,
    Change,
    DeleteChange,
    ExchangeResponse,
    PulledChange,
    PullResponse,
    PushRequest,
    PushResponse,
    RecordFacts,
    RecordView,
    RemoveChange,
    SetChange,
    SnapshotRecord,
    SnapshotResponse,
)
from sync.hlc import HybridClock
from sync.ids import new_change_id, uuid7
from sync.local_store import LOCAL_SCHEMA
from sync.merge import (
    RecordKey,
    RecordState,
    absorb_snapshot,
    apply_batch,
    preds_to_look_up,
    record_view,
    state_codec,
)
from sync.validate import validate_change

__all__ = ["Replica", "ResyncRequiredError", "SyncReport", "new_change_id", "uuid7"]

_change_codec = msgspec.msgpack.Encoder()
_change_decoder = msgspec.msgpack.Decoder(Change)
_json_encoder = msgspec.json.Encoder()
_PUSHED = msgspec.json.Decoder(PushResponse)
_EXCHANGED = msgspec.json.Decoder(ExchangeResponse)
_PULLED = msgspec.json.Decoder(PullResponse)
_SNAPSHOT = msgspec.json.Decoder(SnapshotResponse)


class ResyncRequiredError(Exception):
    """The server no longer knows this replica's cursor; bootstrap again from a snapshot."""


@dataclass
class SyncReport:
    pushed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    pulled: int = 0
    clock_skew_ms: int | None = None


class Replica:
    """A phone's replica. Not thread-safe: one replica, one user of it at a time."""

    def __init__(
        self,
        path: str | Path,
        replica_id: str | None = None,
        *,
        collections: dict[str, CollectionSpec] | None = None,
        clock: HybridClock | None = None,
        token: str | None = None,
    ) -> None:
        self.token = token
        self.collections = COLLECTIONS if collections is None else collections
        self.db = sqlite3.connect(str(path), isolation_level=None)
        # A write-ahead log, as phones' SQLite uses by default: a commit is one append and one
        # fsync (a rollback journal costs three), and every commit is still on disk when it
        # returns (synchronous=FULL), so an edit made offline survives a dead battery.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(LOCAL_SCHEMA)
        stored_id = self._meta("replica_id")
        self.replica_id = stored_id or replica_id or f"r{uuid.uuid4().hex[:12]}"
        if stored_id is None:
            self._set_meta("replica_id", self.replica_id)
        wall, counter = (int(part) for part in (self._meta("clock") or "0:0").split(":"))
        self.clock = clock or HybridClock(self.replica_id)
        self.clock.wall_ms, self.clock.counter = max(
            (wall, counter), (self.clock.wall_ms, self.clock.counter)
        )

    # ------------------------------------------------------------------ local storage

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def cursor(self) -> str | None:
        return self._meta("cursor")

    def _state(self, key: RecordKey) -> RecordState:
        row = self.db.execute(
            "SELECT state FROM records WHERE collection = ? AND record_id = ?", key
        ).fetchone()
        return RecordState() if row is None else state_codec.decode(row[0])

    def _save_states(self, states: dict[RecordKey, RecordState]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO records (collection, record_id, state) VALUES (?, ?, ?)",
            [(c, r, state_codec.encode(s)) for (c, r), s in states.items()],
        )

    def _known(self, ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        wanted = list(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self.db.execute(f"SELECT id FROM changes WHERE id IN ({marks})", chunk)  # noqa: S608
            )
        return found

    def _fold(
        self,
        incoming: list[Change],
        status: str,
        snapshot: Iterable[SnapshotRecord | RecordFacts] = (),
        merged: Collection[str] = (),
    ) -> int:
        """Store and merge changes this replica has not seen yet; returns how many were new.
        ``snapshot``: records whose heads are among the changes (a snapshot page's, or those
        that entered the scope), with what supersession knows beyond their heads (covered heads,
        ids named before they arrived), folded in as well. ``merged``: ids of changes the states
        hold already (stored, not merged again)."""
        already = self._known(c.id for c in incoming)
        fresh: list[Change] = []
        for change in incoming:
            if change.id not in already:
                already.add(change.id)
                fresh.append(change)
        facts = {(r.collection, r.id): r for r in snapshot if r.covered or r.pending}
        if not fresh and not facts:
            return 0
        to_merge = [c for c in fresh if c.id not in merged] if merged else fresh
        keys = {(c.collection, c.record_id) for c in to_merge} | set(facts)
        states = {key: self._state(key) for key in keys}
        apply_batch(states, to_merge, self._known(preds_to_look_up(states, to_merge)) | set(merged))
        if facts:
            named = {named for record in facts.values() for named in record.pending}
            held = self._known(named) | {c.id for c in fresh}
            for key, record in facts.items():
                absorb_snapshot(states[key], record.covered, record.pending, held.__contains__)
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT INTO changes (id, collection, record_id, body, status) VALUES (?, ?, ?, ?, ?)",
                [(c.id, c.collection, c.record_id, _change_codec.encode(c), status) for c in fresh],
            )
            self._save_states(states)
            self._set_meta("clock", f"{self.clock.wall_ms}:{self.clock.counter}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(fresh)

    def _rebuild(self, keys: Iterable[RecordKey]) -> None:
        """Recompute records from their stored changes, leaving out the rejected ones."""
        for collection, record_id in keys:
            rows = self.db.execute(
                "SELECT body FROM changes WHERE collection = ? AND record_id = ? AND status != 'rejected' "
                "ORDER BY local_seq",
                (collection, record_id),
            ).fetchall()
            if not rows:
                self.db.execute(
                    "DELETE FROM records WHERE collection = ? AND record_id = ?", (collection, record_id)
                )
                continue
            state = RecordState()
            kept = [_change_decoder.decode(row[0]) for row in rows]
            apply_batch({(collection, record_id): state}, kept, set())
            self._save_states({(collection, record_id): state})

    # ------------------------------------------------------------------ offline edits

    def _edit(self, change: Change) -> Change:
        rejection = validate_change(change, self.collections)
        if rejection is not None:
            raise ValueError(f"{rejection.code}: {rejection.message}")
        self._fold([change], "pending")
        return change

    def _base(self, collection: str, record_id: str) -> dict[str, Any]:
        return {
            "id": new_change_id(),
            "collection": collection,
            "record_id": record_id,
            "hlc": self.clock.now(),
        }

    def set(self, collection: str, record_id: str, field_name: str, value: Any) -> Change:
        """Write a scalar field; supersedes every head of the field this replica sees (so it
        also resolves a conflict on that field)."""
        state = self._state((collection, record_id))
        pred = tuple(
            c.id for c in state.heads.values() if not isinstance(c, DeleteChange) and c.field == field_name
        )
        base = self._base(collection, record_id)
        return self._edit(SetChange(**base, field=field_name, value=value, pred=pred))

    def add(self, collection: str, record_id: str, field_name: str, element: Any) -> Change:
        return self._edit(AddChange(**self._base(collection, record_id), field=field_name, value=element))

    def remove(self, collection: str, record_id: str, field_name: str, element: Any) -> Change | None:
        """Remove an element: names every add of it this replica has seen. None if absent."""
        state = self._state((collection, record_id))
        adds = tuple(
            c.id
            for c in state.heads.values()
            if isinstance(c, AddChange) and c.field == field_name and c.value == element
        )
        if not adds:
            return None
        base = self._base(collection, record_id)
        return self._edit(RemoveChange(**base, field=field_name, value=element, pred=adds))

    def delete(self, collection: str, record_id: str) -> Change:
        state = self._state((collection, record_id))
        base = self._base(collection, record_id)
        return self._edit(DeleteChange(**base, pred=tuple(state.heads)))

    def record(self, collection: str, record_id: str) -> RecordView:
        return record_view(self._state((collection, record_id)), self.collections[collection], record_id)

    def records(self, collection: str) -> list[RecordView]:
        rows = self.db.execute(
            "SELECT record_id, state FROM records WHERE collection = ? ORDER BY record_id", (collection,)
        ).fetchall()
        spec = self.collections[collection]
        return [record_view(state_codec.decode(blob), spec, record_id) for record_id, blob in rows]

    def pending(self, limit: int | None = None) -> list[Change]:
        rows = self.db.execute(
            "SELECT body FROM changes WHERE status = 'pending' ORDER BY local_seq LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [_change_decoder.decode(row[0]) for row in rows]

    def rejected(self) -> list[tuple[str, str, str]]:
        """(change id, code, message) of every change the server refused."""
        return [
            (row[0], row[1], row[2])
            for row in self.db.execute(
                "SELECT id, code, message FROM changes WHERE status = 'rejected' ORDER BY local_seq"
            )
        ]

    # ------------------------------------------------------------------ protocol steps

    def push_request(self, limit: int = 500) -> PushRequest | None:
        batch = self.pending(limit)
        return PushRequest(replica_id=self.replica_id, changes=batch) if batch else None

    def accept_push_response(self, request: PushRequest, response: PushResponse, report: SyncReport) -> None:
        if len(response.results) != len(request.changes):
            raise ValueError("push response does not hold one result per change")
        rejected_keys: set[RecordKey] = set()
        synced: list[str] = []
        refused: list[tuple[str | None, str | None, str]] = []
        for change, result in zip(request.changes, response.results, strict=True):
            if result.status == "rejected":
                rejected_keys.add((change.collection, change.record_id))
                report.rejected.append((change.id, result.code or ""))
                refused.append((result.code, result.message, change.id))
            else:
                report.pushed += 1
                synced.append(change.id)
        self.db.execute("BEGIN")
        # One statement for the batch: SQLite looks the ids up itself, with no Python a row.
        self.db.execute(
            "UPDATE changes SET status = 'synced' WHERE id IN (SELECT value FROM json_each(?))",
            (_json_encoder.encode(synced).decode(),),
        )
        self.db.executemany(
            "UPDATE changes SET status = 'rejected', code = ?, message = ? WHERE id = ?", refused
        )
        self.db.execute("COMMIT")
        self._rebuild(rejected_keys)
        self.clock.observe(response.server_hlc)
        if response.clock_skew_ms is not None:
            report.clock_skew_ms = response.clock_skew_ms

    def accept_pull_response(self, response: PullResponse, report: SyncReport) -> None:
        incoming = [self._to_change(c) for c in response.changes]
        for change in incoming:
            self.clock.observe(change.hlc)
        merged = self._merged_by_snapshot(response.changes)
        report.pulled += self._fold(incoming, "synced", response.facts, merged or ())
        self.forget((ref.collection, ref.id) for ref in response.left)
        self._set_meta("cursor", response.cursor)
        if not response.more and merged is not None:
            self.db.execute("DELETE FROM snapshot_seqs")

    def _merged_by_snapshot(self, pulled: list[PulledChange]) -> frozenset[str] | None:
        """Ids of pulled changes that the snapshot's states already hold (None: no snapshot
        record was written while it was paged, the usual case)."""
        if self.db.execute("SELECT 1 FROM snapshot_seqs LIMIT 1").fetchone() is None:
            return None
        seqs = {
            (c, r): seq
            for c, r, seq in self.db.execute("SELECT collection, record_id, seq FROM snapshot_seqs")
        }
        return frozenset(c.id for c in pulled if c.seq <= seqs.get((c.collection, c.record_id), 0))

    def forget(self, keys: Iterable[RecordKey]) -> None:
        """Drop records that left this phone's scope: everything but its own unpushed changes."""
        dropped = list(keys)
        self.db.executemany(
            "DELETE FROM changes WHERE collection = ? AND record_id = ? AND status != 'pending'", dropped
        )
        self._rebuild(dropped)

    def _forget_everything_synced(self) -> None:
        keys = self.db.execute("SELECT collection, record_id FROM records").fetchall()
        self.forget((row[0], row[1]) for row in keys)

    def accept_snapshot_page(self, response: SnapshotResponse, report: SyncReport) -> None:
        incoming = [head for record in response.records for head in record.heads]
        for change in incoming:
            self.clock.observe(change.hlc)
        report.pulled += self._fold(incoming, "synced", response.records)
        self.db.executemany(
            "INSERT OR REPLACE INTO snapshot_seqs (collection, record_id, seq) VALUES (?, ?, ?)",
            [(r.collection, r.id, r.seq) for r in response.records if r.seq],
        )
        if not response.more:
            self._set_meta("cursor", response.sync_cursor)

    @staticmethod
    def _to_change(pulled: Any) -> Change:
        body = {name: getattr(pulled, name) for name in pulled.__struct_fields__ if name != "seq"}
        change: Change = msgspec.convert(body, Change)
        return change

    # ------------------------------------------------------------------ over HTTP

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return headers | (extra or {})

    def _pull_params(self, limit: int) -> dict[str, Any]:
        return {"limit": limit, "since": self.cursor} if self.cursor else {"limit": limit}

    def sync(self, http: httpx.Client, *, push_batch: int = 500, pull_limit: int = 1000) -> SyncReport:
        """Push everything pending and pull until caught up. Each round trip is an exchange: the
        next batch pushed (or none) and the page after the cursor pulled, in one request, so a
        phone with a little to send and a page to take syncs in one round trip."""
        report = SyncReport()
        while True:
            request = self.push_request(push_batch) or PushRequest(replica_id=self.replica_id, changes=[])
            reply = http.post(
                "/v1/sync/exchange",
                params=self._pull_params(pull_limit),
                content=_json_encoder.encode(request),
                headers=self._headers({"content-type": "application/json"}),
            )
            if reply.status_code == 409:
                # The push may have been applied before the cursor was judged: its changes stay
                # pending here, and the resync offers them again (answered ``duplicate``).
                self._resync(http, report, scope_changed=reply.json().get("code") == "scope_changed")
                return report
            if reply.status_code == 404:
                # The exchange itself never answers 404: this server is older than it.
                self._push_pending(http, report, push_batch)
                self._pull_pages(http, report, pull_limit)
                return report
            reply.raise_for_status()
            answer = _EXCHANGED.decode(reply.content)
            self.accept_push_response(request, answer.push, report)
            self.accept_pull_response(answer.pull, report)
            if not answer.pull.more and not self.pending(1):
                return report

    def _push_pending(self, http: httpx.Client, report: SyncReport, push_batch: int = 500) -> None:
        while (request := self.push_request(push_batch)) is not None:
            reply = http.post(
                "/v1/sync/push",
                content=_json_encoder.encode(request),
                headers=self._headers({"content-type": "application/json"}),
            )
            reply.raise_for_status()
            self.accept_push_response(request, _PUSHED.decode(reply.content), report)

    def _pull_pages(self, http: httpx.Client, report: SyncReport, pull_limit: int) -> None:
        """Pull until caught up, page by page (for a server without the exchange)."""
        while True:
            reply = http.get("/v1/sync/pull", params=self._pull_params(pull_limit), headers=self._headers())
            if reply.status_code == 409:
                self._resync(http, report, scope_changed=reply.json().get("code") == "scope_changed")
                return
            reply.raise_for_status()
            page = _PULLED.decode(reply.content)
            self.accept_pull_response(page, report)
            if not page.more:
                return

    def _resync(self, http: httpx.Client, report: SyncReport, *, scope_changed: bool = False) -> None:
        """Start over from a snapshot. When the server lost track of our cursor (a restored or
        compacted history), first offer it every change we hold again: it answers ``duplicate``
        for those it has, so nothing we know can be lost. When our user's scope changed, drop
        what we hold instead (our own unpushed changes stay) and take the new scope's records.

        After the re-offer the server holds every change we know, so its snapshot is the merge
        of a superset of ours: the local states are replaced by it, not merged with it. A local
        head may have been superseded by changes we will never receive (compacted, or pushed by
        others before a restore), and merging would keep it as a phantom conflict."""
        if scope_changed:
            self._forget_everything_synced()
        else:
            self.db.execute("UPDATE changes SET status = 'pending' WHERE status = 'synced'")
            self.db.execute("DELETE FROM meta WHERE key = 'cursor'")  # a retry starts over too
            self._push_pending(http, report)
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM records")
            self.db.execute("DELETE FROM changes WHERE status = 'synced'")
            self.db.execute("COMMIT")
        self.db.execute("DELETE FROM meta WHERE key = 'cursor'")
        self.bootstrap(http)
        if self.cursor is None:
            raise ResyncRequiredError("the server sent no cursor with its snapshot")
        again = self.sync(http)
        report.pushed += again.pushed
        report.pulled += again.pulled
        report.rejected += again.rejected

    def bootstrap(self, http: httpx.Client, *, collection: str | None = None, limit: int = 500) -> SyncReport:
        """Start from the server's current heads instead of replaying the whole log."""
        report = SyncReport()
        page_cursor: str | None = None
        more = True
        while more:
            params: dict[str, Any] = {"limit": limit}
            if collection:
                params["collection"] = collection
            if page_cursor:
                params["cursor"] = page_cursor
            reply = http.get("/v1/sync/snapshot", params=params, headers=self._headers())
            reply.raise_for_status()
            page = _SNAPSHOT.decode(reply.content)
            self.accept_snapshot_page(page, report)
            page_cursor, more = page.cursor, page.more
        return report

    def close(self) -> None:
        self.db.close()
