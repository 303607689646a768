"""The admin API: sign-in, users and roles, devices, enrolment codes, the audit log; and the
phone's side of an enrolment code (``POST /v1/enrol``).

Community admins manage the users and devices of their own communities, and grant only grids
and buildings inside them; district admins manage everything. Users and devices are managed from
a password sign-in only, never with a phone's token. Every change an admin makes is written to
the audit log with who, when and from where.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import FromPath, JSONBody, Parameter

from schemas.collections import END
from schemas.views import ResidentErased
from server.access.accounts import (
    AccountStore,
    AuditEntry,
    DeviceInfo,
    EnrolmentCode,
    UserInfo,
    sign_in_slowed,
)
from server.access.guards import cookie_writes_send_json
from server.access.principals import Principal, UserScope, requires_signed_in_admin
from server.access.rate_limits import SignInThrottle
from server.access.tokens import SECURITY_REQUIREMENT, session_cookie
from server.errors import GridsyncError
from server.openapi import problems
from server.registry.erasure import erase_resident
from server.settings import Settings
from server.sync.store import SyncStore

__all__ = ["AdminController", "EnrolmentController", "SignInController"]

# Inputs that reach SQL are bounded to what the database can hold: PostgreSQL refuses NUL in
# text and integers beyond 64 bits (a 500 before; found by tests/reliability/test_openapi_fuzz.py).
_NO_NUL = r"^[^\x00]*" + END
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


class NewEnrolmentCode(msgspec.Struct, forbid_unknown_fields=True):
    """A one-time code for a phone of an existing user (``user_id``) or of a new one (``user``);
    ``ttl_s`` defaults to ``GRIDSYNC_ENROLMENT_CODE_TTL_S``."""

    user_id: str | None = None
    user: NewUser | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 24 * 3600)] | None = None


class Enrolment(msgspec.Struct, forbid_unknown_fields=True):
    """What a phone sends to exchange its code: the code, its own name, its replica id."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_NUL)]
    name: Name
    replica_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}" + END)] | None = None


class Enrolled(msgspec.Struct):
    device_id: str
    token: str


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


async def _may_grant(admin: Principal, role: str, scope: UserScope, accounts: AccountStore) -> None:
    """Every element of a scope an admin grants lies inside what that admin manages: its
    communities, and grids and buildings known to sit in them (a handler's company is reached
    only inside its communities, see server/access/policy.py)."""
    _may_manage(admin, scope.communities, role)
    if admin.is_district_admin:
        return
    outside = await accounts.places_outside(scope, admin.scope.communities)
    if outside:
        raise PermissionDeniedException(
            f"{', '.join(outside)}: not a grid or building of a community you administer"
        )


async def _user_for(
    admin: Principal, user_id: str | None, new_user: NewUser | None, accounts: AccountStore, address: str
) -> UserInfo:
    """The existing user an admin may manage, or the new one they may create."""
    if (user_id is None) == (new_user is None):
        raise ValidationException("give either user_id (an existing user) or user (a new one)")
    if new_user is not None:
        return await _create_user(admin, new_user, accounts, address)
    assert user_id is not None
    user = await accounts.user(user_id)
    await _may_grant(admin, user.role, _scope_of(user), accounts)
    return user


def _scope_of(user: UserInfo) -> UserScope:
    return UserScope(tuple(user.communities), tuple(user.grids), tuple(user.buildings), user.company)


async def _visible_users(admin: Principal, accounts: AccountStore) -> list[UserInfo]:
    found = await accounts.list_users()
    if admin.is_district_admin:
        return found
    mine = set(admin.scope.communities)
    return [u for u in found if u.communities and set(u.communities) <= mine]


async def _create_user(
    admin: Principal, data: JSONBody[NewUser], accounts: AccountStore, address: str
) -> UserInfo:
    await _may_grant(admin, data.role, data.scope.to_scope(), accounts)
    return await accounts.add_user(admin, data.name, data.role, data.scope.to_scope(), data.password, address)


class SignInController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post(
        "/login",
        operation_id="signIn",
        exclude_from_auth=True,
        status_code=200,
        responses=problems(400, 401, 429, 503),
    )
    async def sign_in(
        self, request: Request[Any, Any, Any], data: JSONBody[SignIn], accounts: NamedDependency[AccountStore]
    ) -> Response[SignedIn]:
        """Password sign-in for admins. Returns a token, and sets it as the pages' cookie."""
        throttle: SignInThrottle = request.app.state.sign_in_throttle
        address = _address(request)
        wait_s = throttle.wait_s(data.name, address)
        if wait_s:
            raise sign_in_slowed(wait_s)
        try:
            user, token = await accounts.sign_in(data.name, data.password)
        except GridsyncError:
            throttle.failed(data.name, address)
            raise
        throttle.succeeded(data.name, address)
        principal = Principal(user_id=user.id, user_name=user.name, role=user.role)
        await accounts.audit(principal, "sign_in", user.id, address=address)
        return Response(SignedIn(token=token, user=user), cookies=[session_cookie(request, token)])

    @post(
        "/logout",
        operation_id="signOut",
        status_code=204,
        security=SECURITY_REQUIREMENT,
        responses=problems(401, 503),
    )
    async def sign_out(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> Response[None]:
        if request.user.credential_kind == "session" and request.user.device_id:
            await accounts.revoke(request.user.device_id)
        return Response(None, status_code=204, cookies=[session_cookie(request, "")])


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    guards = [requires_signed_in_admin, cookie_writes_send_json]
    security = SECURITY_REQUIREMENT

    @get("/me", operation_id="whoAmI", responses=problems(401, 403, 503))
    async def me(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> UserInfo:
        return await accounts.user(request.user.user_id)

    @get("/users", operation_id="listUsers", responses=problems(401, 403, 503))
    async def list_users(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> list[UserInfo]:
        return await _visible_users(request.user, accounts)

    @post(
        "/users",
        operation_id="createUser",
        status_code=201,
        responses=problems(400, 401, 403, 409, 415, 503),
    )
    async def create_user(
        self,
        request: Request[Principal, str, Any],
        data: JSONBody[NewUser],
        accounts: NamedDependency[AccountStore],
    ) -> UserInfo:
        return await _create_user(request.user, data, accounts, _address(request))

    @patch(
        "/users/{user_id:str}",
        operation_id="changeUserRole",
        responses=problems(400, 401, 403, 404, 415, 503),
    )
    async def change_user(
        self,
        request: Request[Principal, str, Any],
        user_id: Annotated[str, Parameter(pattern=_NO_NUL)],
        data: JSONBody[UserChange],
        accounts: NamedDependency[AccountStore],
    ) -> UserInfo:
        before = await accounts.user(user_id)
        await _may_grant(request.user, before.role, _scope_of(before), accounts)
        await _may_grant(request.user, data.role, data.scope.to_scope(), accounts)
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

    @get("/devices", operation_id="listDevices", responses=problems(401, 403, 503))
    async def list_devices(
        self, request: Request[Principal, str, Any], accounts: NamedDependency[AccountStore]
    ) -> list[DeviceInfo]:
        found = await accounts.list_devices()
        if request.user.is_district_admin:
            return found
        allowed = {u.id for u in await _visible_users(request.user, accounts)}
        return [d for d in found if d.user_id in allowed]

    @post(
        "/devices",
        operation_id="enrollDevice",
        status_code=201,
        responses=problems(400, 401, 403, 404, 409, 415, 503),
    )
    async def enroll_device(
        self,
        request: Request[Principal, str, Any],
        data: JSONBody[NewDevice],
        accounts: NamedDependency[AccountStore],
    ) -> EnrolledDevice:
        """Enrol a phone; the token in the answer is shown only this once."""
        user = await _user_for(request.user, data.user_id, data.user, accounts, _address(request))
        device_id, token = await accounts.enroll_phone(request.user, user, data.name, _address(request))
        return EnrolledDevice(device_id=device_id, token=token, user=user)

    @post(
        "/enrolment-codes",
        operation_id="issueEnrolmentCode",
        status_code=201,
        responses=problems(400, 401, 403, 404, 409, 415, 503),
    )
    async def issue_enrolment_code(
        self,
        request: Request[Principal, str, Any],
        data: JSONBody[NewEnrolmentCode],
        accounts: NamedDependency[AccountStore],
        settings: NamedDependency[Settings],
    ) -> EnrolmentCode:
        """A one-time code a phone exchanges for its token at ``POST /v1/enrol``: it works once,
        until ``expires_at_ms``. The code in the answer is shown only this once."""
        user = await _user_for(request.user, data.user_id, data.user, accounts, _address(request))
        ttl_s = data.ttl_s or settings.enrolment_code_ttl_s
        return await accounts.issue_code(request.user, user, ttl_s, _address(request))

    @delete(
        "/devices/{device_id:str}",
        operation_id="revokeDevice",
        status_code=204,
        responses=problems(400, 401, 403, 404, 503),
    )
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
        responses=problems(401, 403, 404, 415, 503),
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

    @get("/audit", operation_id="auditLog", responses=problems(400, 401, 403, 503))
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


class EnrolmentController(Controller):
    path = "/v1/enrol"
    tags = ["admin"]

    @post(
        "/",
        operation_id="enrolWithCode",
        exclude_from_auth=True,
        status_code=201,
        responses=problems(400, 429, 503),
    )
    async def enrol(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[Enrolment],
        accounts: NamedDependency[AccountStore],
    ) -> Enrolled:
        """A phone exchanges a one-time enrolment code for its device token (shown only this
        once). Needs no token; rate-limited per address."""
        device_id, token = await accounts.redeem_code(
            data.code, data.name, _address(request), replica_id=data.replica_id
        )
        return Enrolled(device_id=device_id, token=token)
