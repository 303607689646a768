"""Health and the protocol's JSON Schema, both open without a token."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException

from schemas.protocol import (
    ExchangeResponse,
    PullResponse,
    PushRequest,
    PushResponse,
    RecordView,
    SnapshotResponse,
)
from server.sync.store import SyncStore

__all__ = ["health", "protocol_schema"]


@get("/health", operation_id="health", tags=["system"], exclude_from_auth=True, cache=False)
async def health(store: NamedDependency[SyncStore]) -> dict[str, str]:
    try:
        await store.ping()
    except Exception as error:
        raise HTTPException(status_code=503, detail=f"database unavailable: {type(error).__name__}") from None
    return {"status": "ok"}


_SCHEMA = msgspec.json.schema_components(
    [PushRequest, PushResponse, PullResponse, ExchangeResponse, SnapshotResponse, RecordView],
    ref_template="#/$defs/{name}",
)


@get("/v1/protocol/schema", operation_id="protocolSchema", tags=["system"], exclude_from_auth=True)
async def protocol_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every protocol v1 message, for app developers."""
    _, definitions = _SCHEMA
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": definitions}
