"""Change ids: made by whoever writes a change (a phone, the server's admin tools)."""

from __future__ import annotations

import os
import uuid

from sync.hlc import now_ms

__all__ = ["new_change_id", "uuid7"]


def new_change_id() -> str:
    """A UUIDv7: time-ordered, so ids of one phone sort roughly by creation, and a server's
    unique index on them grows at its right edge instead of rewriting a page per new id."""
    if hasattr(uuid, "uuid7"):
        return str(uuid.uuid7())
    return uuid7(now_ms(), os.urandom(10))


def uuid7(unix_ms: int, entropy: bytes) -> str:
    """The UUIDv7 (RFC 9562) of a Unix time in milliseconds and 10 bytes of entropy."""
    raw = bytearray(unix_ms.to_bytes(6, "big") + entropy)
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))
