"""The admin API: sign-in, users and roles, devices, the audit log.

Community admins manage the users and devices of their own communities; district admins manage
everything. Every change an admin makes is written to the audit log with who, when and from where.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath, JSONBody, Parameter

from schemas.views import ResidentErased
from server.access.accounts import AccountStore, AuditEntry, DeviceInfo, UserInfo
from server.access.guards import cookie_writes_send_json
from server.access.principals import Principal, UserScope, requires_admin
from server.access.tokens import SECURITY_REQUIREMENT, SESSION_COOKIE
from server.registry.erasure import erase_resident
from server.sync.store import SyncStore

__all__ = ["AdminController", "SignInController"]

# Inputs that reach SQL are bounded to what the database can hold: PostgreSQL refuses NUL in
# text and integers beyond 64 bits (a 500 before; found by tests/reliability/test_openapi_fuzz.py).
_NO_NUL = r"^[^\x00]*$"
_MAX_BIGINT = 2**63 - 1

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_NUL)]


class ScopeBody(msgspec.Struct, forbid_unknown_fields=True):
    communities: list[str] = []
    grids: list[str] = []
    buildings: list[str] = []
    company: str | None = None

    def to_scope(self) -> UserScope:
        return UserScope(tuple(self.communities), tuple(self.grids), tuple(self.buildings), self.company)


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    password: Annotated[str, msgspec.Meta(max_length=1_000)]


class SignedIn(msgspec.Struct):
    token: str
    user: UserInfo


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    role: str
    scope: ScopeBody = msgspec.field(default_factory=ScopeBody)
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=1_000)] | None = None


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    scope: ScopeBody = msgspec.field(default_factory=ScopeBody)


class NewDevice(msgspec.Struct, forbid_unknown_fields=True):
    """Enrol a phone for an existing user (``user_id``) or for a new one (``user``)."""

    name: Name
    user_id: str | None = None
    user: NewUser | None = None


class EnrolledDevice(msgspec.Struct):
    device_id: str
    token: str
    user: UserInfo


class AuditPage(msgspec.Struct):
    entries: list[AuditEntry]
    cursor: int | None


def _address(request: Request[Any, Any, Any]) -> str:
    return get_remote_address(request)


def _may_manage(admin: Principal, communities: list[str] | tuple[str, ...], role: str) -> None:
    """Community admins manage non-district users inside their own communities only."""
    if admin.is_district_admin:
        return
    if role == "district_admin":
        raise PermissionDeniedException("only a district admin may grant district-wide access")
    if not communities or not set(communities) <= set(admin.scope.communities):
        raise PermissionDeniedException("community admins manage users of their own communities only")


async def _visible_users(admin: Principal, accounts: AccountStore) -> list[UserInfo]:
    found = await accounts.list_users()
    if admin.is_district_admin:
        return found
    mine = set(admin.scope.communities)
    return [u for u in found if u.communities and set(u.communities) <= mine]


async def _create_user(
    admin: Principal, data: JSONBody[NewUser], accounts: AccountStore, address: str
) -> UserInfo:
    _may_manage(admin, data.scope.communities, data.role)
    return await accounts.add_user(admin, data.name, data.role, data.scope.to_scope(), data.password, address)


class SignInController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post("/login", operation_id="signIn", exclude_from_auth=True, status_code=200)
    async def sign_in(
        self, request: Request[Any, Any, Any], data: JSONBody[SignIn], accounts: NamedDependency[AccountStore]
    ) -> Response[SignedIn]:
        """Password sign-in for admins. Returns a token, and sets it as the pages' cookie."""
        user, token = await accounts.sign_in(data.name, data.password)
        principal = Principal(user_id=user.id, user_name=user.name, role=user.role)
        await accounts.audit(principal, "sign_in", user.id, address=_address(request))
        cookie = Cookie(key=SESSION_COOKIE, value=token, httponly=True, samesite="strict", path="/")
        return Response(SignedIn(token=token, user=user), cookies=[cookie])

    @post("/logout", operation_id="signOut", status_code=204, security=SECURITY_REQUIREMENT)
    async def sign_out(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> Response[None]:
        if request.user.credential_kind == "session" and request.user.device_id:
            await accounts.revoke(request.user.device_id)
        return Response(None, status_code=204, cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0)])


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    guards = [requires_admin, cookie_writes_send_json]
    security = SECURITY_REQUIREMENT

    @get("/me", operation_id="whoAmI")
    async def me(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> UserInfo:
        return await accounts.user(request.user.user_id)

    @get("/users", operation_id="listUsers")
    async def list_users(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> list[UserInfo]:
        return await _visible_users(request.user, accounts)

    @post("/users", operation_id="createUser", status_code=201)
    async def create_user(
        self,
        request: Request[Principal, str, Any],
        data: JSONBody[NewUser],
        accounts: NamedDependency[AccountStore],
    ) -> UserInfo:
        return await _create_user(request.user, data, accounts, _address(request))

    @patch("/users/{user_id:str}", operation_id="changeUserRole")
    async def change_user(
        self,
        request: Request[Principal, str, Any],
        user_id: Annotated[str, Parameter(pattern=_NO_NUL)],
        data: JSONBody[UserChange],
        accounts: NamedDependency[AccountStore],
    ) -> UserInfo:
        before = await accounts.user(user_id)
        _may_manage(request.user, before.communities, before.role)
        _may_manage(request.user, data.scope.communities, data.role)
        after = await accounts.update_user(user_id, data.role, data.scope.to_scope())
        await accounts.audit(
            request.user,
            "role_change",
            user_id,
            address=_address(request),
            community_id=after.home_community,
            before={"role": before.role, "grids": before.grids, "buildings": before.buildings},
            after={"role": after.role, "grids": after.grids, "buildings": after.buildings},
        )
        return after

    @get("/devices", operation_id="listDevices")
    async def list_devices(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> list[DeviceInfo]:
        found = await accounts.list_devices()
        if request.user.is_district_admin:
            return found
        allowed = {u.id for u in await _visible_users(request.user, accounts)}
        return [d for d in found if d.user_id in allowed]

    @post("/devices", operation_id="enrollDevice", status_code=201)
    async def enroll_device(
        self,
        request: Request[Principal, str, Any],
        data: JSONBody[NewDevice],
        accounts: NamedDependency[AccountStore],
    ) -> EnrolledDevice:
        """Enrol a phone; the token in the answer is shown only this once."""
        if (data.user_id is None) == (data.user is None):
            raise ValidationException("give either user_id (an existing user) or user (a new one)")
        if data.user is not None:
            user = await _create_user(request.user, data.user, accounts, _address(request))
        else:
            assert data.user_id is not None
            user = await accounts.user(data.user_id)
            _may_manage(request.user, user.communities, user.role)
        device_id, token = await accounts.enroll_phone(request.user, user, data.name, _address(request))
        return EnrolledDevice(device_id=device_id, token=token, user=user)

    @delete("/devices/{device_id:str}", operation_id="revokeDevice", status_code=204)
    async def revoke_device(
        self,
        request: Request[Principal, str, Any],
        device_id: Annotated[str, Parameter(pattern=_NO_NUL)],
        accounts: NamedDependency[AccountStore],
    ) -> None:
        """Cut a lost phone off: its token fails from the very next request."""
        device = await accounts.device(device_id)
        owner = await accounts.user(device.user_id) if device.user_id else None
        if owner is not None:
            _may_manage(request.user, owner.communities, owner.role)
        elif not request.user.is_district_admin:
            raise PermissionDeniedException("only a district admin may revoke a device without a user")
        await accounts.revoke(device_id)
        await accounts.audit(
            request.user,
            "device_revoke",
            device_id,
            address=_address(request),
            community_id=owner.home_community if owner else None,
            device_name=device.name,
        )

    @post(
        "/residents/{resident_id:str}/erase",
        operation_id="eraseResident",
        status_code=200,
        summary="Erase a resident who moved out: personal fields and history purged, audited",
        description="Phones drop the resident on their next pull (docs/security.md, Erasure). "
        "A community admin erases residents of their communities only; others answer 404.",
    )
    async def erase_resident(
        self,
        request: Request[Principal, str, Any],
        resident_id: FromPath[str],
        store: NamedDependency[SyncStore],
    ) -> ResidentErased:
        return await erase_resident(store, request.user, resident_id, address=_address(request))

    @get("/audit", operation_id="auditLog")
    async def audit(
        self,
        request: Request[Principal, str, Any],
        accounts: NamedDependency[AccountStore],
        action: Annotated[str | None, Parameter(pattern=_NO_NUL)] = None,
        actor: Annotated[str | None, Parameter(pattern=_NO_NUL)] = None,
        cursor: Annotated[int | None, Parameter(ge=0, le=_MAX_BIGINT)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> AuditPage:
        """Newest first. Community admins see the entries of their communities."""
        communities = None if request.user.is_district_admin else list(request.user.scope.communities)
        entries = await accounts.audit_entries(
            action=action, actor_user_id=actor, communities=communities, before_id=cursor, limit=limit
        )
        return AuditPage(entries=entries, cursor=entries[-1].id if len(entries) == limit else None)
