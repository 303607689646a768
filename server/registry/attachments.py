"""Photos and files taken offline, stored once per SHA-256 in the database.

Content-addressed: the name is the hash of the bytes the phone took, so an upload is
idempotent, a retry or a second phone's upload of the same photo stores nothing new, and records
reference photos by hash. They live in the ``attachments`` table (not on disk) so a database
backup carries them, both backends serve them, and there is no directory to configure or keep in
step.

A JPEG or PNG is stored without its metadata (EXIF, with the place it was taken; XMP; IPTC;
comments and text chunks): the name stays the hash of what the phone sent, which it may have
computed offline, and the bytes stored and served are the stripped copy. The pixels are not
touched (no re-encoding). A photo is served only to a caller who may read a record that names it
(``server/registry/attachment_refs.py``); to anyone else it answers as if it did not exist.
"""

from __future__ import annotations

import hashlib
import re
import time

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.views import AttachmentStored
from server.access.policy import reads_filter
from server.access.principals import Principal
from server.db.tables import attachment_refs, attachments, records
from server.errors import GridsyncError

__all__ = ["SHA256_PATTERN", "AttachmentStore", "check_hash", "sniff_media_type", "strip_metadata"]

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


_JPEG_SOI = b"\xff\xd8"
# APP1 (EXIF, XMP), APP12, APP13 (IPTC) and comments: metadata only. APP0 (JFIF), APP2 (the
# colour profile) and APP14 (Adobe's colour transform) are kept: they change how pixels show.
_JPEG_DROPPED = frozenset({0xE1, 0xEC, 0xED, 0xFE})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# eXIf and the text chunks (XMP travels in iTXt): metadata only.
_PNG_DROPPED = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt"})


def _damaged(kind: str) -> GridsyncError:
    return GridsyncError(
        422,
        "damaged_image",
        f"this {kind} is damaged (its structure runs past its end or is not {kind}): nothing was "
        "stored; take or export the photo again",
    )


def _strip_jpeg(content: bytes) -> bytes:
    """The JPEG without its metadata segments; the image data after the scan header as sent."""
    kept = bytearray(_JPEG_SOI)
    at = 2
    while at + 2 <= len(content):
        if content[at] != 0xFF:
            raise _damaged("JPEG")
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            kept += content[at:]
            return bytes(kept)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            kept += content[at : at + 2]
            at += 2
            continue
        if at + 4 > len(content):
            raise _damaged("JPEG")
        end = at + 2 + int.from_bytes(content[at + 2 : at + 4], "big")
        if end > len(content) or end < at + 4:
            raise _damaged("JPEG")
        if marker not in _JPEG_DROPPED:
            kept += content[at:end]
        at = end
    raise _damaged("JPEG")


def _strip_png(content: bytes) -> bytes:
    """The PNG without its metadata chunks."""
    kept = bytearray(_PNG_SIGNATURE)
    at = len(_PNG_SIGNATURE)
    while at + 12 <= len(content):
        length = int.from_bytes(content[at : at + 4], "big")
        kind = content[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(content):
            raise _damaged("PNG")
        if kind not in _PNG_DROPPED:
            kept += content[at:end]
        at = end
        if kind == b"IEND":
            return bytes(kept)
    raise _damaged("PNG")


def strip_metadata(content: bytes, media_type: str) -> bytes:
    """A JPEG or PNG without the metadata that may say where and by whom it was taken; other
    files as they are."""
    if media_type == "image/jpeg":
        return _strip_jpeg(content)
    if media_type == "image/png":
        return _strip_png(content)
    return content


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
        content = strip_metadata(content, media_type)
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

    async def get(self, sha256: str, principal: Principal | None = None) -> tuple[bytes, str]:
        """The stored bytes and media type, when a record ``principal`` may read names them;
        otherwise 404, the same as for a hash never uploaded."""
        check_hash(sha256)
        same = and_(
            records.c.collection == attachment_refs.c.collection,
            records.c.record_id == attachment_refs.c.record_id,
        )
        readable = (
            select(attachment_refs.c.sha256)
            .select_from(attachment_refs.join(records, same))
            .where(attachment_refs.c.sha256 == sha256, reads_filter(principal))
            .limit(1)
        )
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(attachments.c.content, attachments.c.media_type).where(
                        attachments.c.sha256 == sha256, readable.exists()
                    )
                )
            ).one_or_none()
        if row is None:
            raise GridsyncError(404, "not_found", f"no attachment {sha256}: upload it with PUT first")
        return bytes(row.content), str(row.media_type)
