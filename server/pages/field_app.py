"""The field app at ``/app`` (docs/app.md): its static files, the SDK it imports at
``/app/sdk/``, its service worker, and ``GET /v1/me``, who the app's device token belongs to.

The app is plain files (server/pages/app/) with no build step; the SDK is served from
clients/js/src in the source tree, the same files ``npm`` installs."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.static_files import create_static_files_router

from schemas.views import Caller
from server.access.principals import Principal
from server.access.tokens import SECURITY_REQUIREMENT
from server.openapi import problems

__all__ = ["APP_DIRECTORY", "SDK_DIRECTORY", "field_app", "me", "shell_files"]

APP_DIRECTORY = Path(__file__).resolve().parent / "app"
SDK_DIRECTORY = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"
_SHELL_TYPES = {".html", ".js", ".css", ".webmanifest", ".png", ".svg"}


@cache
def shell_files() -> tuple[tuple[str, ...], str]:
    """(the URLs of the app shell, a version that changes with any of their bytes)."""
    found: list[tuple[str, Path]] = []
    for base, directory in (("/app/", APP_DIRECTORY), ("/app/sdk/", SDK_DIRECTORY)):
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                if path.suffix in _SHELL_TYPES and path.is_file() and path.name != "sw.js":
                    found.append((base + path.relative_to(directory).as_posix(), path))
    digest = hashlib.sha256()
    for url, path in found:
        digest.update(url.encode() + b"\0" + path.read_bytes())
    urls = ["/app/" if url == "/app/index.html" else url for url, _ in found]
    return tuple(urls), digest.hexdigest()[:12]


@get("/app/sw.js", exclude_from_auth=True, include_in_schema=False, cache=False)
async def service_worker() -> Response[bytes]:
    """The service worker, told the shell's files and their version (a new version replaces
    the phones' cached shell on their next visit online)."""
    urls, version = shell_files()
    source = (APP_DIRECTORY / "sw.js").read_text(encoding="utf-8")
    source = source.replace("__SHELL__", msgspec.json.encode(list(urls)).decode()).replace(
        "__VERSION__", version
    )
    return Response(
        source.encode(),
        media_type="text/javascript",
        headers={"cache-control": "no-cache", "service-worker-allowed": "/app/"},
    )


@get(
    "/v1/me",
    operation_id="me",
    tags=["sync"],
    security=SECURITY_REQUIREMENT,
    responses=problems(401, 429, 503),
)
async def me(request: Request[Principal, str, Any]) -> Caller:
    """The user and role the token belongs to (the app names its worker with it)."""
    user = request.user
    return Caller(user_id=user.user_id, user_name=user.user_name, role=user.role, device_id=user.device_id)


def field_app() -> Router:
    return Router(
        path="/",
        route_handlers=[
            service_worker,
            create_static_files_router(
                path="/app/sdk", directories=[SDK_DIRECTORY], include_in_schema=False, name="field-app-sdk"
            ),
            create_static_files_router(
                path="/app",
                directories=[APP_DIRECTORY],
                html_mode=True,
                include_in_schema=False,
                name="field-app",
            ),
        ],
    )
