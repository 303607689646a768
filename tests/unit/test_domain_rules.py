"""The pure parts of the registry's rules: the request state machine, the ledger walk, the
declarations' invariants and the attachment sniffing."""

from __future__ import annotations

import datetime
import itertools

import pytest

from schemas.collections import COLLECTIONS, REQUEST_STATUSES, REQUEST_TRANSITIONS
from schemas.protocol import DeleteChange
from server.registry.attachments import sniff_media_type
from server.registry.reports import LedgerEntry, walk_ledger
from server.sync.rules import legal_moves
from sync.validate import validate_change
from tests.factories import set_

STATUS = COLLECTIONS["requests"].fields["status"]
LOOP = ["submitted", "dispatched", "accepted", "done", "rated"]


def test_the_loop_moves_one_step_at_a_time() -> None:
    for earlier, later in itertools.pairwise([None, *LOOP]):
        assert later in legal_moves(STATUS, [earlier])
    for index, status in enumerate(LOOP):
        skipped = set(LOOP[index + 2 :])
        assert not skipped & legal_moves(STATUS, [status]), status
    for status in REQUEST_STATUSES:
        assert status in legal_moves(STATUS, [status])  # rewriting the same status is allowed
        assert set(REQUEST_TRANSITIONS[status]) <= set(REQUEST_STATUSES)
    assert legal_moves(STATUS, ["cancelled"]) == {"cancelled", "reopened"}
    # From two heads (a resolution names both), the moves of either are allowed.
    assert legal_moves(STATUS, ["accepted", "cancelled"]) >= {"done", "reopened"}


def test_every_link_names_a_declared_collection_and_every_place_a_scope() -> None:
    for spec in COLLECTIONS.values():
        for name in spec.scope_links:
            assert spec.fields[name].ref in COLLECTIONS, (spec.name, name)
        for field in spec.fields.values():
            assert field.ref is None or field.ref in COLLECTIONS
        assert set(spec.exclusive) <= set(spec.fields)
        assert spec.scope_self is not None or spec.scope_links, spec.name


def test_choices_are_listed_when_a_value_is_not_one_of_them() -> None:
    rejection = validate_change(set_("status", "finished", collection="requests"), COLLECTIONS)
    assert rejection is not None
    assert rejection.code == "invalid_value"
    assert "allowed: submitted, dispatched, accepted, done, rated, cancelled, reopened" in rejection.message


def test_points_entries_cannot_be_edited_or_deleted_even_offline() -> None:
    edit = set_("points", 5, collection="points", pred=("0193a3c2-7d1e-7000-8000-00000000a001",))
    rejection = validate_change(edit, COLLECTIONS)
    assert rejection is not None
    assert rejection.code == "append_only"
    gone = DeleteChange(
        id="0193a3c2-7d1e-7000-8000-00000000a002",
        collection="points",
        record_id="p1",
        hlc="001764000000000-000000-r1",
    )
    assert getattr(validate_change(gone, COLLECTIONS), "code", None) == "append_only"
    assert validate_change(set_("points", 5, collection="points"), COLLECTIONS) is None


def test_the_ledger_is_walked_in_time_order() -> None:
    day = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)

    def entry(entry_id: str, kind: str, points: int, hours: int) -> LedgerEntry:
        return LedgerEntry(entry_id, "r1", kind, points, day + datetime.timedelta(hours=hours))

    entries = [
        entry("late-spend", "redeemed", 20, 5),
        entry("earn", "earned", 30, 1),
        entry("spend", "redeemed", 20, 3),
    ]
    assert walk_ledger(entries) == (30, 40, ["late-spend"])
    assert walk_ledger([entry("early-spend", "redeemed", 5, 0), entry("earn", "earned", 30, 1)]) == (
        30,
        5,
        ["early-spend"],
    )
    assert walk_ledger([]) == (0, 0, [])


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"RIFF1234WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7", "application/pdf"),
        (b"<html><script>", "application/octet-stream"),
    ],
)
def test_attachments_are_typed_by_their_bytes(content: bytes, media_type: str) -> None:
    assert sniff_media_type(content) == media_type
