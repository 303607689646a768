"""Protocol v1: push, pull, the exchange of both in one request, and snapshot."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import chain
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Stream

from schemas.codec import JSON
from schemas.protocol import (
    PROTOCOL_VERSION,
    ExchangeResponse,
    PullResponse,
    PushRequest,
    PushResponse,
    SnapshotResponse,
)
from server.access.policy import is_scoped
from server.access.principals import Principal
from server.access.tokens import SECURITY_REQUIREMENT
from server.errors import problem
from server.negotiation import request_codec, response_codec
from server.observability.metrics import count_changes
from server.observability.requests import note_changes
from server.openapi import answer, negotiated, problems
from server.sync.cursors import cursor_seq
from server.sync.store import SyncStore
from sync.hlc import REPLICA_ID_PATTERN

__all__ = ["SyncController", "page_limit"]

_PUSH_BODY = negotiated(
    PushRequest,
    "A PushRequest in JSON or MessagePack (by Content-Type), optionally gzipped "
    "(Content-Encoding: gzip). A change that is not a valid Change is answered `rejected` "
    "with `malformed_change`; the rest of the batch is judged as usual.",
)
# Every sync route answers 401 without a valid token, 429 over a rate limit, 503 without its
# database; a write also 507 when the disk is full.
_PUSH_PROBLEMS = problems(400, 401, 413, 415, 429, 503, 507)
_PULL_PROBLEMS = problems(400, 401, 409, 429, 503)


_PULL_SLICE = 500
# Phones pay for every byte: bodies above this size go gzipped to a client that accepts gzip.
_GZIP_FROM = 1024
_GZIP = {"content-encoding": "gzip", "vary": "Accept-Encoding"}


def _accepts_gzip(request: Request[Any, Any, Any]) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "")


def _gzipper() -> Any:
    # Level 1: most of the saving (keys, repeated collection names) for little CPU.
    return zlib.compressobj(1, zlib.DEFLATED, 31)


def _inflate(request: Request[Any, Any, Any], body: bytes, limit: int) -> bytes:
    """The push body, un-gzipped when the client sent it gzipped; bounded like a plain body."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise problem(
            415, "unsupported_content_encoding", f"Content-Encoding {encoding!r}: send gzip or none"
        )
    inflater = zlib.decompressobj(31)
    try:
        raw = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise problem(400, "malformed_body", "the gzipped push body does not decompress") from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise problem(413, "body_too_large", f"the push body is over {limit} bytes once decompressed")
    return raw


def _reply(
    request: Request[Any, Any, Any], message: Any, background: BackgroundTask | None = None
) -> Response[bytes]:
    """``message`` in the codec the client asked for, gzipped when it accepts gzip and the body
    is worth it (a snapshot page of a community is megabytes of JSON; phones pay per byte);
    ``background`` runs once it is sent."""
    codec = response_codec(request)
    return _encoded_reply(request, codec.encode(message), codec.media_type, background)


def _encoded_reply(
    request: Request[Any, Any, Any], content: bytes, media_type: str, background: BackgroundTask | None
) -> Response[bytes]:
    if _accepts_gzip(request) and len(content) >= _GZIP_FROM:
        gzipper = _gzipper()
        content = gzipper.compress(content) + gzipper.flush()
        return Response(content=content, media_type=media_type, headers=_GZIP, background=background)
    return Response(content=content, media_type=media_type, background=background)


def page_limit(value: int | None, default: int, maximum: int) -> int:
    """A page's ``limit`` query parameter: ``default`` when absent, 400 ``bad_limit`` outside
    1 to ``maximum``."""
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise problem(400, "bad_limit", f"limit must be between 1 and {maximum}, got {value}")
    return value


def _pull_slices(rows: list[str], cursor: str, more: bool) -> Iterator[bytes]:
    """An unscoped PullResponse in JSON (nothing ever leaves an unscoped caller), a slice of
    changes at a time: byte for byte what msgspec encodes."""
    yield b'{"changes":['
    for start in range(0, len(rows), _PULL_SLICE):
        yield ("," if start else "").encode() + ",".join(rows[start : start + _PULL_SLICE]).encode()
    yield b'],"cursor":' + msgspec.json.encode(cursor) + (b',"more":true' if more else b',"more":false')
    yield b',"left":[],"facts":[]}'


async def _pull_body(slices: Iterable[bytes], gzip: bool) -> AsyncIterator[bytes]:
    """Written out as it is made (and gzipped as it goes): the body is never held whole."""
    gzipper = _gzipper() if gzip else None
    for piece in slices:
        out = gzipper.compress(piece) if gzipper else piece
        if out:
            yield out
    if gzipper:
        yield gzipper.flush()


async def _pushed(request: Request[Principal, str, Any], store: SyncStore) -> PushResponse:
    """The request's PushRequest body applied: one result per change, each judged on its own."""
    codec = request_codec(request)
    settings = store.settings
    body = _inflate(request, await request.body(), settings.max_body_bytes)
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
    response = await store.writer.push(request.user.id, replica_id, items, request.user)
    count_changes(response.results)
    note_changes(
        request.scope,
        pushed=len(response.results),
        rejected=sum(result.status == "rejected" for result in response.results),
    )
    return response


def _pull_count(store: SyncStore, limit: int | None) -> int:
    settings = store.settings
    return page_limit(limit, settings.default_pull_limit, settings.max_pull_limit)


async def _page_reply(
    request: Request[Principal, str, Any],
    store: SyncStore,
    since: str | None,
    count: int,
    pushed: PushResponse | None = None,
) -> Response[bytes] | Stream:
    """The page after ``since``: a PullResponse, or with ``pushed`` an ExchangeResponse."""
    codec = response_codec(request)
    # The acknowledgement is written once the page is sent: the phone does not wait for it.
    device_id = request.user.device_id
    ack = None if device_id is None else BackgroundTask(store.acks.record, device_id, since)
    # An exchange's page holds the changes its push applied, whichever database serves it (an
    # empty push asks for nothing: a standby a few ms behind the primary still serves it).
    applied = pushed is not None and any(result.status == "applied" for result in pushed.results)
    at_least = cursor_seq(pushed.cursor) if pushed is not None and applied else 0
    if codec.media_type == JSON and not is_scoped(request.user):
        rows, cursor, more = await store.json_pulls.page(
            since, count, principal=request.user, at_least=at_least
        )
        note_changes(request.scope, pulled=len(rows))
        slices: Iterable[bytes] = _pull_slices(rows, cursor, more)
        if pushed is not None:
            slices = chain((b'{"push":' + codec.encode(pushed) + b',"pull":',), slices, (b"}",))
        if len(rows) <= _PULL_SLICE:
            # A page this small is cheaper whole (one gzip call, one write with its length)
            # than streamed: a gzip stream's state alone is about 256 KiB while it is open.
            return _encoded_reply(request, b"".join(slices), JSON, ack)
        gzip = _accepts_gzip(request) and sum(map(len, rows)) >= _GZIP_FROM
        body = _pull_body(slices, gzip)
        return Stream(body, media_type=JSON, headers=_GZIP if gzip else None, background=ack)
    changes, cursor, more, left, facts = await store.pulls.page(
        since, count, raw_json=codec.media_type.endswith("json"), principal=request.user, at_least=at_least
    )
    note_changes(request.scope, pulled=len(changes))
    page = PullResponse(changes=changes, cursor=cursor, more=more, left=left, facts=facts)
    return _reply(
        request, page if pushed is None else ExchangeResponse(push=pushed, pull=page), background=ack
    )


class SyncController(Controller):
    """The phones' hot paths. Each handler takes the one dependency ``store`` (the settings are
    its ``settings``): Litestar resolves two or more dependencies in a task group of their own,
    which cost 3-4% of the server's CPU in a storm of phones."""

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
        operation_class=_PUSH_BODY,
        responses={200: answer(PushResponse, "One result per change, in order"), **_PUSH_PROBLEMS},
    )
    async def push(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
    ) -> Response[bytes]:
        return _reply(request, await _pushed(request, store))

    @get(
        "/pull",
        operation_id="pull",
        summary="Changes after a cursor, in server order",
        operation_class=negotiated(),
        responses={200: answer(PullResponse, "The page after `since`"), **_PULL_PROBLEMS},
    )
    async def pull(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
        since: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> Response[bytes] | Stream:
        return await _page_reply(request, store, since, _pull_count(store, limit))

    @post(
        "/exchange",
        operation_id="exchange",
        status_code=200,
        summary="Push a batch, then pull the page after a cursor, in one request",
        description=(
            "Body: PushRequest, as for push; query: since and limit, as for pull. The push is "
            "applied first, so the page holds it. Response: ExchangeResponse, the push's answer "
            "and the page. See docs/protocol.md."
        ),
        operation_class=_PUSH_BODY,
        responses={
            200: answer(ExchangeResponse, "The push's answer and the page after `since`"),
            **_PUSH_PROBLEMS,
            **_PULL_PROBLEMS,
        },
    )
    async def exchange(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
        since: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> Response[bytes] | Stream:
        # The pull's own arguments are judged before anything is written: a 400 applies nothing.
        count = _pull_count(store, limit)
        cursor_seq(since)  # 400 bad_cursor for a cursor not of this server's form
        pushed = await _pushed(request, store)
        return await _page_reply(request, store, since, count, pushed)

    @get(
        "/snapshot",
        operation_id="snapshot",
        summary="Current heads of every record, paged, to start a new phone",
        description=(
            "Page with `cursor` from the previous page. After the last page, pull from "
            "`sync_cursor` (the same on every page)."
        ),
        operation_class=negotiated(),
        responses={
            200: answer(SnapshotResponse, "A page of records with their heads"),
            **problems(400, 401, 404, 429, 503),
        },
    )
    async def snapshot(
        self,
        request: Request[Principal, str, Any],
        store: NamedDependency[SyncStore],
        collection: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> Response[bytes]:
        settings = store.settings
        count = page_limit(limit, settings.default_snapshot_limit, settings.max_snapshot_limit)
        records, next_page, more, sync_cursor = await store.snapshots.page(
            collection, cursor, count, request.user
        )
        response = SnapshotResponse(records=records, cursor=next_page, more=more, sync_cursor=sync_cursor)
        return _reply(request, response)
