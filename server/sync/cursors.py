"""The sync cursor: where a replica stands in the change log, as the server hands it out."""

from __future__ import annotations

__all__ = ["sync_cursor"]


def sync_cursor(epoch: str, seq: int, fingerprint: str = "") -> str:
    """``epoch.seq``, with the fingerprint of the caller's scope when its reads are scoped."""
    return f"{epoch}.{seq}.{fingerprint}" if fingerprint else f"{epoch}.{seq}"
