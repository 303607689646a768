"""Every request observed once: its request id, its metrics, and (``GRIDSYNC_LOG_FORMAT=json``)
one JSON log line.

``RequestObserver`` wraps the whole app, outside routing and the exception handlers, so it sees
every response, problem details included. The request id is the caller's ``X-Request-ID`` when
it is a short token of plain characters (a proxy's), else a new one; it goes back in the
``X-Request-ID`` header and in every problem details body (server/problems.py).

A log line names the route template, never the path or the query (a path holds record ids), and
nothing of a body: no token, phone number or ID number can reach it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.observability.metrics import observe_pool, observe_request

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RequestObserver",
    "log_config",
    "note_changes",
    "request_id_of",
]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_STATE_ID = "request_id"
_STATE_CHANGES = "change_counts"
request_logger = logging.getLogger("gridsync.requests")


def request_id_of(scope: Mapping[str, Any]) -> str | None:
    """The id ``RequestObserver`` gave this request (None outside it)."""
    state = scope.get("state") or {}
    found = state.get(_STATE_ID)
    return found if isinstance(found, str) else None


def note_changes(scope: Mapping[str, Any], **counts: int) -> None:
    """Counts of changes this request pushed or pulled, for its log line."""
    state = scope.get("state")
    if state is not None:
        state.setdefault(_STATE_CHANGES, {}).update(counts)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.fullmatch(text) else None
    return None


class RequestObserver:
    """ASGI wrapper of the app: request id, request metrics, the database pools in use, and the
    JSON log line when ``json_log``."""

    def __init__(self, app: ASGIApp, *, json_log: bool) -> None:
        self.app = app
        self.json_log = json_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})[_STATE_ID] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            # Unrouted paths (404s) share one label: a scanner must not make a series per path.
            route = scope.get("path_template") or "unmatched"
            method: str = scope.get("method", "GET")
            observe_request(method, route, status, seconds)
            app = scope.get("litestar_app")
            for name, engine in getattr(getattr(app, "state", None), "engines", {}).items():
                observe_pool(name, engine)
            if self.json_log:
                user = scope.get("user")
                fields: dict[str, Any] = {
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "device_id": getattr(user, "device_id", None),
                }
                counts = scope["state"].get(_STATE_CHANGES)
                if counts:
                    fields["changes"] = counts
                request_logger.info("request", extra={"request": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and a request's fields."""

    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_config(log_format: str, level: str) -> dict[str, Any] | None:
    """uvicorn's ``log_config`` for ``log_format``: None keeps uvicorn's own (text) logging;
    ``json`` sends every logger, uvicorn's included, as JSON lines to stderr."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "server.observability.requests.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # One line per request is ours (gridsync.requests): uvicorn's access line would repeat it.
            "uvicorn.access": {"handlers": [], "propagate": False},
            "gridsync.requests": {"level": "INFO"},
        },
    }
