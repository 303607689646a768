"""Reads from PostgreSQL hot standbys (``GRIDSYNC_DATABASE_READ_URLS``), safe for cursors.

A standby replays the primary's log in commit order, so what it shows is always a prefix of the
primary's history: the change log up to its counter's ``last_seq``, with no gap (seqs are taken
under the counter's lock, in commit order). A read may be served there only if that prefix
holds what the caller already has or must see:

- a pull's cursor (and, for an exchange, the seq its own push was given) is at or below the
  standby's ``last_seq``, in the same epoch;
- a snapshot page's pull cursor is at or below it;
- the standby is still in recovery: a promoted standby no longer follows the primary, and what
  it shows may diverge from it.

Otherwise the read goes to the primary at once (``ReplicaBehindError``): no waiting, so a phone
never pays for a standby's lag, and the primary only serves the few reads that race their own
writes (docs/scaling.md has the measured share). A standby that cannot be reached is left
alone for a few seconds and its reads go to the primary meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import classify_database_error
from server.observability.metrics import count_replica_read

__all__ = ["ReadReplicas", "Replica", "ReplicaBehindError"]

logger = logging.getLogger("gridsync")

T = TypeVar("T")

# How long a standby that failed is left alone before it is offered reads again.
_RETRY_AFTER_S = 5.0


class ReplicaBehindError(Exception):
    """The standby has not replayed what this read needs (or was promoted): ask the primary."""


@dataclass(slots=True)
class Replica:
    engine: AsyncEngine
    # Autocommit: a hot read needs no BEGIN and ROLLBACK round trips (as on the primary).
    reader: AsyncEngine
    down_until: float = 0.0

    def mark_down(self, error: BaseException) -> None:
        if self.down_until < time.monotonic():
            logger.warning(
                "read replica %s unavailable, reading from the primary: %s", self.engine.url.host, error
            )
        self.down_until = time.monotonic() + _RETRY_AFTER_S
        count_replica_read("unavailable")


class ReadReplicas:
    """The standbys, offered reads in turn."""

    def __init__(self, engines: Sequence[AsyncEngine]) -> None:
        self.replicas = [
            Replica(engine, engine.execution_options(isolation_level="AUTOCOMMIT")) for engine in engines
        ]
        self._turn = itertools.cycle(self.replicas)
        for replica in self.replicas:
            event.listen(replica.engine.sync_engine, "handle_error", self._on_error(replica))

    def __bool__(self) -> bool:
        return bool(self.replicas)

    @staticmethod
    def _on_error(replica: Replica) -> Callable[[ExceptionContext], None]:
        def on_error(context: ExceptionContext) -> None:
            if classify_database_error(context.original_exception) == "unavailable":
                replica.mark_down(context.original_exception)

        return on_error

    def pick(self) -> Replica | None:
        """The next standby that is not left alone; None when there is none."""
        now = time.monotonic()
        for _ in range(len(self.replicas)):
            replica = next(self._turn)
            if replica.down_until <= now:
                return replica
        return None

    def engine_or(self, primary: AsyncEngine) -> AsyncEngine:
        """The engine for a read that needs no position (a record, a list): the next standby, or
        ``primary``."""
        replica = self.pick()
        return primary if replica is None else replica.engine

    async def serve(
        self, primary: AsyncEngine, read: Callable[[AsyncEngine, ReadReplicas | None], Awaitable[T]]
    ) -> T:
        """``read`` from the next standby, given these replicas to check its position with; from
        ``primary`` (and None) when there is none, it is behind, or it cannot be reached."""
        if self.replicas and (replica := self.pick()) is not None:
            try:
                return await read(replica.engine, self)
            except ReplicaBehindError:
                pass
            except Exception as error:
                if classify_database_error(error) != "unavailable":
                    raise
                replica.mark_down(error)
        return await read(primary, None)

    @staticmethod
    def check(
        *, in_recovery: bool, epoch: str, last_seq: int, wanted_epoch: str | None, wanted_seq: int
    ) -> None:
        """Raise ``ReplicaBehindError`` unless the standby holds everything up to ``wanted_seq``
        of ``wanted_epoch`` (None: any epoch, a read from the start)."""
        if not in_recovery or (wanted_epoch is not None and wanted_epoch != epoch) or wanted_seq > last_seq:
            count_replica_read("behind")
            raise ReplicaBehindError
        count_replica_read("served")
