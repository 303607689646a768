"""Who is calling and what they may touch: roles, principals and guards.

Roles (see docs/security.md):

* ``grid_worker``: reads and writes records of the grids assigned to the user.
* ``building_leader`` / ``volunteer``: read their buildings' households; write visits,
  checkins, hazards and requests there.
* ``handler``: a property company's staff; sees requests dispatched to the company.
* ``community_admin``: everything in one community, its conflict inbox and devices.
* ``district_admin``: everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

__all__ = [
    "ADMIN_ROLES",
    "ROLES",
    "Principal",
    "Role",
    "UserScope",
    "requires_admin",
    "requires_district_admin",
    "requires_signed_in_admin",
]

Role = Literal["grid_worker", "building_leader", "volunteer", "handler", "community_admin", "district_admin"]
ROLES: tuple[str, ...] = get_args(Role)
ADMIN_ROLES = frozenset({"community_admin", "district_admin"})


@dataclass(frozen=True, slots=True)
class UserScope:
    """The part of the registry a user is assigned to. Empty tuples mean 'none of that kind'."""

    communities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()
    company: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: a user, through one credential (a phone or a sign-in)."""

    user_id: str
    user_name: str
    role: str
    scope: UserScope = field(default_factory=UserScope)
    device_id: str | None = None
    credential_kind: str = "device"

    @property
    def id(self) -> str:
        """The credential's id: devices are what the sync log records as writers."""
        return self.device_id or self.user_id

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    @property
    def is_district_admin(self) -> bool:
        return self.role == "district_admin"

    def administers_community(self, community_id: str | None) -> bool:
        if self.is_district_admin:
            return True
        return (
            self.role == "community_admin"
            and community_id is not None
            and community_id in (self.scope.communities)
        )


def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise PermissionDeniedException("this endpoint needs a signed-in user")
    return user


def requires_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not _principal(connection).is_admin:
        raise PermissionDeniedException("only community and district admins may do this")


def requires_district_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not _principal(connection).is_district_admin:
        raise PermissionDeniedException("only district admins may do this")


def requires_signed_in_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Users, devices and codes are managed from an admin's password sign-in only: a phone's
    token, whatever its user's role, never manages users."""
    principal = _principal(connection)
    if not principal.is_admin:
        raise PermissionDeniedException("only community and district admins may do this")
    if principal.credential_kind != "session":
        raise PermissionDeniedException(
            "users and devices are managed from an admin sign-in (POST /v1/admin/login), "
            "never with a device token"
        )
