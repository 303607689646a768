"""What every paged or batched query shares: the page-cursor codec and the chunks of an IN list."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import msgspec

from server.errors import GridsyncError

__all__ = ["SQL_PARAMETERS_PER_CHUNK", "chunks", "decode_page_cursor", "encode_page_cursor"]

_T = TypeVar("_T")

# SQLite allows 999 bound parameters a statement by default; an IN list stays below it.
SQL_PARAMETERS_PER_CHUNK = 900


def chunks(items: Sequence[_T], size: int = SQL_PARAMETERS_PER_CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``, for IN lists within the database's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def encode_page_cursor(position: Any) -> str:
    """An opaque cursor for a page: the position after it as URL-safe base64 of JSON."""
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode().rstrip("=")


def decode_page_cursor(cursor: str, position_type: type[_T], what: str) -> _T:
    """The position a cursor of ``encode_page_cursor`` holds; 400 ``bad_cursor`` for any other text."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        return msgspec.json.decode(raw, type=position_type)
    except (ValueError, msgspec.DecodeError):
        raise GridsyncError(400, "bad_cursor", f"this {what} cursor was not issued by this server") from None
