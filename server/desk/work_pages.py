"""The request desk (派单) and the hazard desk: lists, one request's five steps, and the office's
moves: dispatch to a company with a due date and a supervising party member, cancel, reopen;
assign a hazard's re-check, mark it fixed, verify it with a photo. Only the moves the status
machine allows from the status shown are offered, and the push judges them again."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Template

from server.desk.books import OFFICE_MOVES, Books
from server.desk.forms import desk, parse_seen, query_value, typed_values, written_answer
from server.errors import GridsyncError
from server.pages.rendering import first_value, posted_form, render_page, signed_in_admin
from server.registry.attachments import AttachmentStore

__all__ = ["hazard_action", "hazards_page", "request_action", "request_page", "requests_page"]

_STEPS = ("submitted", "dispatched", "accepted", "done", "rated")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@get("/requests", name="desk-requests", include_in_schema=False)
async def requests_page(request: Request[Any, Any, Any]) -> Template:
    principal = await signed_in_admin(request)
    office = desk(request)
    community, status = query_value(request, "community"), query_value(request, "status")
    rows = await Books(office).requests(principal, community, status, office.today())
    done = request.query_params.get("done") == "1"
    return render_page(
        request,
        "desk/requests",
        principal,
        rows=rows,
        community=community,
        status=status,
        done=done,
        today=office.today().isoformat(),
    )


@get("/requests/{request_id:str}", name="desk-request", include_in_schema=False)
async def request_page(request: Request[Any, Any, Any], request_id: FromPath[str]) -> Template:
    """One request: its fields and the five steps with who did what and when."""
    principal = await signed_in_admin(request)
    office = desk(request)
    view = await office.view("requests", request_id, principal)
    if view is None:
        return render_page(request, "error", principal, status_code=404, message=f"no request {request_id!r}")
    events = await office.steps("requests", request_id)
    steps = {
        step: [e for e in events if e.field == "status" and e.value == step] for step in (*_STEPS, "reopened")
    }
    return render_page(
        request, "desk/request", principal, view=view, events=events, steps=steps, step_names=_STEPS
    )


@post("/requests/{request_id:str}", name="desk-request-move", include_in_schema=False)
async def request_action(request: Request[Any, Any, Any], request_id: FromPath[str]) -> Response[Any]:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    move = first_value(form, "move") or ""
    office = desk(request)
    if move not in OFFICE_MOVES:
        return render_page(
            request,
            "error",
            principal,
            status_code=400,
            message=f"the office cannot move a request to {move!r}",
        )
    raw = {"status": move}
    if move == "dispatched":
        raw |= {name: first_value(form, name) or "" for name in ("dispatched_to", "due_date", "supervisor")}
        if not raw["dispatched_to"] or not raw["due_date"]:
            return render_page(
                request,
                "error",
                principal,
                status_code=400,
                message="dispatch needs a company and a due date",
            )
    try:
        values = typed_values(office, "requests", raw)
        written = await office.write(principal, "requests", request_id, values, parse_seen(form))
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    return written_answer(request, principal, written, "/admin/requests?done=1")


@get("/hazards", name="desk-hazards", include_in_schema=False)
async def hazards_page(request: Request[Any, Any, Any]) -> Template:
    principal = await signed_in_admin(request)
    office = desk(request)
    community = query_value(request, "community")
    found = await Books(office).open_hazards(principal, community, office.today())
    return render_page(request, "desk/hazards", principal, hazards=found, community=community)


async def _photo(request: Request[Any, Any, Any]) -> str | None:
    """Store the uploaded photo as an attachment; its SHA-256 names it in the record."""
    upload = (await request.form()).get("photo")
    if not isinstance(upload, UploadFile):
        return None
    content = await upload.read()
    if not content:
        return None
    sha256 = hashlib.sha256(content).hexdigest()
    await AttachmentStore(request.app.state.store.engine).put(sha256, content)
    return sha256


@post("/hazards/{hazard_id:str}", name="desk-hazard-action", include_in_schema=False)
async def hazard_action(request: Request[Any, Any, Any], hazard_id: FromPath[str]) -> Response[Any]:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    action = first_value(form, "action")
    office = desk(request)
    view = await office.view("hazards", hazard_id, principal)
    if view is None:
        return render_page(request, "error", principal, status_code=404, message=f"no hazard {hazard_id!r}")
    seen = parse_seen(form)
    try:
        if action == "assign":
            place = {
                n: view.fields[n] for n in ("household_id", "building_id", "grid_id") if view.fields.get(n)
            }
            raw = {
                "kind": "hazard-recheck",
                "hazard_id": hazard_id,
                "reason": first_value(form, "reason") or "",
            }
            raw |= {n: first_value(form, n) or "" for n in ("assignee", "due_date")}
            _, written = await office.create_task(principal, typed_values(office, "tasks", raw) | place)
        elif action == "fixed":
            values = {"status": "fixed", "fixed_by": principal.user_name, "fixed_at": _now()}
            written = await office.write(principal, "hazards", hazard_id, values, seen)
        elif action == "verify":
            photo = await _photo(request)
            if photo is None:
                return render_page(
                    request, "error", principal, status_code=400, message="verify with a photo"
                )
            # Only the new photo is added: the ones shown are not in ``seen``, so none is removed.
            values = {"status": "verified", "verified_by": principal.user_name, "verified_at": _now()}
            written = await office.write(principal, "hazards", hazard_id, values | {"photos": [photo]}, seen)
        else:
            return render_page(
                request, "error", principal, status_code=400, message=f"unknown action {action!r}"
            )
    except GridsyncError as error:
        return render_page(request, "error", principal, status_code=error.status, message=error.message)
    return written_answer(request, principal, written, "/admin/hazards")
