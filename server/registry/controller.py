"""The registry's read API: record lists, flags, points balances, no-signal list, summary."""

from __future__ import annotations

import datetime
from inspect import Parameter, Signature
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath, FromQuery, QueryParameter

from schemas.collections import Moment
from schemas.views import FlagList, NoSignalList, PointsBalance, RecordPage, Summary
from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.access.tokens import SECURITY_REQUIREMENT
from server.errors import GridsyncError
from server.openapi import problems
from server.registry.lists import Registry, ScopeFilter
from server.registry.reports import Reports
from server.settings import Settings
from server.sync.controller import page_limit

__all__ = ["RecordListController", "ReportsController"]


Place = Literal["community", "grid", "building", "household"]


def _where(*places: Place) -> Provide:
    """The dependency ``where``: the caller's read scope (``ScopeFilter``), narrowed by the
    ``places`` the route takes, each an optional query parameter of its name."""

    def scope(request: Request[Principal, str, Any], **query: str | None) -> ScopeFilter:
        return ScopeFilter(**query, principal=request.user)

    parameters = [Parameter("request", Parameter.KEYWORD_ONLY, annotation=Request[Principal, str, Any])]
    parameters += [
        Parameter(
            place, Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, QueryParameter()]
        )
        for place in places
    ]
    # Litestar reads a dependency's query parameters from its signature and type hints: these.
    scope.__signature__ = Signature(parameters, return_annotation=ScopeFilter)  # type: ignore[attr-defined]
    scope.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    scope.__annotations__["return"] = ScopeFilter
    return Provide(scope, sync_to_thread=False)


def _registry(state: State) -> Registry:
    return Registry(state.store)


def _reports(state: State) -> Reports:
    return Reports(Registry(state.store), state.settings)


_EARLIEST = datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC)
_LATEST = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)


def _moment(at: str | None) -> datetime.datetime | None:
    if at is None:
        return None
    try:
        moment: datetime.datetime = msgspec.convert(at, Moment)
    except msgspec.ValidationError:
        raise GridsyncError(400, "bad_time", f"at={at!r} is not an RFC 3339 time with an offset") from None
    if not _EARLIEST <= moment <= _LATEST:
        # The reports shift `at` into the district's zone and back by their windows: near the
        # ends of the calendar that arithmetic overflows.
        raise GridsyncError(400, "bad_time", f"at={at!r} is outside the years 1900 to 9000")
    return moment


class RecordListController(Controller):
    path = "/v1/records"
    tags = ["records"]
    security = SECURITY_REQUIREMENT
    dependencies = {
        "registry": Provide(_registry, sync_to_thread=False),
        "where": _where("community", "grid", "building", "household"),
    }

    @get(
        "/{collection:str}",
        operation_id="listRecords",
        summary="Records of a collection, filtered and paged by id",
        description=(
            "Each record has the shape of GET /v1/records/{collection}/{id}; ID numbers are masked. "
            "`updated_since` takes a pull or push cursor. Page with `cursor` while `more`."
        ),
        responses=problems(400, 401, 404, 429, 503),
    )
    async def list_records(
        self,
        request: Request[Principal, str, Any],
        collection: FromPath[str],
        registry: NamedDependency[Registry],
        accounts: NamedDependency[AccountStore],
        settings: NamedDependency[Settings],
        where: NamedDependency[ScopeFilter],
        limit: FromQuery[int | None] = None,
        cursor: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        tag: FromQuery[str | None] = None,
        updated_since: FromQuery[str | None] = None,
        include_deleted: FromQuery[bool] = False,
    ) -> RecordPage:
        page = await registry.page(
            collection,
            limit=page_limit(limit, settings.default_snapshot_limit, settings.max_snapshot_limit),
            cursor=cursor,
            where=where,
            status=status,
            tag=tag,
            updated_since=updated_since,
            include_deleted=include_deleted,
        )
        spec = registry.collections.get(collection)
        if request.user.is_admin and spec is not None and any(f.masked for f in spec.fields.values()):
            # Admins read personal data whole (ID numbers): each such page is an export, audited.
            await accounts.audit(
                request.user,
                "export",
                collection,
                address=get_remote_address(request),
                community_id=where.community,
                filters={
                    "community": where.community,
                    "grid": where.grid,
                    "building": where.building,
                    "household": where.household,
                },
                records=len(page.records),
            )
        return page


class ReportsController(Controller):
    path = "/v1"
    tags = ["reports"]
    security = SECURITY_REQUIREMENT
    dependencies = {"reports": Provide(_reports, sync_to_thread=False)}

    @get(
        "/reports/summary",
        operation_id="summary",
        summary="The community office's figures",
        responses=problems(400, 401, 429, 503),
        dependencies={"where": _where("community")},
    )
    async def summary(
        self,
        reports: NamedDependency[Reports],
        where: NamedDependency[ScopeFilter],
        at: FromQuery[str | None] = None,
        days: FromQuery[int] = 30,
    ) -> Summary:
        if not 1 <= days <= 366:
            raise GridsyncError(400, "bad_limit", f"days must be between 1 and 366, got {days}")
        return await reports.summary(where, _moment(at), days)

    @get(
        "/checkins/no-signal",
        operation_id="noSignal",
        summary="Elderly-alone households with no signal today (after the cutoff hour)",
        responses=problems(400, 401, 429, 503),
        dependencies={"where": _where("community", "grid", "building")},
    )
    async def no_signal(
        self,
        reports: NamedDependency[Reports],
        where: NamedDependency[ScopeFilter],
        at: FromQuery[str | None] = None,
    ) -> NoSignalList:
        return await reports.no_signal(where, _moment(at))

    @get(
        "/flags",
        operation_id="flags",
        summary="Overspent balances and concurrent status moves",
        responses=problems(400, 401, 429, 503),
        dependencies={"where": _where("community", "grid")},
    )
    async def flags(
        self,
        reports: NamedDependency[Reports],
        where: NamedDependency[ScopeFilter],
        kind: FromQuery[str | None] = None,
    ) -> FlagList:
        return await reports.flags(where, kind)

    @get(
        "/points/{resident_id:str}",
        operation_id="pointsBalance",
        summary="A volunteer's points balance, derived from the ledger",
        responses=problems(401, 404, 429, 503),
        dependencies={"where": _where()},
    )
    async def balance(
        self,
        resident_id: FromPath[str],
        reports: NamedDependency[Reports],
        where: NamedDependency[ScopeFilter],
    ) -> PointsBalance:
        return await reports.balance(resident_id, where)
