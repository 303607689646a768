"""Content negotiation at the edge: JSON or MessagePack in, JSON or MessagePack out."""

from __future__ import annotations

from typing import Any

from litestar import Request

from schemas.codec import JSON, MSGPACK, WireCodec, codec_for
from server.errors import problem

__all__ = ["request_codec", "response_codec"]


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
