"""How a push judges its changes when the caller tries to game it: decoy changes that would
move the scope check, ``pred`` entries that reach into other records, fields or elements, and
the duplicate answer used as an oracle for values the caller may not read."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from schemas.protocol import Change
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.settings import Settings
from server.sync.horizon import compact
from tests.factories import ID_NUMBER, TWO_COMMUNITIES, add, change_id, enroll_user, remove, set_

Client = TestClient  # type: ignore[type-arg]

# (collection, id, fields) pushed by a district-wide device; parents first.
DISTRICT: list[tuple[str, str, dict[str, Any]]] = [
    *TWO_COMMUNITIES,
    ("hazards", "z1", {"household_id": "h1", "category": "gas"}),
    ("requests", "q1", {"household_id": "h1", "title": "Leaking pipe", "dispatched_to": "acme"}),
    ("requests", "q2", {"household_id": "h2", "title": "Broken door", "dispatched_to": "acme"}),
    ("checkins", "k1", {"household_id": "h1", "day": "2026-12-01"}),
    ("points", "p1", {"resident_id": "r1", "kind": "earned", "points": 5}),
]
USERS = {
    "worker1": ("grid_worker", UserScope(communities=("c1",), grids=("g1",))),
    "volunteer1": ("volunteer", UserScope(communities=("c1",), buildings=("b1",))),
    "admin2": ("community_admin", UserScope(communities=("c2",))),
    "handler": ("handler", UserScope(company="acme")),
}
LOOP = ("submitted", "dispatched", "accepted", "done", "rated")


class District:
    """The seeded district: its tokens by user, and the ids of the changes that wrote it."""

    def __init__(self, client: Client, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens
        self.written: dict[tuple[str, str, str], Change] = {}

    def push(self, user: str | None, *changes: Change) -> list[dict[str, Any]]:
        """Push as ``user`` (None: the district-wide device); the results, in order."""
        body = {"replica_id": "p", "changes": [msgspec.to_builtins(c) for c in changes]}
        headers = {} if user is None else {"authorization": f"Bearer {self.tokens[user]}"}
        reply = self.client.post("/v1/sync/push", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        results: list[dict[str, Any]] = reply.json()["results"]
        return results

    def seed(self, *changes: Change) -> None:
        assert [r["status"] for r in self.push(None, *changes)] == ["applied"] * len(changes)
        for change in changes:
            assert change.field is not None
            self.written[(change.collection, change.record_id, change.field)] = change

    def fields(self, collection: str, record_id: str) -> dict[str, Any]:
        reply = self.client.get(f"/v1/records/{collection}/{record_id}")
        assert reply.status_code == 200, reply.text
        fields: dict[str, Any] = reply.json()["fields"]
        return fields

    def exists(self, collection: str, record_id: str) -> bool:
        return self.client.get(f"/v1/records/{collection}/{record_id}").status_code == 200


def _status(status: str, *pred: str, record: str = "q1") -> Change:
    """A request's status, written over the changes named in ``pred``."""
    return set_("status", status, record=record, collection="requests", pred=pred)


@pytest.fixture
def district(client: Client, settings: Settings) -> District:
    tokens = {name: asyncio.run(enroll_user(settings, name, *user)) for name, user in USERS.items()}
    seeded = District(client, tokens)
    seeded.seed(
        *(
            set_(name, value, record=record_id, collection=collection)
            for collection, record_id, fields in DISTRICT
            for name, value in fields.items()
        )
    )
    for record_id in ("q1", "q2"):
        for status in LOOP[:3]:
            previous = seeded.written.get(("requests", record_id, "status"))
            pred = (previous.id,) if previous else ()
            seeded.seed(_status(status, *pred, record=record_id))
    return seeded


def _rejected(result: dict[str, Any], code: str) -> bool:
    return result["status"] == "rejected" and result["code"] == code


# Decoys: a change the push rejects, then one that only the decoy would let through.


def test_a_volunteers_decoy_household_move_does_not_let_a_checkin_in_elsewhere(district: District) -> None:
    """The decoy would put h3 (another community) in the volunteer's building."""
    results = district.push(
        "volunteer1",
        set_("building_id", "b1", record="h3"),
        set_("household_id", "h3", record="k9", collection="checkins"),
        set_("signal", True, record="k9", collection="checkins"),
    )
    assert all(_rejected(r, "out_of_scope") for r in results), results
    assert not district.exists("checkins", "k9")
    assert district.fields("households", "h3")["building_id"] == "b3"


def test_a_decoy_building_move_does_not_carry_a_household_to_another_grid(district: District) -> None:
    results = district.push(
        "worker1",
        set_("grid_id", "g1", record="b2", collection="buildings"),
        set_("building_id", "b2", record="h1"),
    )
    assert [r["code"] for r in results] == ["out_of_scope", "out_of_scope"]
    assert district.fields("households", "h1")["building_id"] == "b1"
    assert district.fields("buildings", "b2")["grid_id"] == "g2"


def test_a_decoy_grid_move_does_not_carry_a_building_to_another_community(district: District) -> None:
    results = district.push(
        "admin2",
        set_("community_id", "c2", record="g1", collection="grids"),
        set_("grid_id", "g1", record="b3", collection="buildings"),
    )
    assert [r["code"] for r in results] == ["out_of_scope", "out_of_scope"]
    assert district.fields("buildings", "b3")["grid_id"] == "g3"
    assert district.fields("grids", "g1")["community_id"] == "c1"


def test_a_decoy_resident_move_does_not_let_a_points_entry_in_elsewhere(district: District) -> None:
    results = district.push(
        "worker1",
        set_("household_id", "h1", record="r2", collection="residents"),
        set_("resident_id", "r2", record="p9", collection="points"),
        set_("kind", "earned", record="p9", collection="points"),
    )
    assert all(_rejected(r, "out_of_scope") for r in results), results
    assert not district.exists("points", "p9")


def test_a_decoy_of_a_new_parent_places_nothing_under_it(district: District) -> None:
    """A new household whose only link is refused is placed nowhere: nothing goes under it."""
    results = district.push(
        "worker1",
        set_("building_id", "b2", record="h9"),
        set_("address", "9-909", record="h9"),
        set_("household_id", "h9", record="v9", collection="visits"),
    )
    assert all(_rejected(r, "out_of_scope") for r in results), results
    assert not district.exists("visits", "v9")


# Every link field: a decoy that would move the record out, then a change the caller may make.
LINKS = [
    ("households", "h1", "building_id", "b2", "notes"),
    ("buildings", "b1", "grid_id", "g2", "notes"),
    ("residents", "r1", "household_id", "h2", "notes"),
    ("visits", "v1", "household_id", "h2", "notes"),
    ("hazards", "z1", "household_id", "h2", "description"),
    ("requests", "q1", "household_id", "h2", "title"),
    ("checkins", "k1", "household_id", "h2", "notes"),
]


@pytest.mark.parametrize(("collection", "record_id", "link", "elsewhere", "other"), LINKS)
def test_a_decoy_does_not_spoil_a_legitimate_change_of_the_same_record(
    district: District, collection: str, record_id: str, link: str, elsewhere: str, other: str
) -> None:
    held = district.fields(collection, record_id)[link]
    results = district.push(
        "worker1",
        set_(link, elsewhere, record=record_id, collection=collection),
        set_(other, "written after the decoy", record=record_id, collection=collection),
    )
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "out_of_scope"), ("applied", None)]
    fields = district.fields(collection, record_id)
    assert fields[link] == held
    assert fields[other] == "written after the decoy"


@pytest.mark.parametrize(
    ("collection", "decoy", "link"),
    [
        ("points", ("resident_id", "r2"), ("resident_id", "r1")),
        ("hazards", ("grid_id", "g3"), ("household_id", "h1")),
    ],
)
def test_a_decoy_link_does_not_count_for_the_rules_either(
    district: District, collection: str, decoy: tuple[str, str], link: tuple[str, str]
) -> None:
    """A ledger entry's link is written once, a hazard is in one place: a refused decoy link
    must not take that one write or that one place from the link allowed after it."""
    other = ("kind", "earned") if collection == "points" else ("category", "fire")
    results = district.push(
        "worker1",
        set_(*decoy, record="n9", collection=collection),
        set_(*link, record="n9", collection=collection),
        set_(*other, record="n9", collection=collection),
    )
    assert [(r["status"], r["code"]) for r in results] == [
        ("rejected", "out_of_scope"),
        ("applied", None),
        ("applied", None),
    ]
    fields = district.fields(collection, "n9")
    assert fields[link[0]] == link[1]
    assert decoy[0] == link[0] or decoy[0] not in fields


def test_a_refused_move_then_an_allowed_one_places_the_record_by_the_allowed_one(district: District) -> None:
    district.seed(set_("grid_id", "g1", record="b4", collection="buildings"))
    # The decoy carries the later hlc: judged with it, the allowed move would look outside too.
    allowed = set_("building_id", "b4", record="h1", at=10_000_000)
    decoy = set_("building_id", "b2", record="h1", at=20_000_000)
    results = district.push("worker1", decoy, allowed, set_("notes", "moved next door", record="h1"))
    assert [r["status"] for r in results] == ["rejected", "applied", "applied"]
    assert district.fields("households", "h1")["building_id"] == "b4"


def test_a_new_household_and_its_link_may_come_in_any_order(district: District) -> None:
    results = district.push(
        "worker1",
        set_("household_id", "h9", record="v9", collection="visits"),
        set_("address", "9-909", record="h9"),
        set_("building_id", "b1", record="h9"),
    )
    assert [r["status"] for r in results] == ["applied"] * 3
    assert district.fields("visits", "v9")["household_id"] == "h9"


# pred: only changes of the same record and field (a set field: of the same element) count.


def test_a_pred_naming_another_records_change_is_refused_and_echoes_nothing(district: District) -> None:
    id_number = district.written[("residents", "r1", "id_number")]
    results = district.push("worker1", _status("rated", id_number.id))
    assert _rejected(results[0], "foreign_pred"), results
    assert ID_NUMBER not in results[0]["code"] + results[0]["message"]
    assert ID_NUMBER[4:-4] not in results[0]["message"]


def test_a_handler_cannot_borrow_another_requests_status(district: District) -> None:
    q1 = district.written[("requests", "q1", "status")]
    for status in LOOP[3:]:
        q1 = _status(status, q1.id)
        district.seed(q1)
    accepted_elsewhere = district.written[("requests", "q2", "status")]
    results = district.push("handler", _status("done", accepted_elsewhere.id))
    assert _rejected(results[0], "foreign_pred"), results
    assert district.fields("requests", "q1")["status"] == "rated"


def test_a_pred_naming_another_field_of_the_record_is_refused(district: District) -> None:
    title = district.written[("requests", "q1", "title")]
    results = district.push("worker1", _status("cancelled", title.id))
    assert _rejected(results[0], "foreign_pred"), results
    assert district.fields("requests", "q1")["status"] == "accepted"


def test_a_transition_is_judged_from_the_records_own_status(district: District) -> None:
    status = district.written[("requests", "q1", "status")]
    results = district.push(
        "worker1",
        _status("rated", status.id),
        _status("done", status.id),
    )
    assert [(r["status"], r["code"]) for r in results] == [
        ("rejected", "illegal_transition_from_accepted"),
        ("applied", None),
    ]


def test_a_rule_never_speaks_of_a_record_outside_the_callers_scope(district: District) -> None:
    """q2 is another grid's; its status must not show through a rule's answer."""
    results = district.push(
        "volunteer1",
        _status("rated", change_id(), record="q2"),
    )
    assert _rejected(results[0], "out_of_scope"), results
    assert "accepted" not in results[0]["message"]
    # A rule's answer about a record the caller may read names no stored value either.
    results = district.push("worker1", set_("building_id", "b1", record="z1", collection="hazards"))
    assert _rejected(results[0], "one_place_only"), results
    assert "'h1'" not in results[0]["message"]


def test_a_remove_takes_out_only_the_element_its_pred_adds(district: District) -> None:
    q_added = add("tags", "q", record="h1")
    address = district.written[("households", "h1", "address")]
    assert district.push(None, q_added)[0]["status"] == "applied"
    results = district.push(
        "worker1",
        remove("tags", "other", pred=(q_added.id,), record="h1"),
        remove("tags", "q", pred=(address.id,), record="h1"),
    )
    assert all(_rejected(r, "foreign_pred") for r in results), results
    assert district.fields("households", "h1")["tags"] == ["q"]
    results = district.push("worker1", remove("tags", "q", pred=(q_added.id,), record="h1"))
    assert results[0]["status"] == "applied"
    assert "tags" not in district.fields("households", "h1")


def test_a_remove_naming_an_add_of_another_record_is_refused(district: District) -> None:
    elsewhere = add("tags", "q", record="h2")
    mine = add("tags", "q", record="h1")
    assert [r["status"] for r in district.push(None, elsewhere, mine)] == ["applied", "applied"]
    results = district.push("worker1", remove("tags", "q", pred=(elsewhere.id,), record="h1"))
    assert _rejected(results[0], "foreign_pred"), results
    assert district.fields("households", "h1")["tags"] == ["q"]


# duplicate / id_reused answer only from what the caller may read.


def _guess(change: Change, value: Any) -> Change:
    return msgspec.structs.replace(change, value=value)


def test_resending_a_masked_change_does_not_tell_a_right_guess_from_a_wrong_one(district: District) -> None:
    pulled = district.written[("residents", "r1", "id_number")]
    right = district.push("worker1", _guess(pulled, ID_NUMBER))
    wrong = district.push("worker1", _guess(pulled, ID_NUMBER[:4] + "0000000000" + ID_NUMBER[-4:]))
    assert right == wrong
    assert right[0]["status"] == "duplicate"
    # What the caller may read still tells a reused id from a retry.
    assert _rejected(district.push("worker1", _guess(pulled, "110101199001019999"))[0], "id_reused")
    # A district admin reads the whole number, so it is compared whole.
    assert district.push(None, _guess(pulled, ID_NUMBER))[0]["status"] == "duplicate"
    assert _rejected(district.push(None, _guess(pulled, ID_NUMBER[:4] + "0" * 10 + "1234"))[0], "id_reused")


def test_resending_a_change_of_a_record_outside_scope_answers_the_same_for_any_content(
    district: District,
) -> None:
    hidden = district.written[("residents", "r2", "name")]
    exact = district.push("worker1", hidden)
    guessed = district.push("worker1", _guess(hidden, "Zhang San"))
    assert exact == guessed
    assert _rejected(exact[0], "id_reused")
    assert district.push(None, hidden)[0]["status"] == "duplicate"


async def _compact_everything(settings: Settings) -> None:
    """Compact every change that is no head: as if every phone had been away for long."""
    engine = create_engine(settings.database_url)
    try:
        far = int(time.time() * 1000) + 10 * settings.max_offline_ms
        assert (await compact(engine, settings, now_ms=far)).compacted > 0
    finally:
        await engine.dispose()


def test_resending_a_compacted_change_does_not_tell_a_guess_either(
    district: District, settings: Settings
) -> None:
    number = district.written[("residents", "r1", "id_number")]
    hidden = district.written[("residents", "r2", "name")]
    district.seed(
        set_("id_number", "11010119900101567X", record="r1", collection="residents", pred=(number.id,)),
        set_("name", "Li Lei Sr.", record="r2", collection="residents", pred=(hidden.id,)),
    )
    asyncio.run(_compact_everything(settings))
    right = district.push("worker1", _guess(number, ID_NUMBER))
    wrong = district.push("worker1", _guess(number, ID_NUMBER[:4] + "0000000000" + ID_NUMBER[-4:]))
    assert right == wrong
    assert right[0]["status"] == "duplicate"
    # Outside the caller's scope: the same answer for the change itself and for a guess.
    assert district.push("worker1", hidden) == district.push("worker1", _guess(hidden, "Zhang San"))
    # The whole content still decides for a caller who may read it all.
    assert district.push(None, _guess(number, ID_NUMBER))[0]["status"] == "duplicate"
    assert _rejected(district.push(None, _guess(number, ID_NUMBER[:4] + "0" * 10 + "1234"))[0], "id_reused")


def test_a_refused_change_of_a_record_in_conflict_fails_nothing_else(district: District) -> None:
    """The push that refuses it still writes the rest, and the conflict stays as it was."""
    phone = district.written[("households", "h1", "address")]
    district.seed(
        set_("phone", "13800000001", record="h1", at=1, replica="a"),
        set_("phone", "13800000002", record="h1", at=2, replica="b"),
    )
    assert district.client.get("/v1/records/households/h1").json()["conflicts"]
    results = district.push(
        None,
        set_("notes", "names an address", record="h1", pred=(phone.id,)),
        set_("notes", "elsewhere", record="h2"),
    )
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "foreign_pred"), ("applied", None)]
    assert set(district.client.get("/v1/records/households/h1").json()["conflicts"]) == {"phone"}
