"""The desk's pages under ``/admin``: households (one household, one file), the request desk,
hazards, tasks, and export of any list. Same stack as the conflict inbox: server-rendered, the
session cookie, a CSRF token on every form (``server/pages/admin.py``). Every write is an
ordinary change (``server/desk/service.py``); the forms send back the heads the page showed.
"""

from __future__ import annotations

import datetime
import io
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath
from litestar.response import Template

from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.desk.books import Books, HouseholdQuery
from server.desk.exports import Exporter, ExportFilter, audit_export
from server.desk.forms import desk, parse_seen, query_value, typed_values, written_answer
from server.desk.imports_page import import_apply, import_page, import_preview
from server.desk.work_pages import hazard_action, hazards_page, request_action, request_page, requests_page
from server.errors import GridsyncError
from server.inbox.service import ConflictInbox
from server.pages.rendering import (
    SignInNeeded,
    first_value,
    posted_form,
    render_page,
    sign_in_redirect,
    signed_in_admin,
)

__all__ = ["desk_pages"]


@get("/households", name="desk-households", include_in_schema=False)
async def households_page(request: Request[Any, Any, Any]) -> Template:
    principal = await signed_in_admin(request)
    query = HouseholdQuery(*(query_value(request, n) for n in ("q", "tag", "community", "grid", "building")))
    found = await Books(desk(request)).households(principal, query)
    return render_page(request, "desk/households", principal, households=found, query=query)


@get("/households/{household_id:str}", name="desk-household", include_in_schema=False)
async def household_page(
    request: Request[Any, Any, Any], household_id: FromPath[str], accounts: NamedDependency[AccountStore]
) -> Template:
    principal = await signed_in_admin(request)
    reveal = request.query_params.get("reveal") == "1"
    found = await Books(desk(request)).household(principal, household_id, reveal=reveal)
    if found is None:
        return render_page(
            request, "error", principal, status_code=404, message=f"no household {household_id!r}"
        )
    if reveal:
        await accounts.audit(
            principal,
            "id_numbers_shown",
            household_id,
            address=get_remote_address(request),
            residents=[r.id for r in found.residents],
        )
    saved = request.query_params.get("saved") == "1"
    return render_page(
        request, "desk/household", principal, file=found, reveal=reveal, saved=saved, error=None
    )


@post("/households/{household_id:str}", name="desk-household-edit", include_in_schema=False)
async def household_edit(request: Request[Any, Any, Any], household_id: FromPath[str]) -> Response[Any]:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    name = first_value(form, "field") or ""
    office = desk(request)
    try:
        values = typed_values(office, "households", {name: first_value(form, "value") or ""})
        written = await office.write(principal, "households", household_id, values, parse_seen(form))
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    return written_answer(request, principal, written, f"/admin/households/{household_id}?saved=1")


@get("/tasks", name="desk-tasks", include_in_schema=False)
async def tasks_page(request: Request[Any, Any, Any]) -> Template:
    """Runs the task rules first, so the list holds what they make and close."""
    principal = await signed_in_admin(request)
    await request.app.state.task_rules.run()
    filters = {name: query_value(request, name) for name in ("assignee", "status", "kind")}
    found = await Books(desk(request)).tasks(principal, filters, query_value(request, "community"))
    kinds = request.app.state.store.collections["tasks"].fields["kind"].choices
    return render_page(
        request,
        "desk/tasks",
        principal,
        tasks=found,
        filters=filters,
        kinds=kinds,
        error=None,
        today=desk(request).today().isoformat(),
    )


@post("/tasks", name="desk-task-create", include_in_schema=False)
async def task_create(request: Request[Any, Any, Any]) -> Response[Any]:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    office = desk(request)
    names = (
        "kind",
        "assignee",
        "due_date",
        "reason",
        "household_id",
        "building_id",
        "grid_id",
        "hazard_id",
        "request_id",
    )
    try:
        values = typed_values(
            office, "tasks", {n: first_value(form, n) or "" for n in names if first_value(form, n)}
        )
        _, written = await office.create_task(principal, values)
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    return written_answer(request, principal, written, "/admin/tasks", refused_status=400)


@get("/export/{collection:str}", name="desk-export", include_in_schema=False)
async def export_list(
    request: Request[Any, Any, Any],
    collection: FromPath[str],
    inbox: NamedDependency[ConflictInbox],
    accounts: NamedDependency[AccountStore],
) -> Response[Any]:
    """The list as the page filters it, as XLSX (default) or CSV; every export is audited."""
    principal: Principal = await signed_in_admin(request)
    kind = "csv" if request.query_params.get("format") == "csv" else "xlsx"
    where = ExportFilter(
        *(query_value(request, n) for n in ("community", "grid", "building", "status", "tag"))
    )
    exporter = Exporter(inbox.collections, inbox)
    out = io.BytesIO()
    try:
        rows = await exporter.write(principal, collection, where, out, kind)
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    await audit_export(accounts, principal, collection, where, rows, get_remote_address(request))
    media = (
        "text/csv; charset=utf-8"
        if kind == "csv"
        else ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    )
    name = f"{collection}-{datetime.date.today().isoformat()}.{kind}"
    return Response(
        out.getvalue(), media_type=media, headers={"content-disposition": f'attachment; filename="{name}"'}
    )


def desk_pages() -> Router:
    return Router(
        path="/admin",
        route_handlers=[
            households_page,
            household_page,
            household_edit,
            requests_page,
            request_page,
            request_action,
            hazards_page,
            hazard_action,
            tasks_page,
            task_create,
            import_page,
            import_preview,
            import_apply,
            export_list,
        ],
        exception_handlers={SignInNeeded: sign_in_redirect},
        include_in_schema=False,
    )
