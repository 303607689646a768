"""The registry of the demo district: communities, compounds, grids with their 1+3+N teams,
buildings, households and residents."""

from __future__ import annotations

import datetime

from server.registry.demo.names import (
    COMMUNITIES,
    COMPANY,
    COMPOUND_NAMES,
    PARTY_KINDS,
    SKILLS,
    id_number,
    person_name,
    phone_number,
)
from server.registry.demo.plan import DemoPlan, District
from server.registry.demo.writer import Writer

__all__ = ["write_registry"]

_TAG_CHANCES = (
    ("child-under-6", 0.12),
    ("veteran", 0.02),
    ("disability", 0.03),
    ("widowed", 0.04),
    ("five-guarantee", 0.01),
    ("party-member-household", 0.1),
)


def _places(w: Writer, plan: DemoPlan, d: District, start: datetime.datetime) -> None:
    # long: the district's tree (community, compound, grid, building) reads best as one walk.
    rng = w.rng
    for c_index, (name, village) in enumerate(COMMUNITIES, 1):
        community = f"c{c_index}"
        w.record(
            "communities",
            community,
            start,
            name=name,
            code=f"C{c_index:02d}",
            villages=village,
            address=f"三给片区{village}安置区",
            office_phone=f"0535-66{c_index:02d}{rng.randint(1000, 9999)}",
        )
        for g_index in range(1, plan.grids_per_community + 1):
            grid, compound = f"{community}-g{g_index}", f"{community}-x{g_index}"
            compound_name = COMPOUND_NAMES[c_index - 1][(g_index - 1) % 3]
            w.record(
                "compounds",
                compound,
                start,
                community_id=community,
                name=compound_name,
                code=f"C{c_index:02d}X{g_index}",
                property_company=COMPANY,
            )
            full, parts = f"w-{grid}-full", [f"w-{grid}-part{k}" for k in range(1, 4)]
            d.workers[grid] = [full, *parts]
            d.grids.append((grid, community))
            d.compound_of[grid] = compound
            d.compound_names[compound] = compound_name
            d.branch_of[compound] = f"{community}-pb{g_index}"
            w.record(
                "grids",
                grid,
                start,
                community_id=community,
                compound_id=compound,
                name=f"{compound_name}网格",
                code=f"C{c_index:02d}G{g_index}",
                party_branch=f"{compound_name}小区党支部",
                workers=[full, *parts],
                full_time_worker=full,
                part_time_workers=parts,
            )
    for b_index in range(plan.building_count):
        grid, _ = d.grids[b_index % len(d.grids)]
        number = b_index // len(d.grids) + 1
        building = f"{grid}-b{number}"
        d.buildings.append((building, grid))
        w.record(
            "buildings",
            building,
            start,
            grid_id=grid,
            compound_id=d.compound_of[grid],
            name=f"{number}号楼",
            code=f"B{b_index + 1:03d}",
            floors=14,
            units_count=3,
        )


def _household(
    w: Writer, d: District, h_index: int, start: datetime.datetime, central: bool
) -> tuple[str, int]:
    rng = w.rng
    building, grid = d.buildings[h_index % len(d.buildings)]
    slot = h_index // len(d.buildings)
    unit, floor, door = slot // 28 + 1, slot % 28 // 2 + 1, slot % 2 + 1
    household = f"{building}-u{unit}-{floor}0{door}"
    d.households.append(household)
    d.grid_of[household] = grid
    d.building_of[household] = building
    tags: set[str] = set()
    roll = rng.random()
    if roll < 0.08:
        tags.add("elderly-alone")
    elif roll < 0.2:
        tags.add("empty-nest")
    tags |= {tag for tag, chance in _TAG_CHANCES if rng.random() < chance}
    if central:
        tags |= {"central-household", "party-member-household"}
    d.tags[household] = tags
    members = 1 if "elderly-alone" in tags else rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5))
    moved_out = rng.random() < 0.015
    w.record(
        "households",
        household,
        start,
        building_id=building,
        unit=str(unit),
        door=f"{floor}0{door}",
        address=f"{building.split('-')[-1][1:]}号楼{unit}单元{floor}0{door}室",
        head_name=person_name(rng),
        phone=phone_number(rng),
        members_count=members,
        tags=tags,
        moved_out=True if moved_out else None,
        moved_out_on=(start + datetime.timedelta(days=rng.randint(1, 60))).date() if moved_out else None,
    )
    return household, members


def _residents(w: Writer, d: District, household: str, members: int, start: datetime.datetime) -> None:
    rng = w.rng
    tags = d.tags[household]
    grid = d.grid_of[household]
    d.residents[household] = []
    for r_index in range(members):
        resident = f"{household}-r{r_index + 1}"
        d.residents[household].append(resident)
        elderly = bool(tags & {"elderly-alone", "empty-nest", "widowed"})
        birth_year = rng.randint(1930, 1958) if elderly else rng.randint(1945, 2022)
        resident_tags: set[str] = set()
        kind = None
        if "party-member-household" in tags and r_index == 0:
            kind = rng.choice(PARTY_KINDS)
            resident_tags.add(f"party-member-{kind}")
            d.party_members.setdefault(grid, []).append(resident)
        if rng.random() < 0.05:
            resident_tags.add("skilled")
        if 1950 < birth_year < 2005 and rng.random() < 0.09:
            resident_tags.add("volunteer")
            d.volunteers.append(resident)
        w.record(
            "residents",
            resident,
            start,
            household_id=household,
            name=person_name(rng),
            id_number=id_number(rng, birth_year),
            birth_year=birth_year,
            phone=phone_number(rng) if rng.random() < 0.6 else None,
            tags=resident_tags,
            skills=rng.choice(SKILLS) if "skilled" in resident_tags else None,
            party_member_kind=kind,
            party_branch_id=d.branch_of[d.compound_of[grid]] if kind else None,
        )


def write_registry(w: Writer, plan: DemoPlan, start: datetime.datetime) -> District:
    d = District()
    _places(w, plan, d, start)
    central = set(w.rng.sample(range(plan.households), min(plan.central_households, plan.households)))
    for h_index in range(plan.households):
        household, members = _household(w, d, h_index, start, h_index in central)
        _residents(w, d, household, members, start)
    return d
