"""Messages of the accounts API: users, devices, one-time enrolment codes and the audit log."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["AuditEntry", "DeviceInfo", "EnrolmentCode", "UserInfo"]


class UserInfo(msgspec.Struct):
    id: str
    name: str
    role: str
    communities: list[str]
    grids: list[str]
    buildings: list[str]
    company: str | None
    created_at_ms: int
    disabled: bool

    @property
    def home_community(self) -> str | None:
        """The community an admin action on this user is filed under in the audit log."""
        return self.communities[0] if self.communities else None


class DeviceInfo(msgspec.Struct):
    id: str
    name: str
    user_id: str | None
    user_name: str | None
    role: str | None
    created_at_ms: int
    revoked_at_ms: int | None
    last_seen_at_ms: int | None
    clock_skew_ms: int | None
    clock_flagged_at_ms: int | None


class EnrolmentCode(msgspec.Struct):
    """A one-time code a phone exchanges for its token (``POST /v1/enrol``); shown only once."""

    id: str
    code: str
    user: UserInfo
    expires_at_ms: int


class AuditEntry(msgspec.Struct):
    id: int
    at_ms: int
    actor_user_id: str | None
    actor_name: str | None
    actor_device_id: str | None
    address: str | None
    action: str
    target: str | None
    community_id: str | None
    detail: dict[str, Any]
