"""The merge rules, example by example: what each kind of concurrent edit becomes."""

from __future__ import annotations

from schemas.collections import COLLECTIONS
from schemas.protocol import Change, RecordView
from sync.merge import DELETE_CONFLICT_KEY, RecordState, apply_batch, record_view
from tests.factories import add, delete, remove, set_

HOUSEHOLDS = COLLECTIONS["households"]


def view(*changes: Change) -> RecordView:
    state = RecordState()
    apply_batch({("households", "h1"): state}, list(changes), set())
    return record_view(state, HOUSEHOLDS, "h1")


def test_later_write_that_saw_the_earlier_one_wins_without_conflict() -> None:
    first = set_("phone", "111", at=1)
    second = set_("phone", "222", at=0, pred=(first.id,))  # even with an older clock
    result = view(first, second)
    assert result.fields == {"phone": "222"}
    assert result.conflicts == {}


def test_concurrent_writes_of_one_field_keep_both_and_show_the_newest() -> None:
    base = set_("phone", "100", at=1)
    a = set_("phone", "200", at=5, replica="a", pred=(base.id,))
    b = set_("phone", "300", at=7, replica="b", pred=(base.id,))
    result = view(base, a, b)
    assert result.fields["phone"] == "300"
    assert [h.value for h in result.conflicts["phone"]] == ["300", "200"]
    assert [h.replica_id for h in result.conflicts["phone"]] == ["b", "a"]


def test_concurrent_writes_of_the_same_value_are_not_a_conflict() -> None:
    a = set_("phone", "200", replica="a")
    b = set_("phone", "200", replica="b")
    assert view(a, b).conflicts == {}


def test_concurrent_writes_of_different_fields_merge() -> None:
    a = set_("phone", "200", replica="a")
    b = set_("address", "Building 3", replica="b")
    result = view(a, b)
    assert result.fields == {"phone": "200", "address": "Building 3"}
    assert result.conflicts == {}


def test_resolution_naming_all_heads_ends_the_conflict() -> None:
    a = set_("phone", "200", replica="a")
    b = set_("phone", "300", replica="b")
    resolved = set_("phone", "250", replica="admin", pred=(a.id, b.id))
    result = view(a, b, resolved)
    assert result.fields["phone"] == "250"
    assert result.conflicts == {}


def test_tags_are_add_wins() -> None:
    tagged = add("tags", "elderly-alone", replica="a")
    removed = remove("tags", "elderly-alone", pred=(tagged.id,), replica="a")
    concurrent = add("tags", "elderly-alone", replica="b")
    other = add("tags", "party-member", replica="b")
    assert view(tagged, removed).fields.get("tags", []) == []
    result = view(tagged, removed, concurrent, other)
    assert result.fields["tags"] == ["elderly-alone", "party-member"]
    assert result.conflicts == {}


def test_delete_that_saw_everything_deletes() -> None:
    a = set_("phone", "200")
    b = add("tags", "veteran")
    gone = delete(pred=(a.id, b.id))
    result = view(a, b, gone)
    assert result.deleted
    assert result.fields == {}


def test_edit_concurrent_with_delete_keeps_the_record_and_is_a_conflict() -> None:
    a = set_("phone", "200")
    gone = delete(pred=(a.id,), replica="a")
    visit_note = set_("notes", "visited, all fine", replica="b")
    result = view(a, gone, visit_note)
    assert not result.deleted
    assert result.fields == {"phone": "200", "notes": "visited, all fine"}
    heads = result.conflicts[DELETE_CONFLICT_KEY]
    assert {h.change_id for h in heads} == {gone.id, visit_note.id}


def test_restoring_a_deleted_record_brings_back_its_values() -> None:
    a = set_("phone", "200")
    gone = delete(pred=(a.id,))
    restore = set_("notes", "kept by admin", pred=(gone.id,))
    result = view(a, gone, restore)
    assert not result.deleted
    assert result.fields == {"phone": "200", "notes": "kept by admin"}


def test_a_change_whose_pred_has_not_arrived_is_superseded_once_it_does() -> None:
    first = set_("phone", "111", replica="a")
    second = set_("phone", "222", replica="b", pred=(first.id,))
    assert view(second, first) == view(first, second)
    assert view(second, first).conflicts == {}
