"""The resident's rating: the office's ``POST /v1/requests/{id}/rating-link`` and the small
page ``/r/{token}`` the link opens (no account; Chinese first, English below)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Template

from server.access.principals import Principal, requires_admin
from server.access.tokens import SECURITY_REQUIREMENT
from server.errors import GridsyncError
from server.openapi import problems
from server.registry.ratings import RatingLinks
from server.sync.store import SyncStore

__all__ = ["RatingLinkController", "rating_page", "rating_submit"]


class RatingLink(msgspec.Struct, kw_only=True):
    """A one-time link for the resident, shown once: the URL and its QR code (SVG)."""

    request_id: str
    url: str
    expires_at_ms: int
    qr_svg: str


class RatingForm(msgspec.Struct, kw_only=True):
    satisfaction: int = 0
    comment: str = ""


class RatingLinkController(Controller):
    path = "/v1/requests"
    tags = ["registry"]
    guards = [requires_admin]
    security = SECURITY_REQUIREMENT

    @post(
        "/{request_id:str}/rating-link",
        operation_id="issueRatingLink",
        status_code=201,
        responses=problems(401, 403, 404, 409, 503),
    )
    async def issue(
        self,
        request: Request[Principal, str, Any],
        request_id: FromPath[str],
        store: NamedDependency[SyncStore],
    ) -> RatingLink:
        """A one-time link (and QR code) the office hands the resident when a request is done:
        409 ``not_done`` before that. The link works once and for seven days."""
        url, expires, svg = await RatingLinks(store).issue(request_id, request.user, str(request.base_url))
        return RatingLink(request_id=request_id, url=url, expires_at_ms=expires, qr_svg=svg)


def _page(name: str, status: int = 200, **context: Any) -> Template:
    return Template(template_name=f"rate/{name}.html", context=context, status_code=status)


@get("/r/{token:str}", exclude_from_auth=True, include_in_schema=False, cache=False)
async def rating_page(token: FromPath[str], store: NamedDependency[SyncStore]) -> Template:
    """The resident's page: rate 1-5 and comment."""
    try:
        _, title = await RatingLinks(store).open(token)
    except GridsyncError:
        return _page("gone", 404)
    return _page("form", title=title, token=token)


@post("/r/{token:str}", exclude_from_auth=True, include_in_schema=False, status_code=200)
async def rating_submit(
    token: FromPath[str],
    store: NamedDependency[SyncStore],
    data: Annotated[RatingForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    try:
        await RatingLinks(store).rate(token, data.satisfaction, data.comment)
    except GridsyncError as error:
        if error.code == "invalid_value":
            _, title = await RatingLinks(store).open(token)
            return _page("form", 400, title=title, token=token, error=True)
        return _page("gone", 404)
    return _page("thanks")
