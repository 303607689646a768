"""The admin web pages under ``/admin``: sign-in, the conflict inbox, one conflict side by side,
resolution by rule, and the dashboard. Server-rendered Jinja templates, no build step, no script
but the sign-in form's.

The pages sign in with the ``gridsync_session`` cookie set by ``POST /v1/admin/login``
(HttpOnly, SameSite=Strict). Every form that changes something also carries a CSRF token
derived from the session (``server.pages.rendering.csrf_token``) and is refused without it;
see docs/admin.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath
from litestar.response import Redirect, Template

from schemas.protocol import SetChange
from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.access.tokens import session_cookie
from server.errors import GridsyncError
from server.inbox.service import (
    BulkExpect,
    BulkRequest,
    ConflictDetail,
    ConflictFilter,
    ConflictInbox,
    FieldChoice,
    Resolution,
    audit_bulk,
    audit_resolution,
)
from server.inbox.tracking import KINDS
from server.pages.rendering import (
    SignInNeeded,
    first_value,
    posted_form,
    render_page,
    sign_in_redirect,
    signed_in_admin,
)
from server.registry.lists import Registry, ScopeFilter
from server.registry.reports import Reports
from sync.merge import DELETE_CONFLICT_KEY
from sync.validate import validate_change

__all__ = ["admin_pages"]

_MERGED = "__merged__"


def _filter_from(query: Mapping[str, Any], status: str = "open") -> ConflictFilter:
    def value(name: str) -> str | None:
        raw = query.get(name)
        return str(raw) if raw else None

    kind = value("kind")
    return ConflictFilter(
        status="resolved" if value("status") == "resolved" else status,  # type: ignore[arg-type]
        community=value("community"),
        grid=value("grid"),
        collection=value("collection"),
        kind=kind if kind in KINDS else None,
        field=value("field"),
    )


def _typed(inbox: ConflictInbox, collection: str, record_id: str, field: str, text: str) -> Any:
    """A value typed in a form: as text when the field takes text, else as JSON (a number...)."""
    probe = SetChange(
        id="00000000-0000-4000-8000-000000000000",
        collection=collection,
        record_id=record_id,
        hlc="000000000000001-000000-admin",
        field=field,
        value=text,
    )
    if validate_change(probe, inbox.collections) is None:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------- pages


@get("/", name="admin-home", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/admin/conflicts")


@get("/login", name="admin-login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Template:
    next_url = request.query_params.get("next") or "/admin/conflicts"
    if not next_url.startswith("/admin"):
        next_url = "/admin/conflicts"
    return render_page(request, "login", None, next_url=next_url)


@post("/logout", name="admin-logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], accounts: NamedDependency[AccountStore]) -> Redirect:
    principal = await signed_in_admin(request)
    await posted_form(request)
    if principal.credential_kind == "session" and principal.device_id:
        await accounts.revoke(principal.device_id)
    return Redirect("/admin/login", cookies=[session_cookie(request, "")])


@get("/conflicts", name="admin-inbox", include_in_schema=False)
async def inbox_page(request: Request[Any, Any, Any], inbox: NamedDependency[ConflictInbox]) -> Template:
    principal = await signed_in_admin(request)
    where = _filter_from(request.query_params)
    cursor = request.query_params.get("cursor") or None
    try:
        page = await inbox.search(principal, where, cursor, 50)
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    base = {k: v for k, v in msgspec.to_builtins(where).items() if v}

    def link(**change: Any) -> str:
        query = {**base, **change}
        return "/admin/conflicts?" + urlencode({k: v for k, v in query.items() if v})

    return render_page(request, "inbox", principal, page=page, where=where, link=link)


@get("/conflicts/{conflict_id:str}", name="admin-conflict", include_in_schema=False)
async def conflict_page(
    request: Request[Any, Any, Any], conflict_id: FromPath[str], inbox: NamedDependency[ConflictInbox]
) -> Template:
    principal = await signed_in_admin(request)
    try:
        detail = await inbox.detail(principal, conflict_id)
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    done = request.query_params.get("done") == "1"
    return render_page(request, "conflict", principal, detail=detail, done=done, error=None)


def _resolution(inbox: ConflictInbox, detail: ConflictDetail, form: Mapping[str, list[str]]) -> Resolution:
    """Turn the conflict form into a resolution: a clicked "keep this" or "use merged value"
    button decides its field; the radio buttons decide the others."""
    summary = detail.conflict
    record = first_value(form, "record")
    choices: dict[str, FieldChoice] = {}
    clicked_keep = first_value(form, "keep")
    clicked_merged = first_value(form, "use_merged")
    for field in detail.fields:
        name = field.field
        if name == DELETE_CONFLICT_KEY:
            continue
        pick = first_value(form, f"pick.{name}")
        if clicked_keep and clicked_keep.startswith(f"{name}:"):
            pick = clicked_keep.split(":", 1)[1]
        if clicked_merged == name:
            pick = _MERGED
        if pick == _MERGED:
            text = first_value(form, f"merged.{name}") or ""
            choices[name] = FieldChoice(
                value=_typed(inbox, summary.collection, summary.record_id, name, text)
            )
        elif pick:
            choices[name] = FieldChoice(keep=pick)
    if record == "delete":
        choices = {}
    seen = [head for head in (first_value(form, "seen") or "").split(",") if head]
    return Resolution(
        seen_heads=seen,
        fields=choices,
        record="keep" if record == "keep" else "delete" if record == "delete" else None,
    )


@post("/conflicts/{conflict_id:str}/resolve", name="admin-resolve", include_in_schema=False)
async def resolve_form(
    request: Request[Any, Any, Any],
    conflict_id: FromPath[str],
    inbox: NamedDependency[ConflictInbox],
    accounts: NamedDependency[AccountStore],
) -> Response[Any]:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    try:
        detail = await inbox.detail(principal, conflict_id)
        resolution = _resolution(inbox, detail, form)
        resolved = await inbox.resolve(principal, conflict_id, resolution)
    except GridsyncError as error:
        try:
            current = await inbox.detail(principal, conflict_id)
        except GridsyncError:
            return render_page(request, "error", principal, status_code=error.status, message=error.message)
        return render_page(
            request, "conflict", principal, status_code=error.status, detail=current, done=False, error=error
        )
    await audit_resolution(accounts, principal, get_remote_address(request), resolved, resolution)
    return Redirect(f"/admin/conflicts/{conflict_id}?done=1", status_code=303)


def _bulk_request(
    field: str, rule: str, where: ConflictFilter, expect: list[BulkExpect] | None
) -> BulkRequest:
    """Build the request as the API decodes it, so a form is checked like a JSON body."""
    body = {"field": field, "rule": rule, "filter": msgspec.to_builtins(where), "expect": expect}
    try:
        return msgspec.convert(body, BulkRequest)
    except msgspec.ValidationError as error:
        raise GridsyncError(400, "bad_rule", str(error)) from None


def _bulk_view(
    request: Request[Any, Any, Any],
    principal: Principal,
    field: str,
    rule: str,
    where: ConflictFilter,
    **shown: Any,
) -> Template:
    values = {"preview": None, "result": None, "error": None, **shown}
    return render_page(request, "bulk", principal, field=field, rule=rule, where=where, **values)


@get("/bulk", name="admin-bulk", include_in_schema=False)
async def bulk_page(request: Request[Any, Any, Any], inbox: NamedDependency[ConflictInbox]) -> Template:
    """Choose a field, a rule and a filter; with a field given, show the preview."""
    principal = await signed_in_admin(request)
    field = request.query_params.get("field") or ""
    rule = request.query_params.get("rule") or "newest"
    where = _filter_from(request.query_params)
    if not field:
        return _bulk_view(request, principal, field, rule, where)
    try:
        preview = await inbox.bulk(principal, _bulk_request(field, rule, where, None))
    except GridsyncError as error:
        return _bulk_view(request, principal, field, rule, where, error=error.message)
    return _bulk_view(request, principal, field, rule, where, preview=preview)


@post("/bulk", name="admin-bulk-apply", include_in_schema=False)
async def bulk_apply(
    request: Request[Any, Any, Any],
    inbox: NamedDependency[ConflictInbox],
    accounts: NamedDependency[AccountStore],
) -> Template:
    """Apply the previewed items (sent back as ``expect``); moved ones come back stale."""
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    field = first_value(form, "field") or ""
    rule = first_value(form, "rule") or "newest"
    where = _filter_from({k: v[0] for k, v in form.items()})
    expect = [
        BulkExpect(conflict_id=item.split("=", 1)[0], heads=item.split("=", 1)[1].split(","))
        for item in form.get("expect", [])
        if "=" in item
    ]
    try:
        bulk = _bulk_request(field, rule, where, expect)
        result = await inbox.bulk(principal, bulk)
    except GridsyncError as error:
        return _bulk_view(request, principal, field, rule, where, error=error.message)
    await audit_bulk(accounts, principal, get_remote_address(request), bulk, result)
    return _bulk_view(request, principal, field, rule, where, result=result)


@get("/dashboard", name="admin-dashboard", include_in_schema=False)
async def dashboard_page(request: Request[Any, Any, Any], inbox: NamedDependency[ConflictInbox]) -> Template:
    """The community office's figures (``GET /v1/reports/summary``) beside the inbox's."""
    principal = await signed_in_admin(request)
    community = request.query_params.get("community") or None
    reports = Reports(Registry(inbox.store), request.app.state.settings)
    where = ScopeFilter(community, principal=principal)
    summary = await reports.summary(where)
    overspends = (await reports.flags(where, "overspend")).flags
    few_served = (await reports.flags(where, "few_served")).flags
    counts = (await inbox.search(principal, ConflictFilter(community=community), None, 1)).counts
    return render_page(
        request,
        "dashboard",
        principal,
        counts=counts,
        summary=summary,
        overspends=overspends,
        few_served=few_served,
        community=community,
    )


def admin_pages() -> Router:
    return Router(
        path="/admin",
        route_handlers=[
            home,
            login_page,
            logout,
            inbox_page,
            conflict_page,
            resolve_form,
            bulk_page,
            bulk_apply,
            dashboard_page,
        ],
        exception_handlers={SignInNeeded: sign_in_redirect},
        include_in_schema=False,
    )
