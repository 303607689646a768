"""Rate limits (Litestar's RateLimitMiddleware): per device and per address on the sync
endpoints, per address on sign-in. Counters live in each app process's memory store."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address

from server.access import Principal
from server.settings import Settings

__all__ = ["RateLimits"]


def _device(request: Request[Any, Any, Any]) -> str:
    user = request.scope.get("user")
    return f"device:{user.id}" if isinstance(user, Principal) else f"address:{get_remote_address(request)}"


def _address(request: Request[Any, Any, Any]) -> str:
    return f"address:{get_remote_address(request)}"


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.per_device = RateLimitConfig(
            rate_limit=("minute", settings.device_requests_per_minute), identifier_for_request=_device
        )
        self.per_address = RateLimitConfig(
            rate_limit=("minute", settings.address_requests_per_minute), identifier_for_request=_address
        )
        self.sign_in = RateLimitConfig(
            rate_limit=("minute", settings.sign_ins_per_minute),
            identifier_for_request=lambda request: f"sign-in:{get_remote_address(request)}",
        )
