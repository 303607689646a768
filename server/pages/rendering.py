"""What every server-rendered page shares (the admin pages, the desk, enrolment): the templates
and their filters, the signed-in admin, the language, the CSRF-checked form, a page with its
context, and the redirect to sign in."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape

from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.access.tokens import SESSION_COOKIE
from server.inbox.tracking import KINDS
from server.pages.i18n import LANG_COOKIE, LANGUAGES, choose_language, translator
from sync.merge import DELETE_CONFLICT_KEY

__all__ = [
    "STATIC",
    "TEMPLATES",
    "SignInNeeded",
    "csrf_token",
    "first_value",
    "language",
    "posted_form",
    "render_page",
    "sign_in_redirect",
    "signed_in_admin",
    "template_config",
]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
DESK_TEMPLATES = Path(__file__).parents[1] / "desk" / "templates"


class SignInNeeded(Exception):  # noqa: N818 - a redirect, not an error
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


def language(request: Request[Any, Any, Any]) -> str:
    return choose_language(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def _lang_cookie(request: Request[Any, Any, Any], lang: str) -> list[Cookie]:
    if request.query_params.get("lang") in LANGUAGES:
        return [Cookie(key=LANG_COOKIE, value=lang, samesite="strict", path="/", max_age=365 * 86400)]
    return []


async def signed_in_admin(request: Request[Any, Any, Any]) -> Principal:
    token = request.cookies.get(SESSION_COOKIE)
    accounts: AccountStore = request.app.state.accounts
    principal = await accounts.authenticate(token) if token else None
    if principal is None:
        raise SignInNeeded
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail="admins only")
    return principal


def _context(request: Request[Any, Any, Any], principal: Principal | None, **values: Any) -> dict[str, Any]:
    lang = language(request)
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


def render_page(
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
        cookies=_lang_cookie(request, language(request)),
    )


async def posted_form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
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


def first_value(form: Mapping[str, list[str]], key: str) -> str | None:
    found = form.get(key)
    return found[0] if found else None


def sign_in_redirect(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    return Redirect(f"/admin/login?{urlencode({'next': request.url.path})}")
