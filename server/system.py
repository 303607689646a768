"""Health and the protocol's schema, both open without a token."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency

from schemas.catalog import ProtocolSchema, describe_protocol
from schemas.collections import COLLECTIONS
from server.errors import RETRY_AFTER_SECONDS, problem
from server.openapi import problems
from server.sync.store import SyncStore

__all__ = ["Health", "health", "protocol_schema"]


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
        raise problem(
            503,
            "database_unavailable",
            f"database unavailable: {type(error).__name__}",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    return Health(status="ok")


_PROTOCOL_SCHEMA = describe_protocol(COLLECTIONS)


@get("/v1/protocol/schema", operation_id="protocolSchema", tags=["system"], exclude_from_auth=True)
async def protocol_schema() -> ProtocolSchema:
    """JSON Schema (2020-12) of every protocol v1 message in `$defs`; every collection's fields
    (value schemas, allowed values, links, status transitions); every `code` the server answers
    with. Enough for a client to validate its changes offline."""
    return _PROTOCOL_SCHEMA
