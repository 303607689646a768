"""The sync cursor: where a replica stands in the change log, as the server hands it out and
reads it back (``epoch.seq``, then the fingerprint of a scoped caller's scope)."""

from __future__ import annotations

from server.errors import GridsyncError

__all__ = ["MAX_SEQ", "cursor_epoch", "cursor_seq", "sync_cursor"]

# The greatest seq either database takes: a cursor naming more is judged (409), not queried.
MAX_SEQ = 2**63 - 1


def sync_cursor(epoch: str, seq: int, fingerprint: str = "") -> str:
    """``epoch.seq``, with the fingerprint of the caller's scope when its reads are scoped."""
    return f"{epoch}.{seq}.{fingerprint}" if fingerprint else f"{epoch}.{seq}"


def cursor_epoch(cursor: str | None) -> str | None:
    """The epoch a cursor names (None for none), read without judging it."""
    return cursor.partition(".")[0] if cursor else None


def cursor_seq(cursor: str | None) -> int:
    """The seq a pull cursor names (0 for none), read without judging it; a cursor that is not
    of this server's form is a 400 (an exchange calls it before it writes its push: whether the
    cursor is still valid is judged with the page, ``server.sync.position.judge_cursor``)."""
    if not cursor:
        return 0
    raw_seq = cursor.partition(".")[2].partition(".")[0]
    # isascii: str.isdigit also accepts digits that int() refuses (superscripts).
    if not (raw_seq.isascii() and raw_seq.isdigit()):
        raise GridsyncError(400, "bad_cursor", f"cursor {cursor!r} was not issued by this server")
    return int(raw_seq)
