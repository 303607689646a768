"""RFC 9457 problem details: one place that turns errors into responses with a stable ``code``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.exceptions import TooManyRequestsException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from server.accounts import AccountError, SignInLocked
from server.inbox import InboxError
from server.store import SyncError

__all__ = ["problem", "problem_details_plugin"]


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        detail=detail,
        title=code.replace("_", " "),
        type_=f"urn:gridsync:problem:{code}",
        headers=headers,
        extra={"code": code, **extra},
    )


def _from_sync_error(error: SyncError) -> ProblemDetailsException:
    return problem(error.status, error.code, error.message)


def _from_account_error(error: AccountError) -> ProblemDetailsException:
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, SignInLocked) else None
    return problem(error.status, error.code, error.message, headers=headers)


def _from_inbox_error(error: InboxError) -> ProblemDetailsException:
    extra = {} if error.current is None else {"current": msgspec.to_builtins(error.current)}
    return problem(error.status, error.code, error.message, **extra)


def _from_rate_limit(error: TooManyRequestsException) -> ProblemDetailsException:
    headers = dict(error.headers or {})
    headers["Retry-After"] = str(max(1, int(headers.get("RateLimit-Reset", "1") or 1)))
    return problem(429, "rate_limited", "too many requests; wait for Retry-After seconds", headers=headers)


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map={
                SyncError: _from_sync_error,
                AccountError: _from_account_error,
                SignInLocked: _from_account_error,
                TooManyRequestsException: _from_rate_limit,
                InboxError: _from_inbox_error,
            },
        )
    )
