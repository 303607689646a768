"""``GET /v1/protocol/schema``: everything a client needs to validate its changes offline.

The JSON Schema of every protocol message, every collection with its fields (the JSON Schema of
their values, allowed values, links, state machines) and every ``code`` the server answers with.
All of it is derived from the declarations (schemas/collections.py, schemas/codes.py), never
written twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.codes import CODE_MEANINGS, Code
from schemas.collections import CollectionSpec, FieldSpec, MergePolicy
from schemas.problem import Problem
from schemas.protocol import (
    PROTOCOL_VERSION,
    ExchangeResponse,
    PullResponse,
    PushRequest,
    PushResponse,
    RecordView,
    SnapshotResponse,
)

__all__ = ["CodeInfo", "CollectionInfo", "FieldInfo", "ProtocolSchema", "Transition", "describe_protocol"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Transition(msgspec.Struct, kw_only=True):
    """Where a state-machine field may go from one value; ``from`` null: the record has none yet."""

    from_: str | None = msgspec.field(name="from")
    to: list[str]


class FieldInfo(msgspec.Struct, kw_only=True):
    """One field. A ``set`` field is written element by element (``add``/``remove``): ``schema``
    is then the schema of one element."""

    policy: MergePolicy
    ops: list[str]
    schema: dict[str, Any]
    nullable: bool
    description: str
    # The collection whose record this field names; ``ref_required``: that record must exist
    # on the server (or be written by the same batch), else ``unknown_reference``.
    ref: str | None = None
    ref_required: bool = False
    # The values a choice field allows (also in ``schema``).
    choices: list[Any] | None = None
    # A state machine: judged from the value the device saw (``pred``), else
    # ``illegal_transition_from_<value>``.
    transitions: list[Transition] | None = None
    # Shown masked in lists and to roles that may not read it whole.
    masked: bool = False


class CollectionInfo(msgspec.Struct, kw_only=True):
    description: str
    fields: dict[str, FieldInfo]
    # Every field written once, never edited or deleted (``append_only``).
    append_only: bool
    # At most one of these fields holds a value (``one_place_only``).
    exclusive: list[str]
    # Link fields that place a record in the community > grid > building > household tree, most
    # specific first; the first with a value wins.
    scope_links: list[str]


class CodeInfo(msgspec.Struct, kw_only=True):
    code: Code
    meaning: str


class ProtocolSchema(msgspec.Struct, kw_only=True):
    schema_dialect: str = msgspec.field(name="$schema")
    protocol: int
    defs: dict[str, Any] = msgspec.field(name="$defs")
    collections: dict[str, CollectionInfo]
    codes: list[CodeInfo]


def _ops(spec: FieldSpec) -> list[str]:
    return ["set"] if spec.policy == "scalar" else ["add", "remove"]


def _field(spec: FieldSpec) -> FieldInfo:
    transitions = None
    if spec.transitions is not None:
        transitions = [
            Transition(from_=value, to=sorted(moves))
            for value, moves in sorted(spec.transitions.items(), key=lambda item: item[0] or "")
        ]
    return FieldInfo(
        policy=spec.policy,
        ops=_ops(spec),
        schema=msgspec.json.schema(spec.type),
        nullable=spec.nullable,
        description=spec.description,
        ref=spec.ref,
        ref_required=spec.ref is not None and spec.ref_required,
        choices=list(spec.choices) or None,
        transitions=transitions,
        masked=spec.masked,
    )


def _collection(spec: CollectionSpec) -> CollectionInfo:
    return CollectionInfo(
        description=spec.description,
        fields={name: _field(field) for name, field in spec.fields.items()},
        append_only=spec.append_only,
        exclusive=list(spec.exclusive),
        scope_links=list(spec.scope_links),
    )


_MESSAGES = (PushRequest, PushResponse, PullResponse, ExchangeResponse, SnapshotResponse, RecordView, Problem)


def describe_protocol(collections: Mapping[str, CollectionSpec]) -> ProtocolSchema:
    """The protocol schema of a server that declares ``collections``."""
    _, definitions = msgspec.json.schema_components(_MESSAGES, ref_template="#/$defs/{name}")
    return ProtocolSchema(
        schema_dialect=JSON_SCHEMA_DIALECT,
        protocol=PROTOCOL_VERSION,
        defs=definitions,
        collections={name: _collection(spec) for name, spec in collections.items()},
        codes=[CodeInfo(code=code, meaning=meaning) for code, meaning in CODE_MEANINGS.items()],
    )
