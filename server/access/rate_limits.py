"""Rate limits (Litestar's RateLimitMiddleware): per device and per address on the sync
endpoints, per address on sign-in and on enrolment by code; and ``SignInThrottle``, which slows
wrong passwords down per name and address. Counters live in each app process's memory.

The address is the peer's (``request.client``): X-Forwarded-For counts only when it was sent by
a proxy listed in ``GRIDSYNC_TRUSTED_PROXIES`` (see ``server.app``).

Litestar's limit is a fixed window per key (it opens at the key's first request and lasts the
limit's unit), which it keeps as the list of every request time in the window, JSON in its
store, decoded and written again on every request under two locks: a community office behind
one NAT at its 12,000 a minute paid 320 us a request for its list. Only the list's length is
ever read, so ``WindowCounter`` keeps the same window as a count: the same answers and
``RateLimit-*`` headers, in constant time, with no await between reading a count and raising it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import time
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    RateLimitConfig,
    RateLimitMiddleware,
    get_remote_address,
)

from server.access.principals import Principal
from server.settings import Settings

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["CountedLimit", "RateLimits", "SignInThrottle", "WindowCounter"]


class _Window(CacheObject):
    """One key's window: Litestar's cache object, counting its requests instead of listing them."""

    __slots__ = ("count",)

    def __init__(self, reset: int) -> None:
        super().__init__(history=[], reset=reset)
        self.count = 0


class _Windows:
    """Every key's window of one limit. Litestar makes a middleware for each route it guards,
    so the windows live with the limit's config, which they all share."""

    def __init__(self) -> None:
        self.by_key: dict[str, _Window] = {}
        # Windows of keys that never come back are dropped once a window's length has passed.
        self.next_sweep = 0

    def counted(self, key: str, now: int, duration: int, limit: int) -> _Window | None:
        """The key's window with this request counted in it; None when it is full."""
        if now >= self.next_sweep:
            self.by_key = {k: w for k, w in self.by_key.items() if w.reset > now}
            self.next_sweep = now + duration
        window = self.by_key.get(key)
        if window is None or window.reset <= now:
            window = self.by_key[key] = _Window(now + duration)
        if window.count >= limit:
            return None
        window.count += 1
        return window


@dataclass
class CountedLimit(RateLimitConfig):
    """A Litestar rate limit whose windows are counted by ``WindowCounter``."""

    middleware_class: type[RateLimitMiddleware] = field(default_factory=lambda: WindowCounter)
    windows: _Windows = field(default_factory=_Windows)


class WindowCounter(RateLimitMiddleware):
    """Litestar's rate limit with each window kept as a count in this process's memory."""

    def __init__(self, app: ASGIApp, config: CountedLimit) -> None:
        super().__init__(app, config)
        self._duration = DURATION_VALUES[self.unit]
        self._windows = config.windows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope)
        if await self.should_check_request(request=request):
            key = self.cache_key_from_request(request)
            window = self._windows.counted(key, int(time()), self._duration, self.max_requests)
            if window is None:
                full = self._windows.by_key[key]
                headers = self.create_response_headers(full) if self.config.set_rate_limit_headers else None
                raise TooManyRequestsException(headers=headers)
            if self.config.set_rate_limit_headers:
                send = self.create_send_wrapper(send=send, cache_object=window)
        await self.app(scope, receive, send)

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        assert isinstance(cache_object, _Window)  # every window of this middleware is counted
        used = cache_object.count
        return {
            self.config.rate_limit_policy_header_key: f"{self.max_requests}; w={self._duration}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(max(0, self.max_requests - used)),
            self.config.rate_limit_reset_header_key: str(cache_object.reset - int(time())),
        }


def _device(request: Request[Any, Any, Any]) -> str:
    user = request.scope.get("user")
    return f"device:{user.id}" if isinstance(user, Principal) else f"address:{get_remote_address(request)}"


def _address(request: Request[Any, Any, Any]) -> str:
    return f"address:{get_remote_address(request)}"


def _limit(per_minute: int, identifier: Any) -> CountedLimit:
    return CountedLimit(rate_limit=("minute", per_minute), identifier_for_request=identifier)


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.per_device = _limit(settings.device_requests_per_minute, _device)
        self.per_address = _limit(settings.address_requests_per_minute, _address)
        self.sign_in = _limit(
            settings.sign_ins_per_minute, lambda request: f"sign-in:{get_remote_address(request)}"
        )
        self.enrolment = _limit(
            settings.enrolments_per_minute, lambda request: f"enrol:{get_remote_address(request)}"
        )


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last_at: float = 0.0


class SignInThrottle:
    """Wrong passwords slow sign-in down, per (name, address) and per name, whether the name
    exists or not (so the slow-down tells nobody which names do).

    * From one address, after ``free_per_address`` wrong passwords for a name, each further
      attempt for that name waits twice as long as the last (up to ``max_lock_s``); nothing is
      checked meanwhile.
    * After ``free_per_name`` wrong passwords for a name from any addresses, every address that
      has already failed for it waits out the name's lock too; an address with no failure for
      the name still has its password checked. An attacker thus gets one guess per address he
      owns, and cannot keep the real admin, signing in from their own address, locked out.
    """

    def __init__(
        self,
        *,
        free_per_address: int = 5,
        free_per_name: int = 20,
        max_lock_s: float = 15 * 60,
        forget_after_s: float = 3600,
    ) -> None:
        self.free_per_address = free_per_address
        self.free_per_name = free_per_name
        self.max_lock_s = max_lock_s
        self.forget_after_s = forget_after_s
        self._by_pair: dict[tuple[str, str], _Failures] = {}
        self._by_name: dict[str, _Failures] = {}
        self._next_sweep = 0.0

    def wait_s(self, name: str, address: str, now: float | None = None) -> int:
        """Seconds this attempt must wait before its password is checked; 0: check it now."""
        now = time() if now is None else now
        pair = self._by_pair.get((name, address))
        if pair is None:
            return 0
        waits = [pair.locked_until - now]
        by_name = self._by_name.get(name)
        if by_name is not None:
            waits.append(by_name.locked_until - now)
        longest = max(waits)
        return int(longest + 0.999) if longest > 0 else 0

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time() if now is None else now
        self._sweep(now)
        pair = self._by_pair.setdefault((name, address), _Failures())
        by_name = self._by_name.setdefault(name, _Failures())
        for failures, free in ((pair, self.free_per_address), (by_name, self.free_per_name)):
            failures.count += 1
            failures.last_at = now
            if failures.count >= free:
                failures.locked_until = now + min(self.max_lock_s, 2.0 ** (failures.count - free))

    def succeeded(self, name: str, address: str) -> None:
        self._by_pair.pop((name, address), None)
        self._by_name.pop(name, None)

    def _sweep(self, now: float) -> None:
        # Names and addresses that stopped failing are forgotten, so memory stays bounded by
        # the failures of the last ``forget_after_s``.
        if now < self._next_sweep:
            return
        horizon = now - self.forget_after_s
        self._by_pair = {k: f for k, f in self._by_pair.items() if f.last_at > horizon}
        self._by_name = {k: f for k, f in self._by_name.items() if f.last_at > horizon}
        self._next_sweep = now + 60
