"""Collections of the district's own practices, declared with the helpers of
``schemas.collections`` (which imports this module last and adds them to ``COLLECTIONS``).

* ``deliberations``: a livelihood issue settled by four-party deliberation through the
  eight-step work method (收集问题 ... 民主监督), its step a state machine judged like a
  request's status.
* the party organisation as the report builds it: ``compounds`` (小区, the unit of one register
  per compound) between community and building, ``party_branches`` (小区党支部) with their
  secretary and committee, ``party_groups`` (楼栋党小组) of a building, and
  ``central_households`` (党员中心户), each linked to the households it serves.
* ``curtain_agreements`` (窗帘约定): a household signs up, with the hours its curtains open
  and close and who watches; only exceptions are recorded (``checkins`` with no signal, their
  follow-up and what was found), never a daily clock-in.
* points as the report runs them: a catalogue of ``point_activities`` and ``rewards`` (the
  village market, property-fee discounts) that ``points`` entries name, and small ``wishes``
  (微心愿) residents post and volunteers claim and fulfil.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Literal

from msgspec import Meta

from schemas.collections import (
    END,
    Code,
    Count,
    Day,
    LongText,
    Moment,
    Person,
    RecordRef,
    ShortText,
    collection,
    scalar,
    set_of,
)

__all__ = [
    "DELIBERATION_STEPS",
    "DELIBERATION_TRANSITIONS",
    "PRACTICES",
    "SERVES_AT_LEAST",
    "SERVES_AT_MOST",
    "WISH_STATUSES",
    "PartyMemberKind",
]

# The eight steps (八步工作法) in order, then the two ways a case ends.
DeliberationStep = Literal[
    "collect",  # 收集问题: problems gathered from residents, chat groups, visits
    "topic",  # 形成议题: problems formed into one topic
    "review",  # 审核议题: the compound branch reviews the topic
    "pre-meeting",  # 会前沟通: the parties are consulted before the meeting
    "meeting",  # 会议协商: the four parties deliberate
    "publish",  # 决策公布: the decision is published
    "implement",  # 组织实施: the lead body carries it out by the deadline
    "supervise",  # 民主监督: residents and party members check the result
    "settled",  # 办结
    "dropped",  # not taken up (e.g. refused at review, or solved another way)
]
DELIBERATION_STEPS: tuple[str, ...] = typing.get_args(DeliberationStep)
# Forward one step at a time; a meeting that does not agree goes back to consultation; a
# supervision that finds the work unfinished sends it back to implementation; a dropped case
# can be taken up again.
DELIBERATION_TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"collect"}),
    "collect": frozenset({"topic", "dropped"}),
    "topic": frozenset({"review", "dropped"}),
    "review": frozenset({"pre-meeting", "dropped"}),
    "pre-meeting": frozenset({"meeting", "dropped"}),
    "meeting": frozenset({"publish", "pre-meeting"}),
    "publish": frozenset({"implement"}),
    "implement": frozenset({"supervise"}),
    "supervise": frozenset({"settled", "implement"}),
    "settled": frozenset(),
    "dropped": frozenset({"collect"}),
}

DELIBERATIONS = collection(
    "deliberations",
    scalar("community_id", RecordRef, ref="communities", description="The community whose issue it is"),
    scalar("grid_id", RecordRef, ref="grids", description="The grid, when the issue is one grid's"),
    scalar("title", ShortText, description="e.g. 地库漏水 (the underground garage leaks)"),
    scalar("problem", LongText, description="The problem as residents raised it"),
    scalar(
        "step",
        DeliberationStep,
        transitions=DELIBERATION_TRANSITIONS,
        description="Where the case is in the eight-step work method",
    ),
    scalar("collected_by", Person, description="Who collected the problem"),
    scalar("collected_at", Moment),
    scalar("lead_body", ShortText, description="Who leads it, e.g. the compound party branch"),
    scalar("deadline", Day, description="The time limit the meeting set"),
    set_of("participants", ShortText, description="Parties and people invited (four-party deliberation)"),
    set_of("attended", ShortText, description="Of the participants, those who came to the meeting"),
    scalar("meeting_at", Moment),
    scalar("decision", LongText, description="The decision as published"),
    scalar("published_at", Moment),
    scalar("votes_for", Count, description="Votes, if a vote was taken"),
    scalar("votes_against", Count),
    scalar("votes_abstained", Count),
    set_of(
        "request_ids",
        RecordRef,
        ref="requests",
        ref_required=False,
        description="Requests this case settles",
    ),
    set_of(
        "hazard_ids",
        RecordRef,
        ref="hazards",
        ref_required=False,
        description="Hazards this case settles",
    ),
    scalar("settled_at", Moment),
    scalar("notes", LongText),
    description="A livelihood issue settled by deliberation through the eight-step work method",
    scope_links=("grid_id", "community_id"),
)

PartyMemberKind = Literal["resident", "in-work", "transient", "retired"]

COMPOUNDS = collection(
    "compounds",
    scalar("community_id", RecordRef, ref="communities", description="The community it belongs to"),
    scalar("name", ShortText, description="e.g. 锦乐苑"),
    scalar("code", Code, description="The register's code (一小区一册)"),
    scalar("address", ShortText),
    scalar("property_company", ShortText, description="Who manages it, e.g. the village-owned company"),
    scalar("notes", LongText),
    description="A residential compound (小区) of a community: one register per compound",
    scope_links=("community_id",),
)

PARTY_BRANCHES = collection(
    "party_branches",
    scalar("community_id", RecordRef, ref="communities", description="Under the community party committee"),
    scalar("compound_id", RecordRef, ref="compounds", description="The compound it leads"),
    scalar("name", ShortText, description="e.g. 锦乐苑小区党支部"),
    scalar("secretary_id", RecordRef, ref="residents", description="The branch secretary, a resident"),
    set_of(
        "committee",
        RecordRef,
        ref="residents",
        ref_required=False,
        description="Branch committee members (支委), residents",
    ),
    scalar(
        "also_leads_property_committee",
        bool,
        description="The secretary also chairs the property committee (一肩挑)",
    ),
    scalar("notes", LongText),
    description="A compound party branch (小区党支部) under the community party committee",
    scope_links=("community_id",),
)

PARTY_GROUPS = collection(
    "party_groups",
    scalar("branch_id", RecordRef, ref="party_branches", description="The compound branch it belongs to"),
    scalar("building_id", RecordRef, ref="buildings", description="The building it serves"),
    scalar("name", ShortText),
    scalar("leader_id", RecordRef, ref="residents", ref_required=False, description="The group leader"),
    set_of("members", RecordRef, ref="residents", ref_required=False, description="Party members in it"),
    description="A building party group (楼栋党小组) of a compound branch",
    scope_links=("building_id",),
)

# A central household serves 5-10 households (the report). More is refused (an add beyond the
# tenth answers this code); fewer is listed for the office's attention (a ``few_served`` flag),
# never refused: a household list is built up one link at a time, offline.
SERVES_AT_LEAST, SERVES_AT_MOST = 5, 10
SERVES_REFUSAL_CODE = "central_household_full"

CENTRAL_HOUSEHOLDS = collection(
    "central_households",
    scalar("household_id", RecordRef, ref="households", description="The party member's own household"),
    scalar("party_member_id", RecordRef, ref="residents", description="The party member who serves"),
    scalar("party_group_id", RecordRef, ref="party_groups", ref_required=False),
    set_of(
        "serves",
        RecordRef,
        ref="households",
        ref_required=False,
        max_elements=(SERVES_AT_MOST, SERVES_REFUSAL_CODE),
        description="The households it looks after: 5-10 neighbours (at most 10; fewer than 5 is flagged)",
    ),
    scalar("sign_hung", bool, description="The 党员中心户 sign hangs at the door"),
    scalar("notes", LongText),
    description="A party-member central household (党员中心户) and the neighbours it serves",
    scope_links=("household_id",),
)

# Who a curtain agreement is for: elderly living alone, empty-nest elderly, the widowed, the
# disabled.
Circumstance = Literal["elderly-alone", "empty-nest", "widowed", "disability"]
ClockTime = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]" + END)]

CURTAIN_AGREEMENTS = collection(
    "curtain_agreements",
    scalar("household_id", RecordRef, ref="households", description="The household that signed up"),
    scalar("resident_id", RecordRef, ref="residents", ref_required=False, description="Who signed"),
    scalar("signed_on", Day),
    scalar("ended_on", Day, description="The day the household left the agreement"),
    set_of("circumstances", Circumstance, description="Who it is for"),
    scalar("open_by", ClockTime, description="Curtains open by this local time (HH:MM)"),
    scalar("close_by", ClockTime, description="Curtains closed by this local time (HH:MM)"),
    scalar(
        "watcher_id", RecordRef, ref="residents", ref_required=False, description="The neighbour who watches"
    ),
    scalar("watcher", Person, description="Or the worker or leader who watches (user id)"),
    scalar(
        "daily_signal",
        bool,
        description="The household asked for each day's signal to be recorded too (default: exceptions only)",
    ),
    scalar("notes", LongText),
    description="A curtain agreement (窗帘约定) a household signed up for",
    scope_links=("household_id",),
)

ActivityPoints = Annotated[int, Meta(ge=1, le=100_000)]
RewardKind = Literal["village-market", "property-fee-discount", "goods", "service", "other"]
WishStatus = Literal["posted", "claimed", "fulfilled", "withdrawn"]
WISH_STATUSES: tuple[str, ...] = typing.get_args(WishStatus)
# A wish is claimed by a volunteer, fulfilled, or released back; its poster may withdraw it.
WISH_TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"posted"}),
    "posted": frozenset({"claimed", "withdrawn"}),
    "claimed": frozenset({"fulfilled", "posted"}),
    "fulfilled": frozenset(),
    "withdrawn": frozenset({"posted"}),
}

POINT_ACTIVITIES = collection(
    "point_activities",
    scalar("community_id", RecordRef, ref="communities"),
    scalar("name", ShortText, description="e.g. 楼道清扫 (stairwell cleaning)"),
    scalar("points", ActivityPoints, description="Points an activity earns"),
    scalar("active", bool),
    scalar("notes", LongText),
    description="An activity of the points catalogue and what it earns",
    scope_links=("community_id",),
)

REWARDS = collection(
    "rewards",
    scalar("community_id", RecordRef, ref="communities"),
    scalar("name", ShortText, description="e.g. 便民菜市场代金券 (village market voucher)"),
    scalar("kind", RewardKind),
    scalar("cost", ActivityPoints, description="Points it costs"),
    scalar("provider", ShortText, description="e.g. the village market, the property company"),
    scalar("active", bool),
    description="A reward of the points catalogue: market vouchers, property-fee discounts ...",
    scope_links=("community_id",),
)

WISHES = collection(
    "wishes",
    scalar("household_id", RecordRef, ref="households", description="The household that posted it"),
    scalar("resident_id", RecordRef, ref="residents", ref_required=False),
    scalar("title", ShortText, description="e.g. 想要一台收音机 (a radio)"),
    scalar("description", LongText),
    scalar("status", WishStatus, transitions=WISH_TRANSITIONS),
    scalar("posted_at", Moment),
    scalar("claimed_by", RecordRef, ref="residents", ref_required=False, description="The volunteer"),
    scalar("claimed_at", Moment),
    scalar("fulfilled_at", Moment),
    description="A small wish (微心愿) a resident posts and a volunteer claims and fulfils",
    scope_links=("household_id",),
)

PRACTICES = (
    DELIBERATIONS,
    COMPOUNDS,
    PARTY_BRANCHES,
    PARTY_GROUPS,
    CENTRAL_HOUSEHOLDS,
    CURTAIN_AGREEMENTS,
    POINT_ACTIVITIES,
    REWARDS,
    WISHES,
)
