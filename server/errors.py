"""RFC 9457 problem details: one place that turns errors into responses with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, TooManyRequestsException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from server.db.engine import classify_database_error
from server.observability.requests import request_id_of

__all__ = ["RETRY_AFTER_SECONDS", "GridsyncError", "problem", "problem_details_plugin", "unavailable"]

logger = logging.getLogger("gridsync")

# What a client is told to wait before retrying when the database is away.
RETRY_AFTER_SECONDS = 2


class GridsyncError(Exception):
    """A request refused with a stable ``code``, an HTTP status and a message a person can act on.

    ``headers`` go out with the answer (``Retry-After``); ``extra`` joins the problem details
    (the current state of a conflict on 409).
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.extra = headers, extra


class _Problem(ProblemDetailsException):
    """Problem details that carry the request's id (``request_id``), as its log line does."""

    def to_response(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        response = super().to_response(request)
        if (request_id := request_id_of(request.scope)) is not None:
            response.content["request_id"] = request_id
        return response


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> ProblemDetailsException:
    return _Problem(
        status_code=status,
        detail=detail,
        title=code.replace("_", " "),
        type_=f"urn:gridsync:problem:{code}",
        headers=headers,
        extra={"code": code, **extra},
    )


def unavailable(code: str, detail: str) -> ProblemDetailsException:
    """A 503 that asks the caller to try again in ``RETRY_AFTER_SECONDS``."""
    return problem(503, code, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _from_gridsync_error(error: GridsyncError) -> ProblemDetailsException:
    extra = {name: msgspec.to_builtins(value) for name, value in error.extra.items() if value is not None}
    return problem(error.status, error.code, error.message, headers=error.headers, **extra)


# Litestar's own refusals (parameter validation, an unknown path, a body over the limit) get a
# code by status like every other error; the detail stays Litestar's.
_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_token",
    403: "forbidden",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "database_unavailable",
}


def _from_http_exception(error: HTTPException) -> ProblemDetailsException:
    if error.status_code == 404:
        # Only routing answers Litestar's 404 (no such path): it carries no code, as on a server
        # older than the path, so a phone tells a missing endpoint from `not_found` of a record.
        return _Problem(status_code=404, detail=error.detail, title="no such path")
    code = _CODE_BY_STATUS.get(error.status_code, "http_error")
    # A validation error lists the parameters or body values it refused.
    extra = {"errors": error.extra} if isinstance(error.extra, list) else {}
    return problem(error.status_code, code, error.detail, headers=error.headers, **extra)


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
        return unavailable(
            "database_unavailable",
            "the database is not reachable right now; nothing of this request was stored unless "
            f"a retry says so. Retry in {RETRY_AFTER_SECONDS} seconds",
        )
    # A bug, not a fault of the environment: logged with its trace, answered without it.
    # (Litestar logs unhandled exceptions only in debug mode: every 500 is logged here.)
    logger.error("unexpected error", exc_info=error)
    return problem(500, "internal_error", "the server failed on this request; it was logged")


def _from_rate_limit(error: TooManyRequestsException) -> ProblemDetailsException:
    headers = dict(error.headers or {})
    headers["Retry-After"] = str(max(1, int(headers.get("RateLimit-Reset", "1") or 1)))
    return problem(429, "rate_limited", "too many requests; wait for Retry-After seconds", headers=headers)


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map={
                GridsyncError: _from_gridsync_error,
                TooManyRequestsException: _from_rate_limit,
                HTTPException: _from_http_exception,
                # Everything else is classified: database faults (SQLAlchemy's, the drivers'
                # own from driver-level reads, OS errors: a lost connection, a restart, a
                # timeout, a full disk) answer 503 or 507; the rest is a bug, logged with its
                # trace, then a 500 problem.
                Exception: _from_database_error,
            },
        )
    )
