"""What the OpenAPI document says beyond Litestar's defaults, so that it is true to the wire.

Routes declare their answers with :func:`answer` and :func:`problems` (Litestar's ``responses=``)
and, when they read their body raw or negotiate their answer's encoding, what the wire carries
with :func:`negotiated` or :func:`bytes_body` (Litestar's ``operation_class=``). :class:`OpenAPIDocument` completes the document once at start-up: the
schemas of raw bodies (from their msgspec Structs), and a problem-details ``default`` answer on
every operation (any status not listed, e.g. 500 or 507). tests/conformance/test_openapi_contract.py
drives every operation and validates the real answers against the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, cast

import msgspec
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
)
from litestar.plugins import InitPluginProtocol

from schemas.codec import JSON, MSGPACK
from schemas.problem import PROBLEM_MEDIA_TYPE, Problem

__all__ = ["OpenAPIDocument", "answer", "bytes_body", "negotiated", "problems"]

_COMPONENT = "#/components/schemas/{name}"

# What each error status means on this server; the body's ``code`` says exactly which case.
_PROBLEM_DESCRIPTIONS = {
    400: "The request is malformed or a parameter is out of range (`code` says which)",
    401: "No token, or an unknown, expired or revoked one (`missing_token`, `invalid_token`, `bad_credentials`)",
    403: "The caller's role may not do this",
    404: "No such record, collection, conflict, user, device or attachment",
    409: "The state moved: start again from a snapshot, or review the conflict in `current`",
    413: "The body, the batch or the attachment is over the server's limit",
    415: "The Content-Type or Content-Encoding is not one the endpoint takes",
    422: "The uploaded bytes do not match their SHA-256 name",
    429: "Too many requests: wait for `Retry-After` seconds",
    503: "The database is not reachable: retry after `Retry-After` seconds",
    507: "The server's disk is full: nothing was stored, push again later",
}


def answer(data: Any, description: str, media_type: str = JSON, *, examples: bool = False) -> ResponseSpec:
    """A success answer of type ``data`` (a msgspec Struct), for handlers that encode their
    answer themselves (negotiated JSON or MessagePack, gzip) and so return bytes to Litestar."""
    return ResponseSpec(
        data_container=data, description=description, media_type=media_type, generate_examples=examples
    )


def problems(*statuses: int, shape: type[Problem] = Problem) -> dict[int, ResponseSpec]:
    """Problem-details answers for the error statuses a route can answer."""
    return {
        status: ResponseSpec(
            data_container=shape,
            description=_PROBLEM_DESCRIPTIONS.get(status) or HTTPStatus(status).phrase,
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


@dataclass
class _WireOperation(Operation):
    """An operation whose handler reads its body raw or encodes its answer itself: the class
    says what the body is and which media types the answer also comes in."""

    body: ClassVar[type[msgspec.Struct] | None] = None
    body_media_types: ClassVar[tuple[str, ...]] = ()
    body_description: ClassVar[str] = ""
    # Media types the success answer also comes in (by Accept), with the same schema as JSON's.
    answer_media_types: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.body_media_types:
            schema: Schema | Reference = (
                Reference(ref=_COMPONENT.format(name=self.body.__name__))
                if self.body is not None
                else Schema(type=OpenAPIType.STRING, description="The bytes, in any media type")
            )
            self.request_body = RequestBody(
                content={media_type: OpenAPIMediaType(schema=schema) for media_type in self.body_media_types},
                description=self.body_description,
                required=True,
            )
        for status, response in (self.responses or {}).items():
            if status.startswith("2") and isinstance(response, OpenAPIResponse) and response.content:
                json = response.content.get(JSON)
                if json is not None:
                    for media_type in self.answer_media_types:
                        response.content.setdefault(media_type, json)


def negotiated(body: type[msgspec.Struct] | None = None, description: str = "") -> type[Operation]:
    """``operation_class=`` for a sync route: its answer in JSON or MessagePack (by Accept) and,
    given ``body``, a body of that Struct read raw, in JSON or MessagePack (by Content-Type)."""
    return type(
        f"{body.__name__ if body else 'Negotiated'}Operation",
        (_WireOperation,),
        {
            "body": body,
            "body_media_types": (JSON, MSGPACK) if body is not None else (),
            "body_description": description,
            "answer_media_types": (MSGPACK,),
        },
    )


def bytes_body(description: str) -> type[Operation]:
    """``operation_class=`` for a route whose body is opaque bytes (an attachment)."""
    return type(
        "BytesBodyOperation",
        (_WireOperation,),
        {"body_media_types": ("*/*",), "body_description": description},
    )


def _problem_ref() -> Reference:
    return Reference(ref=_COMPONENT.format(name=Problem.__name__))


def _operations(path_item: PathItem) -> list[Operation]:
    methods = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    return [op for op in (getattr(path_item, method) for method in methods) if op is not None]


def complete(document: OpenAPI) -> None:
    """Add what routes cannot declare through Litestar: raw bodies' schemas, no body for 204,
    and a problem answer for any other status."""
    assert document.components.schemas is not None
    components: dict[str, Any] = cast(dict[str, Any], document.components.schemas)
    bodies: list[type[msgspec.Struct]] = []
    for path_item in (document.paths or {}).values():
        for operation in _operations(path_item):
            if isinstance(operation, _WireOperation) and operation.body is not None:
                bodies.append(operation.body)
            responses = operation.responses = operation.responses or {}
            for status, response in responses.items():
                # Litestar declares the 400 of a route with parameters in its own error shape; this
                # app answers every error, that one included, as problem details.
                declared_problem = isinstance(response, OpenAPIResponse) and PROBLEM_MEDIA_TYPE in (
                    response.content or {}
                )
                if status[0] in "45" and isinstance(response, OpenAPIResponse) and not declared_problem:
                    response.content = {PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=_problem_ref())}
            no_content = responses.get("204")
            if isinstance(no_content, OpenAPIResponse):
                # Litestar gives a handler returning ``Response[None]`` a JSON body; 204 has none.
                no_content.content = None
            responses.setdefault(
                "default",
                OpenAPIResponse(
                    description="Any other error (500 `internal_error`, 507 `storage_full`, ...)",
                    content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=_problem_ref())},
                ),
            )
    # msgspec's own schema of what it decodes (tagged unions, patterns, bounds); Litestar's
    # components of the same name describe the same Structs and are kept.
    _, generated = msgspec.json.schema_components([*bodies, Problem], ref_template=_COMPONENT)
    for name, schema in generated.items():
        components.setdefault(name, schema)


class OpenAPIDocument(InitPluginProtocol):
    """Completes the OpenAPI document at start-up, before it is first served."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.on_startup.append(_complete_app_document)
        return app_config


def _complete_app_document(app: Litestar) -> None:
    if app.openapi_config is not None:
        complete(app.openapi_schema)
