"""Live notices that the log moved, for phones holding ``GET /v1/sync/events`` open.

A notice says only "the log's head is now at seq N": the cheapest thing that is always right. A
device that hears it pulls, and its scoped pull decides what, if anything, it may read; the
notice itself names no record, so it reveals nothing a pull cursor does not already carry. The
price is that a phone may wake for a push outside its scope and pull an empty page; notices to
one stream are coalesced (at most one per ``NOTICE_GAP`` seconds) so a busy district costs a
phone a cheap empty pull now and then, never a storm.

How a push in one app process reaches the streams held by another:

* PostgreSQL: each process keeps one dedicated connection (outside the pool) that ``LISTEN``\\ s
  on ``gridsync_log`` and sends ``pg_notify`` after each of its own commits. When that
  connection is lost it is opened again with backoff, every stream is woken (a notice may
  have been missed meanwhile), and a notice of its own that could not be sent meanwhile is
  sent then. The connection's ``application_name`` is ``gridsync-events-<pid>``.
* SQLite: a push wakes the streams of its own process at once; while any stream is open, the
  process also reads the head once a second, so pushes written by another process
  (``gridsync serve --workers N``) are noticed too.

Each device holds at most ``max_event_streams_per_device`` streams per process: a new stream
beyond that closes the device's oldest (a phone that changed networks reconnects before the
server notices its old stream is dead).

Metrics: ``LogEvents.open_streams`` is the number of streams open in this process, and every
callable in ``LogEvents.stream_watchers`` is called with it whenever it changes (a gauge's
``set``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from server.settings import Settings

__all__ = ["CHANNEL", "LISTENER_NAME", "NOTICE_GAP", "LogEvents", "StreamTicket"]

logger = logging.getLogger("gridsync")

# The PostgreSQL channel every app process listens on; the payload is the log's last seq.
CHANNEL = "gridsync_log"
# The listener's application_name in pg_stat_activity, followed by ``-<the app process's pid>``.
LISTENER_NAME = "gridsync-events"
# The shortest time between two notices on one stream: coalesces a busy log.
NOTICE_GAP = 0.5
# How often a SQLite process reads the head while streams are open (other processes' pushes).
_SQLITE_POLL = 1.0
_HEAD = "SELECT last_seq FROM sync_counter WHERE id = 1"
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _set(event: asyncio.Event, _connection: object) -> None:
    event.set()


@dataclass(eq=False)
class StreamTicket:
    """One open stream: woken when the head moves, or told to close (replaced or shut down)."""

    device: str
    head: int = 0
    closed: bool = False
    woken: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self, head: int | None) -> None:
        if head is not None and head > self.head:
            self.head = head
        self.woken.set()

    def close(self) -> None:
        self.closed = True
        self.woken.set()


class LogEvents:
    """The process's hub of event streams and its link to the other processes."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.stream_watchers: list[Callable[[int], None]] = []
        self._postgres = engine.dialect.name == "postgresql"
        self._streams: dict[str, list[StreamTicket]] = {}
        self._head = 0
        self._connection: asyncpg.Connection | None = None
        self._listener: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._unsent: int | None = None
        self._chained: dict[int, Any] = {}
        self.running = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin listening to the other processes (PostgreSQL); SQLite needs nothing yet."""
        try:
            self._head = await self.read_head()
        except Exception as error:  # the app starts while the database is away and answers 503
            logger.warning("log head not read at start: %s", type(error).__name__)
        self.running = True
        if self._postgres:
            self._listener = asyncio.create_task(self._listen_forever())
        self._end_streams_on_exit()

    async def stop(self) -> None:
        self._end_streams()
        for sig, previous in self._chained.items():
            signal.signal(sig, previous)
        self._chained.clear()
        for task in (self._listener, self._poller, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    def _end_streams(self) -> None:
        self.running = False
        for tickets in list(self._streams.values()):
            for ticket in tickets:
                ticket.close()

    def _end_streams_on_exit(self) -> None:
        """The server waits for open answers to finish before it shuts the app down, and an event
        stream never finishes by itself: the exit signal ends every stream (with ``bye``) first,
        then the server's own handler runs. Signals reach the main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in _EXIT_SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # no server handler to run after ours: leave the default alone

            def ending(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
                loop.call_soon_threadsafe(self._end_streams)
                previous(signum, frame)

            self._chained[sig] = previous
            signal.signal(sig, ending)

    async def read_head(self) -> int:
        async with self.engine.connect() as connection:
            result = await connection.exec_driver_sql(_HEAD)
            head = result.scalar_one()
        return int(head)

    # ------------------------------------------------------------------ streams

    @property
    def open_streams(self) -> int:
        return sum(len(tickets) for tickets in self._streams.values())

    @contextlib.asynccontextmanager
    async def stream(self, device: str) -> AsyncIterator[StreamTicket]:
        """A ticket for one open stream of ``device``, given back when the stream ends."""
        ticket = StreamTicket(device, head=self._head)
        tickets = self._streams.setdefault(device, [])
        tickets.append(ticket)
        while len(tickets) > self.settings.max_event_streams_per_device:
            tickets.pop(0).close()
        self._streams_changed()
        if not self._postgres and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll_sqlite())
        try:
            yield ticket
        finally:
            if ticket in tickets:
                tickets.remove(ticket)
            if not tickets and self._streams.get(device) is tickets:
                del self._streams[device]
            self._streams_changed()

    def _streams_changed(self) -> None:
        count = self.open_streams
        for watcher in self.stream_watchers:
            watcher(count)

    def _wake_all(self, head: int | None) -> None:
        if head is not None:
            if head <= self._head:
                return
            self._head = head
        for tickets in self._streams.values():
            for ticket in tickets:
                ticket.wake(head)

    # ------------------------------------------------------------------ commits

    def committed(self, last_seq: int) -> None:
        """Called by the push writer after each commit that moved the head (from the event loop,
        never waiting): wakes this process's streams and tells the other processes."""
        self._wake_all(last_seq)
        if not self._postgres:
            return
        self._unsent = max(last_seq, self._unsent or 0)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_notices())

    async def _send_notices(self) -> None:
        # One notice in flight at a time; commits meanwhile are folded into the next one. A
        # notice that cannot go now (the connection is lost, or being opened again) is kept and
        # sent once the listener is back: the other processes may never have lost theirs, so
        # nothing else would wake their streams for this push.
        while self._unsent is not None:
            head, self._unsent = self._unsent, None
            connection = self._connection
            try:
                if connection is None:
                    raise ConnectionError("the listener is reconnecting")
                await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, str(head))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("log notice held until the listener is back: %s", type(error).__name__)
                self._unsent = max(head, self._unsent or 0)
                return

    def _resend_held_notice(self) -> None:
        if self._unsent is not None and (self._sender is None or self._sender.done()):
            self._sender = asyncio.create_task(self._send_notices())

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.isascii() and payload.isdigit():
            self._wake_all(int(payload))

    # ------------------------------------------------------------------ links

    async def _listen_forever(self) -> None:
        dsn = make_url(self.engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
        backoff = 0.5
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(
                    dsn,
                    timeout=self.settings.database_connect_timeout,
                    server_settings={"application_name": f"{LISTENER_NAME}-{os.getpid()}"},
                )
                connection.add_termination_listener(functools.partial(_set, lost))
                await connection.add_listener(CHANNEL, self._heard)
                self._connection = connection
                backoff = 0.5
                # Notices may have been missed while there was no connection: the head says.
                self._wake_all(await connection.fetchval(_HEAD))
                self._resend_held_notice()  # after the read: one operation at a time on it
                await lost.wait()
            except Exception as error:  # whatever broke the link, listening must go on
                logger.warning("log listener down, retrying: %s", type(error).__name__)
            finally:
                connection_now, self._connection = self._connection, None
                if connection_now is not None and not connection_now.is_closed():
                    connection_now.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _poll_sqlite(self) -> None:
        while self._streams:
            await asyncio.sleep(_SQLITE_POLL)
            try:
                self._wake_all(await self.read_head())
            except Exception as error:  # the database is busy or gone: the next read may do
                logger.warning("log head not read: %s", type(error).__name__)
