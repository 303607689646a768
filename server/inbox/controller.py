"""The conflict inbox API: list, show, resolve one, resolve many by a rule (preview, then apply)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from schemas.problem import Problem
from server.access.accounts import AccountStore
from server.access.guards import cookie_writes_send_json
from server.access.principals import Principal, requires_admin
from server.access.tokens import SECURITY_REQUIREMENT
from server.inbox.service import (
    BulkRequest,
    BulkResult,
    ConflictDetail,
    ConflictFilter,
    ConflictInbox,
    ConflictPage,
    Resolution,
    audit_bulk,
    audit_resolution,
)
from server.openapi import problems

__all__ = ["ConflictProblem", "ConflictsController"]


class ConflictProblem(Problem, kw_only=True):
    """A refused resolution's problem details: they carry the conflict as it stands now."""

    current: ConflictDetail | None = None


class ConflictsController(Controller):
    path = "/v1/admin/conflicts"
    tags = ["conflicts"]
    guards = [requires_admin, cookie_writes_send_json]
    security = SECURITY_REQUIREMENT

    @get(
        "/",
        operation_id="listConflicts",
        summary="The conflict inbox, newest first, with counts",
        responses=problems(400, 401, 403, 503),
    )
    async def list_conflicts(
        self,
        request: Request[Principal, str, Any],
        inbox: NamedDependency[ConflictInbox],
        status: FromQuery[Literal["open", "resolved"]] = "open",
        community: FromQuery[str | None] = None,
        grid: FromQuery[str | None] = None,
        collection: FromQuery[str | None] = None,
        kind: FromQuery[str | None] = None,
        field: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> ConflictPage:
        where = ConflictFilter(
            status=status, community=community, grid=grid, collection=collection, kind=kind, field=field
        )
        return await inbox.search(request.user, where, cursor, limit)

    @get(
        "/{conflict_id:str}",
        operation_id="getConflict",
        summary="Every head of every conflicting field",
        responses=problems(401, 403, 404, 503),
    )
    async def get_conflict(
        self,
        request: Request[Principal, str, Any],
        conflict_id: FromPath[str],
        inbox: NamedDependency[ConflictInbox],
    ) -> ConflictDetail:
        return await inbox.detail(request.user, conflict_id)

    @post(
        "/{conflict_id:str}/resolve",
        operation_id="resolveConflict",
        status_code=200,
        summary="Resolve with a chosen head or a new value per field",
        description="Send `seen_heads` from the conflict you loaded: if the heads moved, or the conflict "
        "was resolved meanwhile, the answer is 409 with the current state in `current`.",
        responses={
            **problems(401, 403, 404, 415, 503),
            # A refused choice or moved heads: the answer carries the conflict as it is now.
            **problems(400, 409, shape=ConflictProblem),
        },
    )
    async def resolve(
        self,
        request: Request[Principal, str, Any],
        conflict_id: FromPath[str],
        data: JSONBody[Resolution],
        inbox: NamedDependency[ConflictInbox],
        accounts: NamedDependency[AccountStore],
    ) -> ConflictDetail:
        resolved = await inbox.resolve(request.user, conflict_id, data)
        await audit_resolution(accounts, request.user, get_remote_address(request), resolved, data)
        return resolved

    @post(
        "/bulk",
        operation_id="bulkResolveConflicts",
        status_code=200,
        summary="Resolve one field of many conflicts by a rule: preview, then apply",
        description="Without `expect` nothing is written (a preview). Send the preview's items back as "
        "`expect` (conflict_id and heads) to apply; items whose heads moved are skipped as `stale`.",
        responses=problems(400, 401, 403, 415, 503),
    )
    async def bulk(
        self,
        request: Request[Principal, str, Any],
        data: JSONBody[BulkRequest],
        inbox: NamedDependency[ConflictInbox],
        accounts: NamedDependency[AccountStore],
    ) -> BulkResult:
        result = await inbox.bulk(request.user, data)
        if result.applied:
            await audit_bulk(accounts, request.user, get_remote_address(request), data, result)
        return result
