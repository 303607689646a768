"""RFC 9457 problem details: one place that turns errors into responses with a stable ``code``."""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any, Literal

import asyncpg
import msgspec
from litestar.exceptions import TooManyRequestsException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from server.accounts import AccountError, SignInLocked
from server.inbox import InboxError
from server.store import SyncError

__all__ = ["RETRY_AFTER_SECONDS", "classify_database_error", "problem", "problem_details_plugin"]

logger = logging.getLogger("gridsync")

# What a client is told to wait before retrying when the database is away.
RETRY_AFTER_SECONDS = 2
_SQLITE_FULL = 13
_DISK_FULL_SQLSTATE = "53100"
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


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


def _causes(error: BaseException) -> list[BaseException]:
    """The error, the driver error it wraps, and their causes (bounded: chains can loop)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending and len(seen) < 12:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return [e for e in seen if isinstance(e, BaseException)]


def classify_database_error(error: BaseException) -> Literal["full", "invalid", "unavailable"] | None:
    """``full`` when the disk under the database is full, ``invalid`` when the database refused
    a value of the request (PostgreSQL: NUL in text, an integer beyond 64 bits), ``unavailable``
    when the database cannot be reached or answered too late (a retry later can succeed), None
    otherwise (a bug)."""
    chain = _causes(error)
    for cause in chain:
        if isinstance(cause, asyncpg.DataError | DataError):
            return "invalid"
        if isinstance(cause, sqlite3.Error) and (
            getattr(cause, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(cause)
        ):
            return "full"
        if (
            isinstance(cause, asyncpg.DiskFullError)
            or getattr(cause, "sqlstate", None) == _DISK_FULL_SQLSTATE
        ):
            return "full"
        if isinstance(cause, OSError) and cause.errno in _NO_SPACE:
            return "full"
    for cause in chain:
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return "unavailable"
        if isinstance(
            cause,
            PoolTimeoutError
            | TimeoutError
            | ConnectionError
            | sqlite3.OperationalError
            | asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.exceptions.OperatorInterventionError
            | asyncpg.InterfaceError
            # A connection the server cut while idle, met by a driver-level read ("another
            # operation is in progress"); driver_rows has dropped it from the pool.
            | asyncpg.exceptions._base.InternalClientError,
        ):
            return "unavailable"
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError | PermissionError):
            return "unavailable"
    return None


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
