"""Encoding and decoding of protocol messages, JSON or MessagePack, with decoders built once."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.protocol import Change, PushEnvelope, PushRequest

__all__ = ["JSON", "MSGPACK", "MalformedChange", "MediaType", "WireCodec", "codec_for"]

JSON = "application/json"
MSGPACK = "application/msgpack"
MediaType = Literal["application/json", "application/msgpack"]
# msgspec decodes nested values by recursion: a value nested deeper than the interpreter's
# stack allows is malformed input like any other.
_TOO_DEEP = "a value is nested too deeply"


class MalformedChange(msgspec.Struct):
    """A change in a batch that did not decode; it is rejected on its own."""

    id: str | None
    message: str


class WireCodec:
    """Decoders for one media type. Decoding a batch tries the whole batch at once (the fast,
    common path) and falls back to one change at a time only when something in it is malformed."""

    def __init__(self, media_type: MediaType) -> None:
        self.media_type = media_type
        module: Any = msgspec.json if media_type == JSON else msgspec.msgpack
        self._module = module
        self._encoder = module.Encoder()
        self._push = module.Decoder(PushRequest)
        self._envelope = module.Decoder(PushEnvelope)
        self._change = module.Decoder(Change)
        self._loose = module.Decoder()

    def encode(self, message: Any) -> bytes:
        return bytes(self._encoder.encode(message))

    def decode(self, body: bytes, type_: Any) -> Any:
        try:
            return self._module.decode(body, type=type_)
        except RecursionError:
            raise msgspec.DecodeError(_TOO_DEEP) from None

    def decode_push(self, body: bytes) -> tuple[str, int, list[Change | MalformedChange]]:
        """Return (replica_id, protocol, changes); raises msgspec.DecodeError when the envelope
        itself is malformed."""
        try:
            request = self._push.decode(body)
            return request.replica_id, request.protocol, list(request.changes)
        except (msgspec.DecodeError, RecursionError):
            pass
        try:
            envelope = self._envelope.decode(body)
        except RecursionError:
            raise msgspec.DecodeError(_TOO_DEEP) from None
        return envelope.replica_id, envelope.protocol, [self._decode_one(raw) for raw in envelope.changes]

    def _decode_one(self, raw: msgspec.Raw) -> Change | MalformedChange:
        try:
            change: Change = self._change.decode(raw)
            return change
        except msgspec.DecodeError as error:
            return MalformedChange(self._id_of(raw), f"malformed change: {error}")
        except RecursionError:
            return MalformedChange(self._id_of(raw), f"malformed change: {_TOO_DEEP}")

    def _id_of(self, raw: msgspec.Raw) -> str | None:
        try:
            loose = self._loose.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return None
        change_id = loose.get("id") if isinstance(loose, dict) else None
        return change_id if isinstance(change_id, str) else None


_CODECS: dict[str, WireCodec] = {
    JSON: WireCodec("application/json"),
    MSGPACK: WireCodec("application/msgpack"),
}


def codec_for(media_type: str) -> WireCodec:
    """The codec for a Content-Type or Accept value; JSON unless MessagePack is asked for."""
    if MSGPACK in media_type or "application/x-msgpack" in media_type:
        return _CODECS[MSGPACK]
    return _CODECS[JSON]
