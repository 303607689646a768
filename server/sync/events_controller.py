"""``GET /v1/sync/events``: a stream of server-sent events telling a device when to pull.

Events (``event:`` names; ``data:`` is JSON):

* ``head`` ``{"seq": N}``: sent first, then whenever the log's head moves. A device whose
  cursor is behind N pulls (``server/events.py`` says why a notice may be for a push it cannot
  read, and what that costs).
* ``bye`` ``{"reason": "replaced" | "expired" | "shutdown"}``: the stream ends; reconnect
  (``replaced``: the device opened another stream beyond its allowance).
* A comment line every ``event_heartbeat_seconds`` keeps proxies and phones from dropping an
  idle stream, and lets the server notice a phone that is gone.

A stream lasts at most ``event_stream_seconds``; the client reconnects, and its token is checked
again. A client that cannot hold a stream polls ``/v1/sync/pull`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from server.access.principals import Principal
from server.access.tokens import SECURITY_REQUIREMENT
from server.openapi import problems
from server.settings import Settings
from server.sync.events import NOTICE_GAP, LogEvents, StreamTicket

__all__ = ["EventsController"]


def _head(seq: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(event="head", data=f'{{"seq":{seq}}}')


def _bye(reason: str) -> ServerSentEventMessage:
    return ServerSentEventMessage(event="bye", data=f'{{"reason":"{reason}"}}')


async def _notices(
    events: LogEvents, device: str, settings: Settings
) -> AsyncIterator[ServerSentEventMessage]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + settings.event_stream_seconds
    async with events.stream(device) as ticket:
        sent = ticket.head
        yield _head(sent)
        while True:
            left = ends - loop.time()
            if left <= 0:
                yield _bye("expired")
                return
            if not await _woken(ticket, min(settings.event_heartbeat_seconds, left)):
                yield ServerSentEventMessage(data=None, comment="heartbeat")
                continue
            ticket.woken.clear()
            if ticket.closed:
                yield _bye("replaced" if events.running else "shutdown")
                return
            if ticket.head > sent:
                sent = ticket.head
                yield _head(sent)
                await asyncio.sleep(NOTICE_GAP)


async def _woken(ticket: StreamTicket, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await ticket.woken.wait()
    except TimeoutError:
        return False
    return True


class EventsController(Controller):
    path = "/v1/sync"
    tags = ["sync"]
    security = SECURITY_REQUIREMENT

    @get(
        "/events",
        operation_id="events",
        media_type="text/event-stream",
        responses=problems(401, 429, 503),
        summary="Server-sent events: the log's head moved, pull now",
        description=(
            'text/event-stream. `head` events carry `{"seq": N}` (first at once, then when the '
            "log's head moves); `bye` ends the stream; comment heartbeats keep it open. A device "
            "holds a bounded number of streams: a new one beyond that closes its oldest. "
            "See docs/protocol.md."
        ),
    )
    async def events(self, request: Request[Principal, str, Any]) -> ServerSentEvent:
        state = request.app.state
        events: LogEvents = state.events
        settings: Settings = state.settings
        return ServerSentEvent(
            _notices(events, request.user.id, settings), headers={"Cache-Control": "no-store"}
        )
