"""Residents rate for themselves: the last step of the request loop (群众评单) is the resident's.

When a request is done, the office asks for a one-time link (and its QR code) to hand the
resident. The link opens a small page, Chinese first, with no account: a rating of 1-5 and a
comment. Only the token's SHA-256 is stored; a link works once and until it expires. The rating
is written through the store's push like any change (replica ``resident-rating``), naming the
status heads it saw, so a rating typed meanwhile on an offline phone (``rated_on_behalf``) is
kept beside it as a conflict, not lost.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import secrets
import time
import uuid

import segno
from sqlalchemy import select, update

from schemas.protocol import Change, SetChange
from server.access.principals import Principal
from server.db.tables import rating_links, records
from server.errors import GridsyncError
from server.registry.lists import ScopeFilter
from server.sync.store import SyncStore
from sync.hlc import format_hlc
from sync.merge import scalar_value, state_codec

__all__ = ["RATING_REPLICA", "RatingLinks", "token_hash"]

RATING_REPLICA = "resident-rating"
_RATABLE = frozenset({"done"})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def qr_svg(url: str) -> str:
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return buffer.getvalue().decode()


class RatingLinks:
    def __init__(self, store: SyncStore, ttl_s: int = 7 * 86_400) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def _state(
        self, request_id: str, principal: Principal | None
    ) -> tuple[dict[str, object], list[str]]:
        """The request's fields a rating needs, and the ids of its status heads."""
        where = ScopeFilter(principal=principal)
        query = where.apply(
            select(records.c.state).where(
                records.c.collection == "requests", records.c.record_id == request_id
            )
        )
        async with self.store.engine.connect() as connection:
            blob = (await connection.execute(query)).scalar_one_or_none()
        if blob is None:
            raise GridsyncError(404, "not_found", f"no request {request_id!r}")
        state = state_codec.decode(blob)
        heads = sorted(i for i, h in state.heads.items() if h.field == "status")
        return {"status": scalar_value(state, "status"), "title": scalar_value(state, "title")}, heads

    async def issue(self, request_id: str, principal: Principal, base_url: str) -> tuple[str, int, str]:
        """A new link for a done request: (url, expires_at_ms, QR code as SVG)."""
        fields, _ = await self._state(request_id, principal)
        if fields["status"] not in _RATABLE:
            raise GridsyncError(
                409,
                "not_done",
                f"request {request_id!r} is {fields['status']!r}: a link is for a done request",
            )
        token = secrets.token_urlsafe(24)
        now = int(time.time() * 1000)
        expires = now + self.ttl_s * 1000
        async with self.store.engine.begin() as connection:
            await connection.execute(
                rating_links.insert().values(
                    token_hash=token_hash(token),
                    request_id=request_id,
                    created_by=principal.user_id,
                    created_at_ms=now,
                    expires_at_ms=expires,
                )
            )
        url = f"{base_url.rstrip('/')}/r/{token}"
        return url, expires, qr_svg(url)

    async def open(self, token: str) -> tuple[str, str | None]:
        """The request a live link rates, and its title; 404 for an unknown, used or expired one."""
        async with self.store.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(rating_links).where(rating_links.c.token_hash == token_hash(token))
                )
            ).first()
        if row is None or row.used_at_ms is not None or row.expires_at_ms < int(time.time() * 1000):
            raise GridsyncError(404, "link_not_valid", "this rating link has been used or has expired")
        fields, _ = await self._state(row.request_id, None)
        title = fields["title"]
        return row.request_id, title if isinstance(title, str) else None

    async def rate(self, token: str, satisfaction: int, comment: str) -> None:
        """Spend the link (once) and write the resident's rating."""
        if not 1 <= satisfaction <= 5 or len(comment) > 2_000:
            raise GridsyncError(
                400, "invalid_value", "a rating is 1 to 5, and a comment at most 2000 characters"
            )
        request_id, _ = await self.open(token)
        now = int(time.time() * 1000)
        async with self.store.engine.begin() as connection:
            spent = await connection.execute(
                update(rating_links)
                .where(rating_links.c.token_hash == token_hash(token), rating_links.c.used_at_ms.is_(None))
                .values(used_at_ms=now)
            )
        if spent.rowcount != 1:
            raise GridsyncError(404, "link_not_valid", "this rating link has been used or has expired")
        fields, heads = await self._state(request_id, None)
        at = datetime.datetime.fromtimestamp(now / 1000, tz=datetime.UTC).isoformat()
        values: list[tuple[str, object, tuple[str, ...]]] = [
            ("satisfaction", satisfaction, ()),
            ("rated_at", at, ()),
            ("rated_on_behalf", False, ()),
        ]
        if comment.strip():
            values.append(("comment", comment.strip(), ()))
        if fields["status"] == "done":
            values.append(("status", "rated", tuple(heads)))
        changes: list[Change] = [
            SetChange(
                id=str(uuid.uuid4()),
                collection="requests",
                record_id=request_id,
                field=name,
                value=value,
                hlc=format_hlc(now, index, RATING_REPLICA),
                pred=pred,
            )
            for index, (name, value, pred) in enumerate(values)
        ]
        await self.store.writer.push(None, RATING_REPLICA, changes)
