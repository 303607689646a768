from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.collections import COLLECTIONS
from schemas.protocol import Change
from sync.client import Replica
from sync.hlc import MAX_FOLLOW_AHEAD_MS, HybridClock, format_hlc, hlc_wall_ms, parse_hlc
from sync.validate import ClockBound, check_clock, validate_batch, validate_change
from tests.factories import add, delete, remove, set_


@given(
    a=st.tuples(st.integers(0, 10**15 - 1), st.integers(0, 999_999)),
    b=st.tuples(st.integers(0, 10**15 - 1), st.integers(0, 999_999)),
)
def test_hlc_string_order_is_clock_order(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (format_hlc(*a, "r") < format_hlc(*b, "r")) == (a < b)


def test_clock_never_goes_backwards_and_moves_past_what_it_sees() -> None:
    wall = [1_000]
    clock = HybridClock("phone", now_ms=lambda: wall[0])
    first = clock.now()
    wall[0] = 500  # the phone's clock is set back
    second = clock.now()
    assert second > first
    clock.observe(format_hlc(9_000, 7, "other"))
    assert clock.now() > format_hlc(9_000, 7, "other")


def test_clock_ahead_of_its_bound_is_followed_only_up_to_the_bound() -> None:
    server = HybridClock("server", max_ahead_ms=60_000, now_ms=lambda: 1_000_000)
    before = server.now()
    assert server.observe(format_hlc(1_000_000 + 3_600_000, 0, "bad-phone")) is False
    assert parse_hlc(server.now()).wall_ms <= 1_000_000 + 60_000
    assert server.now() > before


@pytest.mark.parametrize(
    "received",
    [
        "999999999999999-999999-x",  # the largest hlc there is
        format_hlc(1_764_000_000_000 + 24 * 3600 * 1000, 0, "phone-a-day-ahead"),
        format_hlc(1_764_000_000_000 + MAX_FOLLOW_AHEAD_MS + 1, 0, "just-past-the-bound"),
    ],
)
def test_no_received_hlc_moves_a_phone_clock_past_its_bound(received: str) -> None:
    wall = [1_764_000_000_000]
    phone = HybridClock("phone", now_ms=lambda: wall[0])
    phone.observe(received)
    for _ in range(3):
        made = parse_hlc(phone.now())  # a valid 15-digit hlc: it parses
        assert made.wall_ms <= wall[0] + MAX_FOLLOW_AHEAD_MS
        wall[0] += 1


def test_a_received_hlc_within_the_bound_is_followed() -> None:
    phone = HybridClock("phone", now_ms=lambda: 1_764_000_000_000)
    ahead = format_hlc(1_764_000_000_000 + 30_000, 5, "slightly-fast")
    assert phone.observe(ahead) is True
    assert phone.now() > ahead


def test_a_clock_persisted_far_ahead_is_set_back_to_its_bound() -> None:
    """A phone whose stored clock was dragged to the largest hlc keeps making valid hlcs (a
    16-digit overflow was refused ``bad_hlc``), within the bound of its own wall time."""
    phone = HybridClock("phone", wall_ms=10**15 - 1, counter=999_999, now_ms=lambda: 1_764_000_000_000)
    first, second = parse_hlc(phone.now()), parse_hlc(phone.now())
    assert first.wall_ms == second.wall_ms == 1_764_000_000_000 + MAX_FOLLOW_AHEAD_MS
    assert second.counter > first.counter


def test_a_reference_client_with_a_clock_stored_far_ahead_still_edits(tmp_path: Path) -> None:
    path = tmp_path / "phone.db"
    Replica(path, "phone-1").close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', '999999999999999:999999')")
    phone = Replica(path, "phone-1")
    change = phone.set("households", "h1", "notes", "written after the clock was poisoned")
    assert hlc_wall_ms(change.hlc) <= time.time_ns() // 1_000_000 + MAX_FOLLOW_AHEAD_MS
    assert phone.record("households", "h1").fields["notes"].startswith("written")
    phone.close()


def test_an_hlc_too_far_ahead_of_the_server_is_refused_with_a_code() -> None:
    bound = ClockBound(now_ms=1_764_000_000_000, max_ahead_ms=7 * 24 * 3600 * 1000)
    assert check_clock(format_hlc(bound.now_ms + bound.max_ahead_ms, 0, "p"), bound) is None
    assert check_clock(format_hlc(bound.now_ms - 10**9, 0, "p"), bound) is None  # behind: fine
    refused = check_clock("999999999999999-999999-x", bound)
    assert refused is not None
    assert refused.code == "clock_too_far_ahead"
    assert "7 days allowed" in refused.message
    assert check_clock(format_hlc(bound.now_ms + bound.max_ahead_ms + 1, 0, "p"), bound) is not None


def test_counter_overflow_borrows_a_millisecond_instead_of_failing() -> None:
    clock = HybridClock("phone", wall_ms=5, counter=999_999, now_ms=lambda: 0)
    assert parse_hlc(clock.now())[:2] == (6, 0)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (set_("phone", "1", id="not-a-uuid"), "bad_id"),
        (set_("phone", "1", record="bad id with spaces"), "bad_record_id"),
        (set_("phone", "1", collection="cats"), "unknown_collection"),
        (set_("colour", "red"), "unknown_field"),
        (set_("tags", "x"), "wrong_op"),
        (add("phone", "1"), "wrong_op"),
        (set_("members_count", -1), "invalid_value"),
        (set_("members_count", "3"), "invalid_value"),
        (set_("members_count", True), "invalid_value"),
        (set_("phone", "call me"), "invalid_value"),
        (set_("notes", "x" * 10_001), "invalid_value"),
        (add("tags", "Not A Tag"), "invalid_value"),
        (remove("tags", "x", pred=()), "empty_pred"),
        (set_("phone", "1", pred=("nope",)), "bad_pred"),
        # A trailing newline is not part of any shape (a bare ``$`` let it through).
        (set_("phone", "1", id=f"{uuid.uuid4()}\n"), "bad_id"),
        (set_("phone", "1", id=f"{uuid.uuid4()}\n{uuid.uuid4()}"), "bad_id"),
        (set_("phone", "1", record="h-1\n"), "bad_record_id"),
        (set_("phone", "1", pred=(f"{uuid.uuid4()}\n",)), "bad_pred"),
    ],
)
def test_invalid_changes_are_named_by_code(change: Change, code: str) -> None:
    rejection = validate_change(change, COLLECTIONS)
    assert rejection is not None
    assert rejection.code == code
    assert rejection.message
    # Among valid changes, judged as one batch, the change gets the same verdict.
    batch = [set_("phone", "138 0000", record=f"h-{n}") for n in range(3)]
    assert validate_batch([*batch, change, *batch], COLLECTIONS) == [None] * 3 + [rejection] + [None] * 3


def test_valid_changes_pass() -> None:
    for change in (
        set_("phone", "138 0000"),
        set_("phone", None),
        add("tags", "elderly-alone"),
        delete(pred=()),
    ):
        assert validate_change(change, COLLECTIONS) is None
