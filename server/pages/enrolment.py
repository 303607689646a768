"""The admin page that links a phone: pick a worker, get a one-time enrolment code, shown as
text and as a QR code the field app scans (``POST /v1/enrol`` exchanges it for a token).

The same bounds as the admin API: an admin issues codes only for users they may manage, and
only from a password sign-in (the session cookie these pages use).
"""

from __future__ import annotations

from typing import Any

import segno
from litestar import Request, Router, get, post
from litestar.middleware.rate_limit import get_remote_address
from litestar.response import Template
from markupsafe import Markup

from server.access.accounts import AccountStore
from server.access.controller import manageable_user, visible_users
from server.errors import GridsyncError
from server.pages.rendering import (
    SignInNeeded,
    first_value,
    posted_form,
    render_page,
    sign_in_redirect,
    signed_in_admin,
)
from server.settings import Settings

__all__ = ["enrolment_pages"]


@get("/enrolment", name="enrolment", include_in_schema=False)
async def enrolment_page(request: Request[Any, Any, Any]) -> Template:
    principal = await signed_in_admin(request)
    accounts: AccountStore = request.app.state.accounts
    users = await visible_users(principal, accounts)
    return render_page(request, "enrolment", principal, users=users, issued=None, qr=None, error=None)


@post("/enrolment", name="enrolment-issue", include_in_schema=False)
async def enrolment_issue(request: Request[Any, Any, Any]) -> Template:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    accounts: AccountStore = request.app.state.accounts
    settings: Settings = request.app.state.settings
    users = await visible_users(principal, accounts)
    address = get_remote_address(request)
    try:
        user = await manageable_user(principal, first_value(form, "user_id") or "", accounts, address)
        issued = await accounts.issue_code(principal, user, settings.enrolment_code_ttl_s, address)
    except GridsyncError as error:
        return render_page(
            request,
            "enrolment",
            principal,
            status_code=error.status,
            users=users,
            issued=None,
            qr=None,
            error=error.message,
        )
    # The QR code is inline SVG: no image request, nothing the page's CSP must allow.
    qr = Markup(segno.make(issued.code, error="m").svg_inline(scale=6, title=issued.code))  # noqa: S704
    return render_page(request, "enrolment", principal, users=users, issued=issued, qr=qr, error=None)


def enrolment_pages() -> Router:
    return Router(
        path="/admin",
        route_handlers=[enrolment_page, enrolment_issue],
        exception_handlers={SignInNeeded: sign_in_redirect},
    )
