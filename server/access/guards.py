"""Guards shared by the admin API controllers."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from server.errors import problem

__all__ = ["cookie_writes_send_json"]


def cookie_writes_send_json(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A write authorised by the session cookie alone must be JSON: a form another site posts
    (text/plain can smuggle a JSON-looking body) cannot set that content type without a CORS
    preflight this server never grants. SameSite=Strict already keeps the cookie home; this is
    the second lock (docs/admin.md)."""
    if connection.scope.get("method") not in ("POST", "PUT", "PATCH"):
        return
    if connection.headers.get("authorization"):
        return
    if not connection.headers.get("content-type", "").startswith("application/json"):
        raise problem(
            415,
            "json_required",
            "a write signed in by the session cookie must send its body as application/json",
        )
