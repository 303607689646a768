"""Collections and their fields: the type of each field and the merge policy it follows.

Adding a collection is a matter of declaring it here. Two merge policies exist:

* ``scalar``: multi-value register. ``set`` writes it; concurrent writes with different
  values are kept as a conflict, and the value shown is the head with the greatest hlc.
* ``set``: add-wins observed-remove set. ``add`` and ``remove`` write it; never a conflict.

A declaration also says what the server checks beyond a value's type (``server/sync/rules.py``):
``ref`` (the record a link field names must exist; ``ref_holds``: and hold a value in a given
field, as a supervisor's ``party_member_kind``), ``transitions`` (a status that moves
through a state machine), ``exclusive`` (at most one of these fields holds a value) and
``append_only`` (every field of a record is written once; the record never changes or goes).
``scope_self`` and ``scope_links`` place a record in the community > grid > building > household
tree that the ``records`` table's scope columns index (``server/access/places.py``). docs/domain.md
lists every collection.
"""

from __future__ import annotations

import datetime
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from msgspec import Meta

__all__ = [
    "COLLECTIONS",
    "END",
    "REQUEST_STATUSES",
    "REQUEST_TRANSITIONS",
    "TASK_KINDS",
    "TASK_TRANSITIONS",
    "CollectionSpec",
    "FieldSpec",
    "MergePolicy",
    "ScopeLevel",
    "collection",
    "per_schema",
    "scalar",
    "set_of",
]

MergePolicy = Literal["scalar", "set"]
ScopeLevel = Literal["community_id", "grid_id", "building_id", "household_id"]

# The end of the text in patterns that clients read too (OpenAPI, the protocol schema): Python's
# ``$`` also matches before a final newline and ECMAScript has no ``\Z``; this means the same
# in both. tests/unit/test_patterns.py refuses a pattern ending in ``$``.
END = r"(?![\s\S])"

ShortText = Annotated[str, Meta(min_length=1, max_length=200)]
LongText = Annotated[str, Meta(max_length=10_000)]
PhoneNumber = Annotated[str, Meta(max_length=32, pattern=r"^[0-9+\-() ]*" + END)]
Count = Annotated[int, Meta(ge=0, le=1_000)]
Tag = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*" + END)]
Code = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*" + END)]
RecordRef = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}" + END)]
# Who did something: a worker's, handler's or volunteer's user id or name, as the app knows it.
Person = Annotated[str, Meta(min_length=1, max_length=64)]
# Mainland resident identity card number: 17 digits and a check character.
IdNumber = Annotated[str, Meta(pattern=r"^[0-9]{17}[0-9X]" + END)]
BirthYear = Annotated[int, Meta(ge=1900, le=2100)]
Floor = Annotated[int, Meta(ge=-5, le=200)]
Day = datetime.date
Moment = Annotated[datetime.datetime, Meta(tz=True)]
Satisfaction = Annotated[int, Meta(ge=1, le=5)]
PointsAmount = Annotated[int, Meta(ge=1, le=100_000)]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}" + END)]

VisitPurpose = Literal[
    "routine", "elderly-care", "hazard-check", "request-follow-up", "registry-update", "other"
]
HazardCategory = Literal["fire", "gas", "electrical", "structural", "water-leak", "road-collapse", "other"]
HazardSeverity = Literal["low", "medium", "high", "critical"]
HazardStatus = Literal["open", "in-hand", "fixed", "verified"]
RequestCategory = Literal[
    "repair", "plumbing", "electrical", "cleaning", "elderly-care", "dispute", "paperwork", "other"
]
RequestStatus = Literal["submitted", "dispatched", "accepted", "done", "rated", "cancelled", "reopened"]
PointsKind = Literal["earned", "redeemed"]
TaskKind = Literal["visit", "hazard-recheck", "request-follow-up", "no-signal", "other"]
TaskStatus = Literal["open", "done", "cancelled"]
FollowUpFinding = Literal["all-well", "needed-help", "not-at-home", "in-hospital", "other"]
# Where a request came in: the building chat group (楼栋群), a phone call, a visit, the office
# counter, a deliberation case.
RequestChannel = Literal["building-chat-group", "phone", "visit", "walk-in", "deliberation", "other"]

REQUEST_STATUSES: tuple[str, ...] = typing.get_args(RequestStatus)
# The five-step loop: resident orders, community dispatches, property company takes (accepted),
# party member supervises until done, resident rates. ``None`` is a request not yet submitted.
REQUEST_TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"submitted"}),
    "submitted": frozenset({"dispatched", "cancelled"}),
    "dispatched": frozenset({"accepted", "cancelled"}),
    "accepted": frozenset({"done", "cancelled"}),
    "done": frozenset({"rated", "reopened"}),
    "rated": frozenset({"reopened"}),
    "cancelled": frozenset({"reopened"}),
    "reopened": frozenset({"dispatched", "cancelled"}),
}

TASK_KINDS: tuple[str, ...] = typing.get_args(TaskKind)
# A task is open until a visit or check answers it (done) or the office drops it (cancelled);
# either may be opened again.
TASK_TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"open"}),
    "open": frozenset({"done", "cancelled"}),
    "done": frozenset({"open"}),
    "cancelled": frozenset({"open"}),
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: its merge policy and the msgspec type every value (or set element) must match."""

    name: str
    policy: MergePolicy
    type: Any
    nullable: bool = True
    description: str = ""
    # The collection whose record this field names, and whether that record must exist.
    ref: str | None = None
    ref_required: bool = True
    # A state machine: from a value (None: no value yet) to the values it may move to.
    transitions: Mapping[str | None, frozenset[str]] | None = None
    # Personal data shown masked in lists and exports (whole only to admins).
    masked: bool = False
    # A field the record this one names must hold a value in (a supervisor must be a party
    # member), and the code a change naming one without it is rejected with.
    ref_holds: tuple[str, str] | None = None
    # A set field's most elements, and the code an add beyond them is rejected with.
    max_elements: tuple[int, str] | None = None

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values a Literal-typed field allows (empty for other types)."""
        return typing.get_args(self.type) if typing.get_origin(self.type) is Literal else ()


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    description: str = ""
    # Each field written once, never deleted: a ledger entry. Corrections are new entries.
    append_only: bool = False
    # At most one of these fields holds a value (e.g. where a hazard is).
    exclusive: tuple[str, ...] = ()
    # The scope column that holds the record's own id (a community is its own community).
    scope_self: ScopeLevel | None = None
    # Link fields that place the record under a parent, most specific first; the first one
    # with a value wins.
    scope_links: tuple[str, ...] = ()


_Derived = TypeVar("_Derived")


def per_schema(
    derive: Callable[[Mapping[str, CollectionSpec]], _Derived],
) -> Callable[[Mapping[str, CollectionSpec]], _Derived]:
    """``derive`` of a collections mapping, made once per mapping (the schema is fixed for the
    life of a process) instead of on every push that needs it."""
    made: dict[int, tuple[Mapping[str, CollectionSpec], _Derived]] = {}

    @functools.wraps(derive)
    def cached(collections: Mapping[str, CollectionSpec]) -> _Derived:
        found = made.get(id(collections))
        if found is None or found[0] is not collections:
            found = made[id(collections)] = (collections, derive(collections))
        return found[1]

    return cached


def scalar(
    name: str,
    type_: Any,
    *,
    nullable: bool = True,
    description: str = "",
    ref: str | None = None,
    ref_required: bool = True,
    transitions: Mapping[str | None, frozenset[str]] | None = None,
    masked: bool = False,
    ref_holds: tuple[str, str] | None = None,
) -> FieldSpec:
    return FieldSpec(
        name, "scalar", type_, nullable, description, ref, ref_required, transitions, masked, ref_holds
    )


def set_of(
    name: str,
    element: Any,
    *,
    description: str = "",
    ref: str | None = None,
    ref_required: bool = True,
    max_elements: tuple[int, str] | None = None,
) -> FieldSpec:
    return FieldSpec(name, "set", element, False, description, ref, ref_required, max_elements=max_elements)


def collection(
    name: str,
    *fields: FieldSpec,
    description: str = "",
    append_only: bool = False,
    exclusive: tuple[str, ...] = (),
    scope_self: ScopeLevel | None = None,
    scope_links: tuple[str, ...] = (),
) -> CollectionSpec:
    return CollectionSpec(
        name, {f.name: f for f in fields}, description, append_only, exclusive, scope_self, scope_links
    )


COMMUNITIES = collection(
    "communities",
    scalar("name", ShortText, description="e.g. 营村社区"),
    scalar("code", Code, description="Short code used on paper forms"),
    scalar("villages", ShortText, description="The resettled villages it was built from"),
    scalar("address", ShortText),
    scalar("office_phone", PhoneNumber),
    scalar("notes", LongText),
    description="A residential compound built from resettled villages; the top of the grid tree",
    scope_self="community_id",
)

GRIDS = collection(
    "grids",
    scalar("community_id", RecordRef, ref="communities", description="The community it belongs to"),
    scalar("name", ShortText),
    scalar("code", Code),
    scalar("party_branch", ShortText, description="The compound party branch that serves this grid"),
    set_of("workers", Person, description="Assigned grid workers (the 1+3+N team): user ids"),
    scalar("notes", LongText),
    # The 1+3+N team: one full-time worker, three part-time, N party members and volunteers.
    scalar("compound_id", RecordRef, ref="compounds", description="The compound (小区) it lies in"),
    scalar("full_time_worker", Person, description="The one full-time grid worker (专职网格员)"),
    set_of("part_time_workers", Person, description="The three part-time grid workers (兼职网格员)"),
    set_of(
        "team_members",
        RecordRef,
        ref="residents",
        ref_required=False,
        description="The N party members and volunteers of the team",
    ),
    description="A grid of a community, served by one full-time worker and helpers",
    scope_self="grid_id",
    scope_links=("community_id",),
)

BUILDINGS = collection(
    "buildings",
    scalar("grid_id", RecordRef, ref="grids", description="The grid it belongs to"),
    scalar("name", ShortText, description="e.g. Building 7"),
    scalar("code", Code),
    scalar("floors", Floor),
    scalar("units_count", Count, description="Stairwells (units) in the building"),
    set_of(
        "leaders",
        RecordRef,
        ref="residents",
        ref_required=False,
        description="Residents who are building leaders",
    ),
    scalar("notes", LongText),
    # Not a scope link: a building is placed by its grid; the compound is its register.
    scalar("compound_id", RecordRef, ref="compounds", description="The compound (小区) it belongs to"),
    description="A building of a grid",
    scope_self="building_id",
    scope_links=("grid_id",),
)

HOUSEHOLDS = collection(
    "households",
    scalar("address", ShortText, description="Street address or building/unit/door"),
    scalar("head_name", ShortText, description="Name of the head of the household"),
    scalar("phone", PhoneNumber, description="Contact phone number"),
    scalar("members_count", Count, description="People living in the household"),
    set_of("tags", Tag, description="e.g. elderly-alone, empty-nest, central-household"),
    scalar("notes", LongText, description="Free text notes of the grid worker"),
    scalar("building_id", RecordRef, ref="buildings", description="The building it lives in"),
    scalar("unit", Code, description="Unit (stairwell) number"),
    scalar("door", Code, description="Door number, e.g. 301"),
    scalar("moved_out", bool, description="True once the household has left the compound"),
    scalar("moved_out_on", Day, description="Day it moved out"),
    description="The central household registry",
    scope_self="household_id",
    scope_links=("building_id",),
)

RESIDENTS = collection(
    "residents",
    scalar("household_id", RecordRef, ref="households", description="The household they belong to"),
    scalar("name", ShortText),
    scalar("id_number", IdNumber, masked=True, description="Identity card number; masked in lists"),
    scalar("birth_year", BirthYear),
    scalar("phone", PhoneNumber),
    set_of("tags", Tag, description="e.g. party-member-retired, skilled, volunteer, building-leader"),
    scalar("skills", ShortText, description="Useful skills: electrician, nurse, lawyer ..."),
    scalar("notes", LongText),
    scalar(
        "party_member_kind",
        Literal["resident", "in-work", "transient", "retired"],
        description="A party member of the four kinds: resident, in work, transient, retired",
    ),
    scalar("party_branch_id", RecordRef, ref="party_branches", ref_required=False),
    description="A person in the registry book",
    scope_links=("household_id",),
)

VISITS = collection(
    "visits",
    scalar("household_id", RecordRef, ref="households"),
    scalar("worker", Person, description="Who visited"),
    scalar("visited_at", Moment, description="When, RFC 3339 with a time zone offset"),
    scalar("purpose", VisitPurpose),
    scalar("notes", LongText),
    scalar("follow_up", bool, description="A follow-up visit is needed"),
    set_of(
        "request_ids",
        RecordRef,
        ref="requests",
        ref_required=False,
        description="Service requests the visit raised",
    ),
    scalar("task_id", RecordRef, ref="tasks", ref_required=False, description="The task it answers"),
    description="A door-to-door visit",
    scope_links=("household_id",),
)

HAZARDS = collection(
    "hazards",
    scalar("household_id", RecordRef, ref="households", description="Place: a household"),
    scalar("building_id", RecordRef, ref="buildings", description="Place: a building"),
    scalar("grid_id", RecordRef, ref="grids", description="Place: a common area of a grid"),
    scalar("area", ShortText, description="Where exactly, e.g. underground garage, level -1"),
    scalar("category", HazardCategory),
    scalar("severity", HazardSeverity),
    scalar("status", HazardStatus),
    scalar("description", LongText),
    scalar("reported_by", Person),
    scalar("reported_at", Moment),
    set_of("photos", Sha256, description="SHA-256 of photos uploaded to /v1/attachments"),
    scalar("fixed_by", Person),
    scalar("fixed_at", Moment),
    scalar("verified_by", Person),
    scalar("verified_at", Moment),
    set_of(
        "request_ids",
        RecordRef,
        ref="requests",
        ref_required=False,
        description="Requests raised to fix it",
    ),
    description="A hazard check finding",
    exclusive=("household_id", "building_id", "grid_id"),
    scope_links=("household_id", "building_id", "grid_id"),
)

# A request's supervisor (党员督单) names a resident who is a party member, else this code.
SUPERVISOR_REFUSAL_CODE = "supervisor_not_party_member"

REQUESTS = collection(
    "requests",
    scalar("household_id", RecordRef, ref="households"),
    scalar("resident_id", RecordRef, ref="residents", ref_required=False, description="Who asked, if known"),
    scalar("category", RequestCategory),
    scalar("title", ShortText),
    scalar("description", LongText),
    scalar("status", RequestStatus, transitions=REQUEST_TRANSITIONS, description="The five-step loop"),
    scalar("submitted_at", Moment),
    scalar("dispatched_to", ShortText, description="The property company or service it went to"),
    scalar("handler", Person, description="Who took it"),
    scalar("supervisor", Person, description="Display name of the supervisor; see supervisor_id"),
    scalar(
        "supervisor_id",
        RecordRef,
        ref="residents",
        ref_holds=("party_member_kind", SUPERVISOR_REFUSAL_CODE),
        description="The party member resident supervising it (党员督单): a resident whose party_member_kind is set",
    ),
    scalar("due_date", Day),
    scalar("done_at", Moment),
    scalar("satisfaction", Satisfaction, description="1-5, given by the resident"),
    scalar("comment", LongText, description="The resident's comment with the rating"),
    set_of("photos", Sha256),
    # Where else a request may be about (one place only), where it came from, what it fixes.
    scalar("building_id", RecordRef, ref="buildings", description="Place: a building"),
    scalar("grid_id", RecordRef, ref="grids", description="Place: a common area of a grid"),
    scalar("compound_id", RecordRef, ref="compounds", description="Place: a whole compound (小区)"),
    scalar("area", ShortText, description="Where exactly, e.g. the underground garage"),
    scalar("channel", RequestChannel, description="Where it came in (楼栋群, phone, visit ...)"),
    scalar("hazard_id", RecordRef, ref="hazards", ref_required=False, description="The hazard it fixes"),
    # The rating is the resident's own: given through the one-time link, or typed on a phone
    # only when marked as rated by phone on the resident's behalf.
    scalar("rated_on_behalf", bool, description="Rated by phone on the resident's behalf"),
    scalar("rated_at", Moment),
    description="A resident's service request",
    exclusive=("household_id", "building_id", "grid_id", "compound_id"),
    scope_links=("household_id", "building_id", "grid_id", "compound_id"),
)

CHECKINS = collection(
    "checkins",
    scalar("household_id", RecordRef, ref="households"),
    scalar("day", Day),
    scalar("signal", bool, description="The curtain signal was seen (or the person answered)"),
    scalar("checked_by", Person),
    scalar("checked_at", Moment),
    scalar("notes", LongText),
    scalar("task_id", RecordRef, ref="tasks", ref_required=False, description="The task it answers"),
    # A curtain agreement's exception (no signal seen), its follow-up and what was found.
    scalar("agreement_id", RecordRef, ref="curtain_agreements", ref_required=False),
    scalar("missed", Literal["morning", "evening"], description="Which agreed hour passed unseen"),
    scalar("followed_up_by", Person, description="Who went to the door or phoned"),
    scalar("followed_up_at", Moment),
    scalar("found", FollowUpFinding, description="What the follow-up found"),
    description="A curtain signal, or (usually) an exception to a curtain agreement and its follow-up",
    scope_links=("household_id",),
)

POINTS = collection(
    "points",
    scalar("resident_id", RecordRef, ref="residents", description="The volunteer"),
    scalar("kind", PointsKind),
    scalar("points", PointsAmount, description="How many, always positive"),
    scalar("reason", ShortText, description="The activity (earned) or what it bought (redeemed)"),
    scalar("at", Moment),
    scalar("recorded_by", Person),
    scalar(
        "activity_id", RecordRef, ref="point_activities", ref_required=False, description="From the catalogue"
    ),
    scalar("reward_id", RecordRef, ref="rewards", ref_required=False, description="What it bought"),
    scalar("wish_id", RecordRef, ref="wishes", ref_required=False, description="A small wish fulfilled"),
    description="A volunteer points ledger entry; the balance is derived",
    append_only=True,
    scope_links=("resident_id",),
)

TASKS = collection(
    "tasks",
    scalar("kind", TaskKind, description="What to do"),
    scalar("assignee", Person, description="The worker it is for: a user id"),
    scalar("due_date", Day, description="By when"),
    scalar("reason", LongText, description="Why: what the office or the rule that made it saw"),
    scalar("status", TaskStatus, transitions=TASK_TRANSITIONS, description="open, done or cancelled"),
    scalar("outcome", LongText, description="What came of it"),
    scalar("answered_by", RecordRef, description="The visit or checkin that closed it"),
    scalar("source", Code, description="desk (made by the office) or the rule that made it"),
    scalar("household_id", RecordRef, ref="households", description="Place: a household"),
    scalar("building_id", RecordRef, ref="buildings", description="Place: a building"),
    scalar("grid_id", RecordRef, ref="grids", description="Place: a grid"),
    scalar("hazard_id", RecordRef, ref="hazards", ref_required=False, description="The hazard to re-check"),
    scalar(
        "request_id", RecordRef, ref="requests", ref_required=False, description="The request to follow up"
    ),
    description="Work the office gives a worker; it never records where or when the worker was",
    scope_links=("household_id", "building_id", "grid_id"),
)

COLLECTIONS: dict[str, CollectionSpec] = {
    c.name: c
    for c in (
        COMMUNITIES,
        GRIDS,
        BUILDINGS,
        HOUSEHOLDS,
        RESIDENTS,
        VISITS,
        HAZARDS,
        REQUESTS,
        CHECKINS,
        POINTS,
        TASKS,
    )
}

# The district's practices (deliberation, the party organisation, the curtain agreement ...):
# declared in schemas/practices.py with the helpers above, so imported last.
from schemas.practices import PRACTICES  # noqa: E402

COLLECTIONS.update({c.name: c for c in PRACTICES})
