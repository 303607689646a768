"""The demo district of the district's report, in Chinese: five communities of resettled
villages, fifteen compounds with their party branches, 50 buildings each with its building
leader, about 4,100 households, 112 central households and the neighbours they serve, and a
season of field work, deliberation and care. Deterministic from ``(seed, now)``: ids, names and
choices come from the seed, and dates are offsets back from ``now`` (so "today" and "the last 30
days" mean something whenever it is loaded). The benchmarks and the simulation reuse
``demo_changes``.

Everything is written as ordinary changes through the store's batched push, never around it, so
the demo also exercises the rules, the scope columns and the merge; a few changes come from
simulated offline phones that disagree, so the conflict inbox has something to show.
"""

from __future__ import annotations

import datetime
import random

from schemas.protocol import Change
from server.registry.demo.care import write_agreements, write_points, write_wishes
from server.registry.demo.deliberation import write_conflicts, write_deliberations
from server.registry.demo.fieldwork import write_hazards, write_requests, write_visits
from server.registry.demo.load import DemoLoad, demo_command, load_demo, without_cycle_collection
from server.registry.demo.party import write_party
from server.registry.demo.plan import DemoPlan
from server.registry.demo.registry import write_registry
from server.registry.demo.writer import CHINA, DEMO_REPLICA, Writer

__all__ = ["CHINA", "DEMO_REPLICA", "DemoLoad", "DemoPlan", "demo_changes", "demo_command", "load_demo"]


_DEFAULT_PLAN = DemoPlan()


def demo_changes(plan: DemoPlan = _DEFAULT_PLAN, now: datetime.datetime | None = None) -> list[Change]:
    """Every change of the demo district in the order to push them: the registry, then the
    field's work in the order of its clocks; parents before children, every ``pred`` before the
    change that names it."""
    with without_cycle_collection():
        return _generate(plan, (now or datetime.datetime.now(CHINA)).astimezone(CHINA))


def _generate(plan: DemoPlan, now: datetime.datetime) -> list[Change]:
    writer = Writer(random.Random(plan.seed))
    start = now - datetime.timedelta(days=plan.season_days + 10)
    district = write_registry(writer, plan, start)
    write_party(writer, district, start + datetime.timedelta(days=1))
    # The registry is typed in first; the field's work follows in the order of its clocks,
    # though some of it (cases settled before the system was set up) is dated earlier.
    registry = len(writer.changes)
    write_visits(writer, plan, district, now)
    write_hazards(writer, plan, district, now)
    write_requests(writer, plan, district, now)
    write_agreements(writer, plan, district, now)
    write_points(writer, plan, district, now)
    write_wishes(writer, district, now)
    write_deliberations(writer, district, now)
    if plan.offline_phones:
        write_conflicts(writer, district, now)
    return writer.in_clock_order(registry)
