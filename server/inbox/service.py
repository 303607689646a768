"""The conflict inbox's public surface: the service the controllers and pages call, its messages.

Reads live in ``server.inbox.query``, resolutions in ``server.inbox.resolve``, the messages in
``schemas.inbox``; conflicts are recorded by the push (``server.inbox.tracking``).
"""

from __future__ import annotations

from schemas.inbox import (
    BulkExpect,
    BulkItem,
    BulkRequest,
    BulkResult,
    ConflictDetail,
    ConflictFilter,
    ConflictPage,
    ConflictSummary,
    FieldChoice,
    Resolution,
)
from server.inbox.resolve import ConflictInbox, audit_bulk, audit_resolution

__all__ = [
    "BulkExpect",
    "BulkItem",
    "BulkRequest",
    "BulkResult",
    "ConflictDetail",
    "ConflictFilter",
    "ConflictInbox",
    "ConflictPage",
    "ConflictSummary",
    "FieldChoice",
    "Resolution",
    "audit_bulk",
    "audit_resolution",
]
