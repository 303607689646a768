"""The party organisation of the demo district: a branch per compound with its secretary and
committee, a party group and a building leader per building, the 112 central households and the
neighbours each serves, and each grid's N party members and volunteers."""

from __future__ import annotations

import datetime
from collections import defaultdict

from server.registry.demo.plan import District
from server.registry.demo.writer import Writer

__all__ = ["write_party"]


def _branches(w: Writer, d: District, when: datetime.datetime) -> None:
    for grid, community in d.grids:
        compound = d.compound_of[grid]
        members = d.party_members.get(grid, [])
        w.record(
            "party_branches",
            d.branch_of[compound],
            when,
            community_id=community,
            compound_id=compound,
            name=f"{d.compound_names[compound]}小区党支部",
            secretary_id=members[0] if members else None,
            committee=set(members[1:4]),
            also_leads_property_committee=True,
        )
        team = (members + [v for v in d.volunteers if v.startswith(f"{grid}-")])[:8]
        w.record("grids", grid, when, team_members=set(team))


def _buildings(w: Writer, d: District, when: datetime.datetime) -> dict[str, list[str]]:
    """Leaders and party groups; returns each building's households in order."""
    in_building: dict[str, list[str]] = defaultdict(list)
    for household in d.households:
        in_building[d.building_of[household]].append(household)
    for building, grid in d.buildings:
        households = [h for h in in_building[building] if d.residents[h]]
        if not households:
            continue
        leader = d.residents[households[0]][0]
        w.record("residents", leader, when, tags={"building-leader"})
        w.record("buildings", building, when, leaders={leader})
        members = [d.residents[h][0] for h in households if "party-member-household" in d.tags[h]]
        w.record(
            "party_groups",
            f"{building}-pg",
            when,
            branch_id=d.branch_of[d.compound_of[grid]],
            building_id=building,
            name=f"{building.split('-')[-1][1:]}号楼党小组",
            leader_id=members[0] if members else leader,
            members=set(members),
        )
    return in_building


def write_party(w: Writer, d: District, when: datetime.datetime) -> None:
    _branches(w, d, when)
    in_building = _buildings(w, d, when)
    for household in d.households:
        if "central-household" not in d.tags[household] or not d.residents[household]:
            continue
        building = d.building_of[household]
        row = in_building[building]
        position = row.index(household)
        serves = row[position + 1 : position + 1 + w.rng.randint(5, 10)]
        if len(serves) < 5:  # the last households of a building: serve those before instead
            serves = row[max(0, position - 10) : position][-w.rng.randint(5, 10) :]
        member = d.residents[household][0]
        d.watchers.setdefault(building, member)
        w.record(
            "central_households",
            f"{household}-ch",
            when,
            household_id=household,
            party_member_id=member,
            party_group_id=f"{building}-pg",
            serves=set(serves),
            sign_hung=True,
        )
