"""RFC 9457 problem details: one place that turns errors into responses with a stable ``code``."""

from __future__ import annotations

from typing import Any

from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

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


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map={SyncError: _from_sync_error},
        )
    )
