"""Rate limits: per device and per address on the sync endpoints, per address on sign-in.

A fixed window per key (at most ``limit`` requests in each minute from its first request), with
the ``RateLimit-*`` headers on every answer and a 429 ``TooManyRequestsException`` over the
limit, as Litestar's ``RateLimitMiddleware`` does. That middleware keeps a list of timestamps
per key in a store and decodes and re-encodes it on every request, under two locks; on one
address with thousands of phones behind it that list is thousands long. Here a window is two
integers in a dict. Counters live in each app process's memory."""

from __future__ import annotations

import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.access import Principal
from server.settings import Settings

__all__ = ["FixedWindowLimit", "RateLimits"]

_WINDOW_S = 60
# Above this many keys, windows that have ended are dropped (one pass, at most once a window).
_PRUNE_FROM = 10_000


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "127.0.0.1"


def _by_device(scope: Scope) -> str:
    user = scope.get("user")
    return f"device:{user.id}" if isinstance(user, Principal) else f"address:{_address(scope)}"


def _by_address(scope: Scope) -> str:
    return f"address:{_address(scope)}"


class FixedWindowLimit:
    """At most ``limit`` requests per key in each window; the key is made from the ASGI scope."""

    def __init__(self, limit: int, key: Callable[[Scope], str]) -> None:
        self.limit = limit
        self.key = key
        self._windows: dict[str, list[int]] = {}  # key -> [window end (s), requests so far]
        self._pruned_at = 0
        self._policy = f"{limit}; w={_WINDOW_S}".encode()

    def count(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """Count one request; its ``RateLimit-*`` headers. Raises 429 over the limit."""
        now = int(time.time())
        key = self.key(scope)
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            self._prune(now)
            window = self._windows[key] = [now + _WINDOW_S, 0]
        if window[1] >= self.limit:
            headers = self._headers(window, now)
            raise TooManyRequestsException(headers={k.decode(): v.decode() for k, v in headers})
        window[1] += 1
        return self._headers(window, now)

    def _headers(self, window: list[int], now: int) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-policy", self._policy),
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(max(0, self.limit - window[1])).encode()),
            (b"ratelimit-reset", str(window[0] - now).encode()),
        ]

    def _prune(self, now: int) -> None:
        if len(self._windows) < _PRUNE_FROM or now - self._pruned_at < _WINDOW_S:
            return
        self._pruned_at = now
        for key in [key for key, (end, _) in self._windows.items() if end <= now]:
            del self._windows[key]

    @property
    def middleware(self) -> DefineMiddleware:
        return DefineMiddleware(_LimitMiddleware, limit=self)


class _LimitMiddleware:
    def __init__(self, app: ASGIApp, limit: FixedWindowLimit) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = self.limit.count(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # An outer limit's headers replace an inner one's (the device's beat the address's).
                kept = [
                    (k, v) for k, v in message.get("headers", ()) if not k.lower().startswith(b"ratelimit-")
                ]
                message["headers"] = [*kept, *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.per_device = FixedWindowLimit(settings.device_requests_per_minute, _by_device)
        self.per_address = FixedWindowLimit(settings.address_requests_per_minute, _by_address)
        self.sign_in = FixedWindowLimit(
            settings.sign_ins_per_minute, lambda scope: f"sign-in:{_address(scope)}"
        )
