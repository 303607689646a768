"""Photos and files by content hash: ``PUT`` (idempotent, verified, size-limited) and ``GET``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from schemas.views import AttachmentStored
from server.access.principals import Principal
from server.access.tokens import SECURITY_REQUIREMENT
from server.errors import GridsyncError
from server.openapi import answer, bytes_body, problems
from server.registry.attachments import AttachmentStore, check_hash
from server.settings import Settings

__all__ = ["AttachmentsController"]


def _attachments(state: State) -> AttachmentStore:
    return AttachmentStore(state.store.engine)


def _too_large(limit: int) -> GridsyncError:
    return GridsyncError(
        413, "attachment_too_large", f"attachments are at most {limit} bytes; resize the photo"
    )


async def _read_limited(request: Request[Any, Any, Any], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


class AttachmentsController(Controller):
    path = "/v1/attachments"
    tags = ["attachments"]
    security = SECURITY_REQUIREMENT
    dependencies = {"attachments": Provide(_attachments, sync_to_thread=False)}

    @put(
        "/{sha256:str}",
        operation_id="putAttachment",
        status_code=200,
        summary="Upload a photo or file under the SHA-256 of its bytes",
        description="Idempotent: the same bytes again answer `created: false`. Body: the raw bytes.",
        request_max_body_size=None,  # the attachment limit is ours, checked while reading
        operation_class=bytes_body("The file's bytes; their SHA-256 must be the name in the path"),
        responses={
            200: answer(AttachmentStored, "Stored before: `created` is false"),
            201: answer(AttachmentStored, "Stored now: `created` is true"),
            **problems(400, 401, 413, 422, 429, 503, 507),
        },
    )
    async def put_attachment(
        self,
        sha256: FromPath[str],
        request: Request[Any, Any, Any],
        attachments: NamedDependency[AttachmentStore],
        settings: NamedDependency[Settings],
    ) -> Response[AttachmentStored]:
        check_hash(sha256)
        stored = await attachments.put(sha256, await _read_limited(request, settings.max_attachment_bytes))
        return Response(stored, status_code=201 if stored.created else 200)

    @get(
        "/{sha256:str}",
        operation_id="getAttachment",
        summary="Download an attachment",
        responses={
            200: answer(bytes, "The bytes, with the media type they were uploaded as", "*/*"),
            **problems(400, 401, 404, 429, 503),
        },
        description="Only for a caller who may read a record that names it (a hazard's or request's "
        "photos); 404 otherwise. A JPEG or PNG comes without its metadata (EXIF, XMP), so its bytes "
        "need not hash to its name.",
    )
    async def get_attachment(
        self,
        sha256: FromPath[str],
        request: Request[Principal, Any, Any],
        attachments: NamedDependency[AttachmentStore],
    ) -> Response[bytes]:
        content, media_type = await attachments.get(sha256, request.user)
        headers = {
            "cache-control": "private, max-age=31536000, immutable",
            "x-content-type-options": "nosniff",
        }
        return Response(content, media_type=media_type, headers=headers)
