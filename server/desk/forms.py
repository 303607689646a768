"""What the desk's forms share: the desk of a request, query values, the heads a page showed,
form text typed as field values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.response import Redirect

from server.access.principals import Principal
from server.desk.service import Desk, Written
from server.errors import GridsyncError
from server.pages.rendering import render_page

__all__ = ["desk", "parse_seen", "query_value", "refused_message", "typed_values", "written_answer"]


def desk(request: Request[Any, Any, Any]) -> Desk:
    return Desk(request.app.state.store, request.app.state.settings)


def query_value(request: Request[Any, Any, Any], name: str) -> str | None:
    value = request.query_params.get(name)
    return str(value).strip() if value else None


def parse_seen(form: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The heads the page showed, sent back as ``seen.<field>`` = comma-separated change ids."""
    return {
        key.split(".", 1)[1]: [h for h in values[0].split(",") if h]
        for key, values in form.items()
        if key.startswith("seen.")
    }


def typed_values(desk: Desk, collection: str, raw: Mapping[str, str]) -> dict[str, Any]:
    """Form text as field values: a set field from comma-separated text, numbers and booleans
    as JSON, blank as null; each checked against the field's type (400 ``invalid_value``)."""
    spec = desk.registry.spec(collection)
    values: dict[str, Any] = {}
    for name, text in raw.items():
        field = spec.fields.get(name)
        if field is None:
            raise GridsyncError(400, "unknown_field", f"{collection} have no field {name!r}")
        if field.policy == "set":
            values[name] = sorted(
                {part.strip() for part in text.replace("，", ",").split(",") if part.strip()}
            )
            continue
        if not text.strip():
            values[name] = None
            continue
        try:
            typed = msgspec.convert(text.strip(), field.type, strict=False)
        except msgspec.ValidationError as error:
            raise GridsyncError(400, "invalid_value", f"{name}: {error}") from None
        values[name] = msgspec.to_builtins(typed)
    return values


def refused_message(written: Written) -> str | None:
    return "; ".join(f"{r.code}: {r.message}" for r in written.refused) or None


def written_answer(
    request: Request[Any, Any, Any],
    principal: Principal,
    written: Written,
    done: str,
    *,
    refused_status: int = 409,
) -> Response[Any]:
    """After a desk form's write: the error page naming what was refused, else on to ``done``."""
    problem = refused_message(written)
    if problem:
        return render_page(request, "error", principal, status_code=refused_status, message=problem)
    return Redirect(done, status_code=303)
