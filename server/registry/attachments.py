"""Photos and files taken offline, stored once per SHA-256 in the database.

Content-addressed: the name is the hash of the bytes, so an upload is idempotent, a retry or a
second phone's upload of the same photo stores nothing new, and records reference photos by
hash. They live in the ``attachments`` table (not on disk) so a database backup carries them,
both backends serve them, and there is no directory to configure or keep in step.
"""

from __future__ import annotations

import hashlib
import re
import time

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.views import AttachmentStored
from server.db.tables import attachments
from server.errors import GridsyncError

__all__ = ["SHA256_PATTERN", "AttachmentStore", "check_hash", "sniff_media_type"]

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}\Z")
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def sniff_media_type(content: bytes) -> str:
    """The media type told by the first bytes (photos and PDFs), else octet-stream: what the
    phone claims is not trusted, so a stored file is never served as HTML."""
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in _MAGIC if content.startswith(magic)), "application/octet-stream")


def check_hash(sha256: str) -> None:
    if not SHA256_PATTERN.match(sha256):
        raise GridsyncError(400, "bad_hash", f"{sha256!r} is not a SHA-256 in lowercase hex (64 characters)")


class AttachmentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        table_insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = table_insert(attachments).on_conflict_do_nothing(index_elements=[attachments.c.sha256])

    async def put(self, sha256: str, content: bytes) -> AttachmentStored:
        """Store ``content`` under its hash; ``created`` is False when it was there already."""
        check_hash(sha256)
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha256:
            raise GridsyncError(
                422,
                "hash_mismatch",
                f"the bytes sent hash to {actual}, not {sha256}: the upload was damaged or the name is "
                "wrong; nothing was stored, upload it again",
            )
        media_type = sniff_media_type(content)
        async with self.engine.begin() as connection:
            result = await connection.execute(
                self._insert,
                {
                    "sha256": sha256,
                    "size": len(content),
                    "media_type": media_type,
                    "content": content,
                    "created_at_ms": time.time_ns() // 1_000_000,
                },
            )
        return AttachmentStored(
            sha256=sha256, size=len(content), media_type=media_type, created=bool(result.rowcount)
        )

    async def get(self, sha256: str) -> tuple[bytes, str]:
        check_hash(sha256)
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(attachments.c.content, attachments.c.media_type).where(
                        attachments.c.sha256 == sha256
                    )
                )
            ).one_or_none()
        if row is None:
            raise GridsyncError(404, "not_found", f"no attachment {sha256}: upload it with PUT first")
        return bytes(row.content), str(row.media_type)
