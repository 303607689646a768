"""The admin web pages under ``/admin``: sign-in, the conflict inbox, one conflict side by side,
resolution by rule, and the dashboard. Server-rendered Jinja templates, no build step, no script
but the sign-in form's.

The pages sign in with the ``gridsync_session`` cookie set by ``POST /v1/admin/login``
(HttpOnly, SameSite=Strict). Every form that changes something also carries a CSRF token
derived from the session (``csrf_token``) and is refused without it; see docs/admin.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape

from schemas.protocol import SetChange
from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.access.tokens import SESSION_COOKIE, session_cookie
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
from server.pages.i18n import LANG_COOKIE, LANGUAGES, choose_language, translator
from server.registry.lists import Registry, ScopeFilter
from server.registry.reports import Reports
from sync.merge import DELETE_CONFLICT_KEY
from sync.validate import validate_change

__all__ = ["STATIC", "admin_pages", "csrf_token", "template_config"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
DESK_TEMPLATES = Path(__file__).parents[1] / "desk" / "templates"
_MERGED = "__merged__"


class _SignInNeeded(Exception):  # noqa: N818 - a redirect, not an error
    pass


def csrf_token(session_token: str) -> str:
    """The token every page form carries: bound to the session, so another site cannot know it."""
    return hmac.new(session_token.encode(), b"gridsync-admin-form", hashlib.sha256).hexdigest()[:40]


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _marked(value: Any, others: list[Any]) -> Markup:
    """The value with the part that differs from the other heads' values in ``<mark>``."""
    text = _show(value)
    rest = [_show(o) for o in others if _show(o) != text]
    if not rest:
        return Markup(escape(text))  # noqa: S704 - escaped just before
    prefix = min(len(_common_prefix(text, o)) for o in rest)
    suffix = min(len(_common_prefix(text[prefix:][::-1], o[prefix:][::-1])) for o in rest)
    middle_end = len(text) - suffix
    return Markup(  # noqa: S704 - every part is escaped
        f"{escape(text[:prefix])}<mark>{escape(text[prefix:middle_end])}</mark>{escape(text[middle_end:])}"
    )


def _common_prefix(a: str, b: str) -> str:
    size = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        size += 1
    return a[:size]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(loader=FileSystemLoader([TEMPLATES, DESK_TEMPLATES]), autoescape=True)
    environment.filters["when"] = _when
    environment.filters["show"] = _show
    environment.globals["marked"] = _marked
    environment.globals["KINDS"] = KINDS
    environment.globals["DELETE_KEY"] = DELETE_CONFLICT_KEY
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


# ---------------------------------------------------------------------------- request helpers


def _lang(request: Request[Any, Any, Any]) -> str:
    return choose_language(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def _lang_cookie(request: Request[Any, Any, Any], lang: str) -> list[Cookie]:
    if request.query_params.get("lang") in LANGUAGES:
        return [Cookie(key=LANG_COOKIE, value=lang, samesite="strict", path="/", max_age=365 * 86400)]
    return []


async def _principal(request: Request[Any, Any, Any]) -> Principal:
    token = request.cookies.get(SESSION_COOKIE)
    accounts: AccountStore = request.app.state.accounts
    principal = await accounts.authenticate(token) if token else None
    if principal is None:
        raise _SignInNeeded
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail="admins only")
    return principal


def _context(request: Request[Any, Any, Any], principal: Principal | None, **values: Any) -> dict[str, Any]:
    lang = _lang(request)
    token = request.cookies.get(SESSION_COOKIE)
    switch = {**dict(request.query_params), "lang": "en" if lang == "zh" else "zh"}
    return {
        "t": translator(lang),
        "lang": lang,
        "user": principal,
        "csrf": csrf_token(token) if token else "",
        "switch_url": f"{request.url.path}?{urlencode(switch)}",
        "path": request.url.path,
        **values,
    }


def _page(
    request: Request[Any, Any, Any],
    name: str,
    principal: Principal | None,
    status_code: int = 200,
    **values: Any,
) -> Template:
    return Template(
        template_name=f"admin/{name}.html",
        context=_context(request, principal, **values),
        status_code=status_code,
        cookies=_lang_cookie(request, _lang(request)),
    )


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """The posted form, after the CSRF check: the token must match the session, and a browser's
    Origin (when sent) must be this server."""
    form = await request.form()
    values: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        values.setdefault(key, []).append(str(value))
    token = request.cookies.get(SESSION_COOKIE) or ""
    sent = values.get("csrf", [""])[0]
    origin = request.headers.get("origin")
    expected_origin = f"{request.url.scheme}://{request.url.netloc}"
    if (
        not token
        or not hmac.compare_digest(sent, csrf_token(token))
        or (origin and origin != expected_origin)
    ):
        raise HTTPException(
            status_code=403, detail="this form expired or came from another site; reload the page"
        )
    return values


def _first(form: Mapping[str, list[str]], key: str) -> str | None:
    found = form.get(key)
    return found[0] if found else None


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
    return _page(request, "login", None, next_url=next_url)


@post("/logout", name="admin-logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], accounts: NamedDependency[AccountStore]) -> Redirect:
    principal = await _principal(request)
    await _form(request)
    if principal.credential_kind == "session" and principal.device_id:
        await accounts.revoke(principal.device_id)
    return Redirect("/admin/login", cookies=[session_cookie(request, "")])


@get("/conflicts", name="admin-inbox", include_in_schema=False)
async def inbox_page(request: Request[Any, Any, Any], inbox: NamedDependency[ConflictInbox]) -> Template:
    principal = await _principal(request)
    where = _filter_from(request.query_params)
    cursor = request.query_params.get("cursor") or None
    try:
        page = await inbox.search(principal, where, cursor, 50)
    except GridsyncError as error:
        return _page(request, "error", principal, status_code=error.status, message=error.message)
    base = {k: v for k, v in msgspec.to_builtins(where).items() if v}

    def link(**change: Any) -> str:
        query = {**base, **change}
        return "/admin/conflicts?" + urlencode({k: v for k, v in query.items() if v})

    return _page(request, "inbox", principal, page=page, where=where, link=link)


@get("/conflicts/{conflict_id:str}", name="admin-conflict", include_in_schema=False)
async def conflict_page(
    request: Request[Any, Any, Any], conflict_id: FromPath[str], inbox: NamedDependency[ConflictInbox]
) -> Template:
    principal = await _principal(request)
    try:
        detail = await inbox.detail(principal, conflict_id)
    except GridsyncError as error:
        return _page(request, "error", principal, status_code=error.status, message=error.message)
    done = request.query_params.get("done") == "1"
    return _page(request, "conflict", principal, detail=detail, done=done, error=None)


def _resolution(inbox: ConflictInbox, detail: ConflictDetail, form: Mapping[str, list[str]]) -> Resolution:
    """Turn the conflict form into a resolution: a clicked "keep this" or "use merged value"
    button decides its field; the radio buttons decide the others."""
    summary = detail.conflict
    record = _first(form, "record")
    choices: dict[str, FieldChoice] = {}
    clicked_keep = _first(form, "keep")
    clicked_merged = _first(form, "use_merged")
    for field in detail.fields:
        name = field.field
        if name == DELETE_CONFLICT_KEY:
            continue
        pick = _first(form, f"pick.{name}")
        if clicked_keep and clicked_keep.startswith(f"{name}:"):
            pick = clicked_keep.split(":", 1)[1]
        if clicked_merged == name:
            pick = _MERGED
        if pick == _MERGED:
            text = _first(form, f"merged.{name}") or ""
            choices[name] = FieldChoice(
                value=_typed(inbox, summary.collection, summary.record_id, name, text)
            )
        elif pick:
            choices[name] = FieldChoice(keep=pick)
    if record == "delete":
        choices = {}
    seen = [head for head in (_first(form, "seen") or "").split(",") if head]
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
    principal = await _principal(request)
    form = await _form(request)
    try:
        detail = await inbox.detail(principal, conflict_id)
        resolution = _resolution(inbox, detail, form)
        resolved = await inbox.resolve(principal, conflict_id, resolution)
    except GridsyncError as error:
        try:
            current = await inbox.detail(principal, conflict_id)
        except GridsyncError:
            return _page(request, "error", principal, status_code=error.status, message=error.message)
        return _page(
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
    return _page(request, "bulk", principal, field=field, rule=rule, where=where, **values)


@get("/bulk", name="admin-bulk", include_in_schema=False)
async def bulk_page(request: Request[Any, Any, Any], inbox: NamedDependency[ConflictInbox]) -> Template:
    """Choose a field, a rule and a filter; with a field given, show the preview."""
    principal = await _principal(request)
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
    principal = await _principal(request)
    form = await _form(request)
    field = _first(form, "field") or ""
    rule = _first(form, "rule") or "newest"
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
    principal = await _principal(request)
    community = request.query_params.get("community") or None
    reports = Reports(Registry(inbox.store), request.app.state.settings)
    where = ScopeFilter(community, principal=principal)
    summary = await reports.summary(where)
    overspends = (await reports.flags(where, "overspend")).flags
    few_served = (await reports.flags(where, "few_served")).flags
    counts = (await inbox.search(principal, ConflictFilter(community=community), None, 1)).counts
    return _page(
        request,
        "dashboard",
        principal,
        counts=counts,
        summary=summary,
        overspends=overspends,
        few_served=few_served,
        community=community,
    )


def _sign_in_redirect(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    return Redirect(f"/admin/login?{urlencode({'next': request.url.path})}")


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
        exception_handlers={_SignInNeeded: _sign_in_redirect},
        include_in_schema=False,
    )
