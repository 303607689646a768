"""RFC 9457 problem details: one place that turns errors into responses with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar.exceptions import TooManyRequestsException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from server.accounts import AccountError, SignInLocked
from server.database import classify_database_error
from server.inbox import InboxError
from server.store import SyncError

__all__ = ["RETRY_AFTER_SECONDS", "problem", "problem_details_plugin"]

logger = logging.getLogger("gridsync")

# What a client is told to wait before retrying when the database is away.
RETRY_AFTER_SECONDS = 2


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


def _from_database_error(error: Exception) -> ProblemDetailsException:
    kind = classify_database_error(error)
    if kind == "full":
        logger.error("storage full: %s: %s", type(error).__name__, getattr(error, "orig", error))
        return problem(
            507,
            "storage_full",
            "the server's disk is full; nothing of this request was stored. Keep the changes and "
            "push them again later",
        )
    if kind == "invalid":
        logger.warning("value refused by the database: %s", getattr(error, "orig", error))
        return problem(
            400,
            "invalid_input",
            "a value in this request cannot be stored (a NUL character, or a number out of range); "
            "nothing of it was applied",
        )
    if kind == "unavailable":
        logger.warning("database unavailable: %s: %s", type(error).__name__, getattr(error, "orig", error))
        return problem(
            503,
            "database_unavailable",
            "the database is not reachable right now; nothing of this request was stored unless "
            f"a retry says so. Retry in {RETRY_AFTER_SECONDS} seconds",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    # A bug, not a fault of the environment: logged with its trace, answered without it.
    # (Litestar logs unhandled exceptions only in debug mode: every 500 is logged here.)
    logger.error("unexpected error", exc_info=error)
    return problem(500, "internal_error", "the server failed on this request; it was logged")


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
                # Everything else is classified: database faults (SQLAlchemy's, the drivers'
                # own from driver-level reads, OS errors: a lost connection, a restart, a
                # timeout, a full disk) answer 503 or 507; the rest is a bug, logged with its
                # trace, then a 500 problem.
                Exception: _from_database_error,
            },
        )
    )
