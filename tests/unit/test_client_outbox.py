"""The reference client (sync/client.py): its change ids, what a push answer marks in its outbox,
and phone files made before the outbox index."""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

from schemas.protocol import ChangeResult, PushResponse
from sync.client import Replica, SyncReport
from sync.ids import new_change_id, uuid7


def test_change_ids_are_uuid7_ordered_by_the_time_they_were_made() -> None:
    made = uuid.UUID(uuid7(1_764_000_000_123, bytes(range(10))))
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert made.int >> 80 == 1_764_000_000_123  # the first 48 bits are the Unix time in ms
    # Whatever their entropy, a later millisecond sorts after: the log's id index grows at its end.
    later = uuid7(1_764_000_000_124, b"\x00" * 10)
    assert str(made) < later < uuid7(1_764_000_000_124, b"\xff" * 10)
    assert uuid.UUID(new_change_id()).version == 7


def test_a_push_answer_marks_exactly_its_changes(tmp_path: Path) -> None:
    phone = Replica(tmp_path / "phone.db", "phone-1")
    for n in range(5):
        phone.set("households", f"h{n}", "phone", f"1380000000{n}")
    request = phone.push_request(4)
    assert request is not None
    phone.set("households", "h9", "notes", "made while the push was on its way")
    first, refused, *rest = request.changes
    results = [ChangeResult(id=first.id, status="applied")]
    results.append(ChangeResult(id=refused.id, status="rejected", code="bad_value", message="no"))
    results += [ChangeResult(id=c.id, status="duplicate") for c in rest]
    report = SyncReport()
    answer = PushResponse(results=results, server_hlc=request.changes[-1].hlc, cursor="c")
    phone.accept_push_response(request, answer, report)
    assert report.pushed == 3
    assert phone.rejected() == [(refused.id, "bad_value", "no")]
    # Left to push: the fifth change, never sent, and the one made meanwhile.
    assert [(c.record_id, c.field) for c in phone.pending()] == [("h4", "phone"), ("h9", "notes")]
    statuses = dict(phone.db.execute("SELECT id, status FROM changes").fetchall())
    assert [statuses[c.id] for c in request.changes] == ["synced", "rejected", "synced", "synced"]


def test_a_phone_file_from_before_the_outbox_index_keeps_its_changes(tmp_path: Path) -> None:
    path = tmp_path / "old-phone.db"
    phone = Replica(path, "phone-2")
    phone.set("households", "h1", "phone", "13800000001")
    phone.close()
    with closing(sqlite3.connect(path)) as old:  # the file as the earlier client left it
        old.execute("DROP INDEX ix_changes_outbox")
        old.execute("CREATE INDEX ix_changes_pending ON changes (status, local_seq)")
        old.commit()
    phone = Replica(path)
    indexes = {row[0] for row in phone.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "ix_changes_outbox" in indexes
    assert "ix_changes_pending" not in indexes
    assert [c.record_id for c in phone.pending()] == ["h1"]
    assert phone.replica_id == "phone-2"
