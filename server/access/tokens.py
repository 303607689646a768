"""Bearer-token authentication. A phone sends its device token in ``Authorization``; the admin
pages send their sign-in token in the ``gridsync_session`` cookie (HttpOnly, SameSite=Strict)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.openapi.spec import Components, SecurityScheme

from server.access.accounts import AccountStore
from server.errors import problem

__all__ = [
    "SECURITY_COMPONENTS",
    "SECURITY_REQUIREMENT",
    "SESSION_COOKIE",
    "TokenMiddleware",
    "session_cookie",
]

SESSION_COOKIE = "gridsync_session"
SECURITY_COMPONENTS = Components(
    security_schemes={
        "deviceToken": SecurityScheme(
            type="http",
            scheme="bearer",
            description="A device token (`gridsync device enroll`, `POST /v1/admin/devices`) "
            "or an admin sign-in token (`POST /v1/admin/login`)",
        ),
        "sessionCookie": SecurityScheme(
            type="apiKey",
            name=SESSION_COOKIE,
            security_scheme_in="cookie",
            description="Set by `POST /v1/admin/login`, used by the admin pages",
        ),
    }
)
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"deviceToken": []}, {"sessionCookie": []}]


def session_cookie(connection: ASGIConnection[Any, Any, Any, Any], value: str) -> Cookie:
    """The admin session cookie (an empty value clears it): HttpOnly, SameSite=Strict, and
    Secure as ``GRIDSYNC_SECURE_COOKIES`` says ("auto": when the request came over HTTPS, which
    a trusted proxy may tell through X-Forwarded-Proto)."""
    mode = connection.app.state.settings.secure_cookies
    secure = mode == "always" or (mode == "auto" and connection.url.scheme == "https")
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        httponly=True,
        samesite="strict",
        path="/",
        secure=secure,
        max_age=0 if not value else None,
    )


def _token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.cookies.get(SESSION_COOKIE) or None


class TokenMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        token = _token(connection)
        if token is None:
            raise problem(
                401,
                "missing_token",
                "send 'Authorization: Bearer <device token>'; an admin enrols devices with "
                "'gridsync device enroll' or POST /v1/admin/devices",
                headers={"WWW-Authenticate": "Bearer"},
            )
        accounts: AccountStore = connection.app.state.accounts
        principal = await accounts.authenticate(token)
        if principal is None:
            raise problem(
                401,
                "invalid_token",
                "this token is unknown, expired or was revoked; ask an admin to enrol the device again",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return AuthenticationResult(user=principal, auth=token)
