"""Content negotiation at the edge: JSON or MessagePack in, JSON or MessagePack out; and the
request class whose body decoding refuses values nested too deeply with a 400."""

from __future__ import annotations

from typing import Any

from litestar import Request

from schemas.codec import JSON, MSGPACK, WireCodec, codec_for
from server.errors import problem

__all__ = ["BoundedRequest", "request_codec", "response_codec"]

_TOO_DEEP = "the body nests values too deeply to decode; send at most a few hundred levels"


class BoundedRequest(Request[Any, Any, Any]):
    """Litestar's request, with a body nested deeper than the decoder's recursion allows (msgspec
    raises RecursionError) answered 400 ``malformed_body`` like any other malformed body."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise problem(400, "malformed_body", _TOO_DEEP) from None

    async def msgpack(self) -> Any:
        try:
            return await super().msgpack()
        except RecursionError:
            raise problem(400, "malformed_body", _TOO_DEEP) from None


def request_codec(request: Request[Any, Any, Any]) -> WireCodec:
    content_type = request.headers.get("content-type", JSON)
    if "json" not in content_type and "msgpack" not in content_type:
        raise problem(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not supported; send {JSON} or {MSGPACK}",
        )
    return codec_for(content_type)


def response_codec(request: Request[Any, Any, Any]) -> WireCodec:
    return codec_for(request.headers.get("accept", JSON))
