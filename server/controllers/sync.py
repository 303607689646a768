"""Protocol v1: push, pull and snapshot."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery

from schemas.protocol import PROTOCOL_VERSION, PullResponse, PushResponse, SnapshotResponse
from server.access import Principal
from server.auth import SECURITY_REQUIREMENT
from server.negotiation import encoded, request_codec, response_codec
from server.problems import problem
from server.settings import Settings
from server.store import SyncStore
from sync.hlc import REPLICA_ID_PATTERN

__all__ = ["SyncController"]


def _limit(value: int | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise problem(400, "bad_limit", f"limit must be between 1 and {maximum}, got {value}")
    return value


class SyncController(Controller):
    path = "/v1/sync"
    tags = ["sync"]
    security = SECURITY_REQUIREMENT

    @post(
        "/push",
        operation_id="push",
        status_code=200,
        summary="Push a batch of changes",
        description=(
            "Body: PushRequest (JSON or MessagePack by Content-Type). Each change is judged on "
            "its own: the response holds one result per change, in order. See docs/protocol.md."
        ),
    )
    async def push(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
        settings: NamedDependency[Settings],
    ) -> Response[bytes]:
        codec = request_codec(request)
        body = await request.body()
        try:
            replica_id, protocol, items = codec.decode_push(body)
        except msgspec.DecodeError as error:
            raise problem(
                400,
                "malformed_body",
                f"the push body is not a PushRequest ({error}); nothing in it was applied",
            ) from None
        if protocol != PROTOCOL_VERSION:
            raise problem(
                400,
                "unsupported_protocol",
                f"protocol {protocol} is not supported; this server speaks protocol {PROTOCOL_VERSION}",
            )
        if not REPLICA_ID_PATTERN.match(replica_id):
            raise problem(400, "bad_replica_id", "replica_id must be 1-64 of A-Z a-z 0-9 _ . : -")
        if len(items) > settings.max_changes_per_push:
            raise problem(
                413,
                "batch_too_large",
                f"{len(items)} changes in one push; send at most {settings.max_changes_per_push} "
                "per request and push the rest in the next one",
            )
        outcome = await store.push(request.user.id, replica_id, items, request.user)
        response = PushResponse(
            results=outcome.results,
            server_hlc=outcome.server_hlc,
            cursor=outcome.cursor,
            clock_skew_ms=outcome.clock_skew_ms,
        )
        return encoded(response, response_codec(request))

    @get("/pull", operation_id="pull", summary="Changes after a cursor, in server order")
    async def pull(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
        settings: NamedDependency[Settings],
        since: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> Response[bytes]:
        codec = response_codec(request)
        count = _limit(limit, settings.default_pull_limit, settings.max_pull_limit)
        changes, cursor, more, left = await store.pull(
            since, count, raw_json=codec.media_type.endswith("json"), principal=request.user
        )
        if request.user.device_id is not None:
            await store.acks.record(request.user.device_id, since)
        return encoded(PullResponse(changes=changes, cursor=cursor, more=more, left=left), codec)

    @get(
        "/snapshot",
        operation_id="snapshot",
        summary="Current heads of every record, paged, to start a new phone",
        description=(
            "Page with `cursor` from the previous page. After the last page, pull from "
            "`sync_cursor` (the same on every page)."
        ),
    )
    async def snapshot(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
        settings: NamedDependency[Settings],
        collection: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> Response[bytes]:
        count = _limit(limit, settings.default_snapshot_limit, settings.max_snapshot_limit)
        records, next_page, more, sync_cursor = await store.snapshot(collection, cursor, count, request.user)
        response = SnapshotResponse(records=records, cursor=next_page, more=more, sync_cursor=sync_cursor)
        return encoded(response, response_codec(request))
