"""Protocol v1 messages.

Changes are a tagged union on ``op``: one reused decoder turns a whole batch into typed
Structs, and the merge engine dispatches with ``match``. Wire messages tolerate unknown
fields so that a newer phone does not break an older server.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "AddChange",
    "Change",
    "ChangeResult",
    "ConflictHead",
    "DeleteChange",
    "ExchangeResponse",
    "PullResponse",
    "PulledChange",
    "PushEnvelope",
    "PushRequest",
    "PushResponse",
    "RecordFacts",
    "RecordRef",
    "RecordView",
    "RemoveChange",
    "SetChange",
    "SnapshotRecord",
    "SnapshotResponse",
    "rejected",
]

PROTOCOL_VERSION = 1

ResultStatus = Literal["applied", "duplicate", "rejected"]


class _ChangeBase(msgspec.Struct, tag_field="op", kw_only=True, frozen=True):
    id: str
    collection: str
    record_id: str
    hlc: str
    pred: tuple[str, ...] = ()


class SetChange(_ChangeBase, tag="set", frozen=True):
    """Write a scalar field. Supersedes the changes named in ``pred``."""

    field: str
    value: Any = None


class AddChange(_ChangeBase, tag="add", frozen=True):
    """Add an element to a set field (add-wins observed-remove set)."""

    field: str
    value: Any = None


class RemoveChange(_ChangeBase, tag="remove", frozen=True):
    """Remove the element whose adds are named in ``pred``."""

    field: str
    value: Any = None


class DeleteChange(_ChangeBase, tag="delete", frozen=True):
    """Delete the record; ``pred`` names every change the device saw as current in it."""

    field: None = None
    value: None = None


Change = SetChange | AddChange | RemoveChange | DeleteChange


class PushEnvelope(msgspec.Struct):
    """The push body with its changes still undecoded, so one bad change cannot fail the batch."""

    replica_id: str
    changes: list[msgspec.Raw]
    protocol: int = PROTOCOL_VERSION


class PushRequest(msgspec.Struct):
    """``POST /v1/sync/push`` body (the shape documented in OpenAPI)."""

    replica_id: str
    changes: list[Change]
    protocol: int = PROTOCOL_VERSION


class ChangeResult(msgspec.Struct):
    id: str | None
    status: ResultStatus
    code: str | None = None
    message: str | None = None
    conflict: bool = False


def rejected(change_id: str | None, code: str, message: str) -> ChangeResult:
    """The answer to a change turned down: ``code`` for the app, ``message`` for a person."""
    return ChangeResult(id=change_id, status="rejected", code=code, message=message)


class PushResponse(msgspec.Struct):
    results: list[ChangeResult]
    server_hlc: str
    cursor: str
    clock_skew_ms: int | None = None


class PulledChange(msgspec.Struct, kw_only=True):
    """A change as served by pull: the pushed change plus its server order ``seq``."""

    id: str
    collection: str
    record_id: str
    field: str | None
    op: str
    value: Any
    hlc: str
    pred: Any
    seq: int


class RecordRef(msgspec.Struct):
    collection: str
    id: str


class RecordFacts(msgspec.Struct, omit_defaults=True):
    """What supersession knows of a record beyond its heads: ``covered`` and ``pending`` as in
    ``SnapshotRecord``."""

    collection: str
    id: str
    covered: list[str] = []
    pending: dict[str, list[str]] = {}


class PullResponse(msgspec.Struct):
    changes: list[PulledChange]
    cursor: str
    more: bool
    # Records that left the caller's scope since the cursor: the phone drops them.
    left: list[RecordRef] = []
    # Records that entered the caller's scope (their heads are among ``changes``) and whose
    # state knows more than their heads: the phone folds these in as from a snapshot.
    facts: list[RecordFacts] = []


class ExchangeResponse(msgspec.Struct):
    """``POST /v1/sync/exchange``: the push's answer, then the page pulled after it, from one
    request (one round trip for a phone on a weak signal)."""

    push: PushResponse
    pull: PullResponse


class SnapshotRecord(msgspec.Struct, omit_defaults=True):
    """One record's merge state: its heads, and what supersession knows beyond them (both
    usually empty, and then left out): the heads some delete named (``covered``), and the ids
    named in a pred that the server has not received, with the kind of each namer (the field,
    ``""`` for a delete), so that such a change is born superseded when it arrives."""

    collection: str
    id: str
    heads: list[Change]
    covered: list[str] = []
    pending: dict[str, list[str]] = {}
    # When the record was written after ``sync_cursor`` (while the snapshot was paged): the seq
    # of its last write. A change of it pulled afterwards with a seq at or below this is already
    # in this state: the phone stores it without merging it again.
    seq: int = 0


class SnapshotResponse(msgspec.Struct):
    records: list[SnapshotRecord]
    cursor: str
    more: bool
    sync_cursor: str


class ConflictHead(msgspec.Struct, kw_only=True):
    change_id: str
    value: Any
    hlc: str
    replica_id: str
    op: str = "set"
    field: str | None = None


class RecordView(msgspec.Struct):
    collection: str
    id: str
    deleted: bool
    fields: dict[str, Any]
    conflicts: dict[str, list[ConflictHead]]
