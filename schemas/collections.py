"""Collections and their fields: the type of each field and the merge policy it follows.

Adding a collection is a matter of declaring it here. Two merge policies exist:

* ``scalar``: multi-value register. ``set`` writes it; concurrent writes with different
  values are kept as a conflict, and the value shown is the head with the greatest hlc.
* ``set``: add-wins observed-remove set. ``add`` and ``remove`` write it; never a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from msgspec import Meta

__all__ = [
    "COLLECTIONS",
    "CollectionSpec",
    "FieldSpec",
    "MergePolicy",
    "collection",
    "scalar",
    "set_of",
]

MergePolicy = Literal["scalar", "set"]

ShortText = Annotated[str, Meta(min_length=1, max_length=200)]
LongText = Annotated[str, Meta(max_length=10_000)]
PhoneNumber = Annotated[str, Meta(max_length=32, pattern=r"^[0-9+\-() ]*$")]
Count = Annotated[int, Meta(ge=0, le=1_000)]
Tag = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: its merge policy and the msgspec type every value (or set element) must match."""

    name: str
    policy: MergePolicy
    type: Any
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    description: str = ""


def scalar(name: str, type_: Any, *, nullable: bool = True, description: str = "") -> FieldSpec:
    return FieldSpec(name, "scalar", type_, nullable, description)


def set_of(name: str, element: Any, *, description: str = "") -> FieldSpec:
    return FieldSpec(name, "set", element, False, description)


def collection(name: str, *fields: FieldSpec, description: str = "") -> CollectionSpec:
    return CollectionSpec(name, {f.name: f for f in fields}, description)


HOUSEHOLDS = collection(
    "households",
    scalar("address", ShortText, description="Street address or building/unit/door"),
    scalar("head_name", ShortText, description="Name of the head of the household"),
    scalar("phone", PhoneNumber, description="Contact phone number"),
    scalar("members_count", Count, description="People living in the household"),
    set_of("tags", Tag, description="e.g. elderly-alone, party-member"),
    scalar("notes", LongText, description="Free text notes of the grid worker"),
    description="The central household registry",
)

COLLECTIONS: dict[str, CollectionSpec] = {c.name: c for c in (HOUSEHOLDS,)}
