"""Bearer-token authentication of devices. Tokens are stored only as hashes; a revoked token
fails on its very next request, because every request looks the token up."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.openapi.spec import Components, SecurityScheme

from server.problems import problem
from server.store import SyncStore

__all__ = ["SECURITY_COMPONENTS", "SECURITY_REQUIREMENT", "DeviceTokenMiddleware"]

SECURITY_COMPONENTS = Components(
    security_schemes={
        "deviceToken": SecurityScheme(
            type="http",
            scheme="bearer",
            description="A device token from `gridsync device enroll` or the admin API",
        )
    }
)
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"deviceToken": []}]


class DeviceTokenMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise problem(
                401,
                "missing_token",
                "send 'Authorization: Bearer <device token>'; enrol a device with 'gridsync device enroll'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        store: SyncStore = connection.app.state.store
        device = await store.authenticate(token.strip())
        if device is None:
            raise problem(
                401,
                "invalid_token",
                "this token is unknown or was revoked; ask an admin to enrol the device again",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return AuthenticationResult(user=device, auth=token)
