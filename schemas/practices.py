"""Collections of the district's own practices, declared with the helpers of
``schemas.collections`` (which imports this module last and adds them to ``COLLECTIONS``).

* ``deliberations``: a livelihood issue settled by four-party deliberation through the
  eight-step work method (收集问题 ... 民主监督), its step a state machine judged like a
  request's status.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Literal

from schemas.collections import (
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

__all__ = ["DELIBERATION_STEPS", "DELIBERATION_TRANSITIONS", "PRACTICES"]

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

PRACTICES = (DELIBERATIONS,)
