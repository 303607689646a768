"""The error body of every endpoint: RFC 9457 problem details with a stable ``code``."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.codes import Code

__all__ = ["PROBLEM_MEDIA_TYPE", "FieldError", "Problem"]

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, kw_only=True):
    """One parameter or body value that failed validation (``invalid_request``)."""

    message: str
    key: str | None = None
    source: str | None = None


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details. Apps react to ``code`` (schemas/codes.py); ``detail`` says what
    to do, for a person."""

    type: str
    title: str
    status: int
    detail: str
    code: Code
    # ``invalid_request``: which parameters or body values failed.
    errors: list[FieldError] | None = None
    # Conflict inbox refusals: the conflict as it stands now.
    current: Any = None
