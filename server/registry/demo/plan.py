"""The demo district's shape, and what the generators share while they write it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DemoPlan", "District"]


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """The district's shape, from the district's report: five communities, fifteen compounds
    (one party branch and one grid each), 50 buildings each with its building leader, 112
    party-member central households. Tests pass a small ``households``; the benchmarks' tiny
    district sets ``households_per_building`` (then buildings = households / that)."""

    seed: int = 7
    households: int = 4_100
    grids_per_community: int = 3
    buildings: int = 50
    households_per_building: int | None = None
    central_households: int = 112
    season_days: int = 90
    checkin_days: int = 14
    # Disagreements of simulated offline phones, so the conflict inbox has something to show.
    offline_phones: bool = True

    @property
    def building_count(self) -> int:
        if self.households_per_building:
            return max(1, -(-self.households // self.households_per_building))
        return self.buildings


@dataclass
class District:
    """What later generators need of the registry already written."""

    grids: list[tuple[str, str]] = field(default_factory=list)  # (grid id, community id)
    compound_of: dict[str, str] = field(default_factory=dict)  # grid -> compound
    compound_names: dict[str, str] = field(default_factory=dict)
    branch_of: dict[str, str] = field(default_factory=dict)  # compound -> party branch
    buildings: list[tuple[str, str]] = field(default_factory=list)  # (building id, grid id)
    households: list[str] = field(default_factory=list)
    building_of: dict[str, str] = field(default_factory=dict)  # household -> building
    tags: dict[str, set[str]] = field(default_factory=dict)
    residents: dict[str, list[str]] = field(default_factory=dict)  # household -> residents
    party_members: dict[str, list[str]] = field(default_factory=dict)  # grid -> residents
    volunteers: list[str] = field(default_factory=list)
    workers: dict[str, list[str]] = field(default_factory=dict)  # grid -> workers
    grid_of: dict[str, str] = field(default_factory=dict)  # household -> grid
    watchers: dict[str, str] = field(default_factory=dict)  # building -> a central household's member
