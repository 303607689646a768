"""The sync store: what the sync protocol reads and writes, wired once per app.

Each path has its own home, and callers use it through the store's attributes: the push is
``writer`` (``server.sync.push``), the decoded pull page ``pulls`` (``server.sync.pull``), the
unscoped JSON page ``json_pulls`` (``server.sync.pull_json``), the snapshot ``snapshots``
(``server.sync.snapshot``), one record ``records`` (``server.sync.records``). The hot paths
batch their database work: one statement per step for a whole push or page, no ORM object per
change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.collections import COLLECTIONS, CollectionSpec
from server.access.personal import load_sealer
from server.db.replicas import ReadReplicas
from server.db.tables import changes
from server.inbox.tracking import ConflictTracker
from server.settings import Settings
from server.sync.horizon import PullAcknowledgements
from server.sync.pull import PullReader
from server.sync.pull_json import JsonPullReader
from server.sync.push import PushWriter
from server.sync.records import RecordReader
from server.sync.snapshot import SnapshotReader
from sync.hlc import HybridClock

__all__ = ["SyncStore"]


class SyncStore:
    """Everything the sync protocol reads and writes. One instance per app, shared by requests."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        collections: dict[str, CollectionSpec] | None = None,
        *,
        read_engines: Sequence[AsyncEngine] = (),
    ) -> None:
        self.engine = engine
        # PostgreSQL hot standbys for the reads; every write goes to ``engine``.
        self.replicas = ReadReplicas(read_engines)
        self.settings = settings
        self.collections = COLLECTIONS if collections is None else collections
        # Like every replica's, the server's clock never moves more than the protocol's bound
        # past its own wall time (sync.hlc.MAX_FOLLOW_AHEAD_MS), whatever a device stamps.
        self.clock = HybridClock(f"server-{uuid.uuid4().hex[:8]}")
        # Each device's acknowledged pull position, which bounds history compaction.
        self.acks = PullAcknowledgements(engine, settings.ack_interval_ms)
        self.conflict_tracker = ConflictTracker(self.collections)
        # The key that seals ID numbers; None when none is configured (server/access/personal.py).
        self.sealer = load_sealer(settings)
        self.writer = PushWriter(
            engine, settings, self.collections, self.clock, self.conflict_tracker, self.sealer
        )
        self.pulls = PullReader(engine, self.replicas, self.collections)
        self.json_pulls = JsonPullReader(engine, self.replicas, self.collections)
        self.snapshots = SnapshotReader(engine, self.replicas, self.collections)
        self.records = RecordReader(engine, self.replicas, self.collections)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def change_count(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(changes))).scalar_one())
