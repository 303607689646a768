from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.collections import COLLECTIONS
from schemas.protocol import Change
from sync.hlc import HybridClock, format_hlc, parse_hlc
from sync.validate import validate_batch, validate_change
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


def test_clock_ahead_of_its_bound_is_not_followed() -> None:
    server = HybridClock("server", max_ahead_ms=60_000, now_ms=lambda: 1_000_000)
    before = server.now()
    assert server.observe(format_hlc(1_000_000 + 3_600_000, 0, "bad-phone")) is False
    assert parse_hlc(server.now()).wall_ms < 1_000_000 + 60_000
    assert server.now() > before


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
