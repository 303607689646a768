"""Health, readiness, metrics and the protocol's schema, open without a device token."""

from __future__ import annotations

import hmac
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from schemas.catalog import ProtocolSchema, describe_protocol
from schemas.collections import COLLECTIONS
from server.db.engine import migrations_current
from server.errors import problem, unavailable
from server.observability.metrics import CONTENT_TYPE, scrape
from server.openapi import problems
from server.sync.store import SyncStore

__all__ = ["Health", "health", "health_live", "health_ready", "metrics", "protocol_schema"]


class Health(msgspec.Struct):
    status: Literal["ok"]


@get(
    "/health",
    operation_id="health",
    tags=["system"],
    exclude_from_auth=True,
    cache=False,
    responses=problems(503),
)
async def health(store: NamedDependency[SyncStore]) -> Health:
    try:
        await store.ping()
    except Exception as error:
        raise unavailable("database_unavailable", f"database unavailable: {type(error).__name__}") from None
    return Health(status="ok")


@get("/health/live", operation_id="healthLive", tags=["system"], exclude_from_auth=True, cache=False)
async def health_live() -> Health:
    """The process is up and answers: nothing else is checked (a restart is the cure otherwise)."""
    return Health(status="ok")


@get(
    "/health/ready",
    operation_id="healthReady",
    tags=["system"],
    exclude_from_auth=True,
    cache=False,
    responses=problems(503),
)
async def health_ready(store: NamedDependency[SyncStore]) -> Health:
    """Ready for traffic: the database answers and its schema is the one this code expects (a
    process older than the last migration answers 503, so a proxy stops sending it requests)."""
    try:
        current = await migrations_current(store.engine)
    except Exception as error:
        raise unavailable("not_ready", f"the database does not answer ({type(error).__name__})") from None
    if not current:
        raise problem(
            503,
            "not_ready",
            "the database schema is not the one this server expects: run `gridsync db upgrade`, "
            "or retire this process if a newer one upgraded it",
        )
    return Health(status="ok")


_LOOPBACK = frozenset({"127.0.0.1", "::1"})


@get("/metrics", tags=["system"], exclude_from_auth=True, include_in_schema=False, cache=False)
async def metrics(request: Request[Any, Any, Any], store: NamedDependency[SyncStore]) -> Response[bytes]:
    """Prometheus metrics (docs/deploy.md): with ``GRIDSYNC_METRICS_TOKEN`` set, for a caller that
    sends it as a bearer token; without one, for loopback callers only."""
    expected = store.settings.metrics_token
    if expected:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise problem(
                401,
                "metrics_token_required",
                "send 'Authorization: Bearer <GRIDSYNC_METRICS_TOKEN>' to read the metrics",
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif request.client is None or request.client.host not in _LOOPBACK:
        raise problem(
            403,
            "metrics_not_public",
            "metrics are served to loopback callers only unless GRIDSYNC_METRICS_TOKEN is set",
        )
    return Response(content=await scrape(store.engine), media_type=CONTENT_TYPE)


_PROTOCOL_SCHEMA = describe_protocol(COLLECTIONS)


@get("/v1/protocol/schema", operation_id="protocolSchema", tags=["system"], exclude_from_auth=True)
async def protocol_schema() -> ProtocolSchema:
    """JSON Schema (2020-12) of every protocol v1 message in `$defs`; every collection's fields
    (value schemas, allowed values, links, status transitions); every `code` the server answers
    with. Enough for a client to validate its changes offline."""
    return _PROTOCOL_SCHEMA
