"""The import page: upload a spreadsheet, see the dry run row by row, then apply it.

The uploaded file waits in the temporary directory under a random token between the preview
and the apply (the apply form carries the token, not the file); it is removed once applied."""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.response import Template

from server.desk.forms import desk
from server.desk.imports import Importer, ImportReport
from server.desk.mappings import load_mapping, save_mapping
from server.desk.spreadsheets import IMPORTABLE
from server.errors import GridsyncError
from server.pages.rendering import first_value, posted_form, render_page, signed_in_admin

__all__ = ["import_apply", "import_page", "import_preview"]

_TOKEN = re.compile(r"^[0-9a-f]{32}\Z")
_SUFFIXES = (".xlsx", ".xlsm", ".csv")


def _stash(token: str, suffix: str) -> Path:
    return Path(tempfile.gettempdir()) / f"gridsync-import-{token}{suffix}"


def _mapping(text: str | None) -> dict[str, str]:
    if not text or not text.strip():
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        raise GridsyncError(400, "bad_mapping", "the column mapping is not JSON") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
        raise GridsyncError(400, "bad_mapping", "the column mapping maps column names to field names")
    return {str(k): v for k, v in loaded.items()}


def _view(request: Request[Any, Any, Any], principal: Any, **shown: Any) -> Template:
    values: dict[str, Any] = {
        "report": None,
        "token": None,
        "suffix": None,
        "collection": "households",
        "community": None,
        "mapping": "",
        "error": None,
        "collections": IMPORTABLE,
    } | shown
    return render_page(request, "desk/import", principal, **values)


@get("/import", name="desk-import", include_in_schema=False)
async def import_page(request: Request[Any, Any, Any]) -> Template:
    """The upload form, with the office's saved mapping for the chosen collection."""
    principal = await signed_in_admin(request)
    collection = request.query_params.get("collection") or "households"
    community = request.query_params.get("community") or None
    saved = await load_mapping(request.app.state.store.engine, community, collection)
    mapping = json.dumps(saved, ensure_ascii=False) if saved else ""
    return _view(request, principal, collection=collection, community=community, mapping=mapping)


async def _run(
    request: Request[Any, Any, Any], principal: Any, form: dict[str, list[str]], path: Path, *, apply: bool
) -> ImportReport:
    collection = first_value(form, "collection") or ""
    community = first_value(form, "community") or None
    engine = request.app.state.store.engine
    mapping = _mapping(first_value(form, "mapping"))
    if mapping:
        await save_mapping(engine, community, collection, mapping)  # the office's, for next time
    else:
        mapping = await load_mapping(engine, community, collection)
    importer = Importer(desk(request), collection, principal=principal, community=community, mapping=mapping)
    with path.open("rb") as data:
        return await (importer.apply(path, data) if apply else importer.dry_run(path, data))


@post("/import", name="desk-import-preview", include_in_schema=False)
async def import_preview(request: Request[Any, Any, Any]) -> Template:
    """Keep the upload under a token and show the dry run."""
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    upload = (await request.form()).get("file")
    shown = {k: first_value(form, k) for k in ("collection", "community", "mapping")}
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _view(request, principal, error="choose a file", **shown)
    suffix = Path(upload.filename).suffix.lower()
    suffix = suffix if suffix in _SUFFIXES else ".xlsx"
    token = secrets.token_hex(16)
    path = _stash(token, suffix)
    path.write_bytes(await upload.read())
    try:
        report = await _run(request, principal, form, path, apply=False)
    except GridsyncError as error:
        return _view(request, principal, error=error.message, **shown)
    return _view(request, principal, report=report, token=token, suffix=suffix, **shown)


@post("/import/apply", name="desk-import-apply", include_in_schema=False)
async def import_apply(request: Request[Any, Any, Any]) -> Template:
    principal = await signed_in_admin(request)
    form = await posted_form(request)
    token, suffix = first_value(form, "token") or "", first_value(form, "suffix") or ""
    shown = {k: first_value(form, k) for k in ("collection", "community", "mapping")}
    path = _stash(token, suffix)
    if not _TOKEN.match(token) or suffix not in _SUFFIXES or not path.exists():
        return _view(request, principal, error="the preview expired: upload the file again", **shown)
    try:
        report = await _run(request, principal, form, path, apply=True)
    except GridsyncError as error:
        return _view(request, principal, error=error.message, **shown)
    if not report.errors:
        path.unlink(missing_ok=True)
    await request.app.state.accounts.audit(
        principal,
        "import",
        report.collection,
        community_id=shown["community"],
        created=report.created,
        changed=report.changed,
        errors=report.errors,
        changes=report.changes,
    )
    return _view(request, principal, report=report, **shown)
