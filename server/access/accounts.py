"""Users, credentials (device tokens and admin sign-ins) and the audit log.

Tokens are 256 random bits shown once and stored only as SHA-256 hashes; passwords are hashed
with argon2. Every request looks its credential up, so revocation takes effect on the very next
request on every app process. One-time enrolment codes are kept as SHA-256 hashes too, and each
is exchanged once, before it expires, for a device token.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.accounts import AuditEntry, DeviceInfo, EnrolmentCode, UserInfo
from server.access.credentials import hash_token, new_code, new_token, normalise_code
from server.access.principals import ROLES, Principal, UserScope
from server.db.engine import pooled_rows
from server.db.tables import audit_log, devices, enrolment_codes, records, users
from server.errors import GridsyncError
from sync.hlc import now_ms

__all__ = [
    "AccountStore",
    "AuditEntry",
    "DeviceInfo",
    "EnrolmentCode",
    "UserInfo",
    "hash_token",
    "normalise_code",
]

SESSION_LIFETIME_MS = 12 * 3600 * 1000
_hasher = PasswordHasher()
_json = msgspec.json.Encoder()
# Every request runs this: one statement on the unique token_hash index, sent to the driver as
# it is (asyncpg keeps it prepared per connection). Only the placeholder differs by driver.
_CREDENTIAL = (
    "SELECT d.id, d.name, d.kind, d.expires_at_ms, u.id, u.name, u.role, u.scope, u.disabled_at_ms "
    "FROM devices d LEFT JOIN users u ON u.id = d.user_id "
    "WHERE d.token_hash = {} AND d.revoked_at_ms IS NULL"
)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash no password matches: a sign-in as an unknown user verifies against it, so it takes
    as long as one as a known user."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _scope_json(scope: UserScope) -> str:
    return _json.encode(scope).decode()


# A stored scope, read into the principal's UserScope (a missing kind: none of it).
_scope_from_json = msgspec.json.Decoder(UserScope).decode


def _device_row(
    device_id: str, name: str, user_id: str | None, kind: str, token: str, now: int
) -> dict[str, Any]:
    expires_at_ms = now + SESSION_LIFETIME_MS if kind == "session" else None
    return {
        "id": device_id,
        "name": name,
        "user_id": user_id,
        "kind": kind,
        "token_hash": hash_token(token),
        "created_at_ms": now,
        "expires_at_ms": expires_at_ms,
    }


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise GridsyncError(400, "unknown_role", f"role {role!r} is not one of: {', '.join(ROLES)}")


def sign_in_slowed(retry_after_s: int) -> GridsyncError:
    """The 429 of a name slowed down by wrong passwords from this address."""
    return GridsyncError(
        429,
        "sign_in_slowed",
        f"too many wrong passwords for this name from this address; try again in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


def _user_info(row: Any) -> UserInfo:
    scope = _scope_from_json(row.scope)
    return UserInfo(
        id=row.id,
        name=row.name,
        role=row.role,
        communities=list(scope.communities),
        grids=list(scope.grids),
        buildings=list(scope.buildings),
        company=scope.company,
        created_at_ms=row.created_at_ms,
        disabled=row.disabled_at_ms is not None,
    )


class AccountStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._credential = _CREDENTIAL.format("?" if engine.dialect.name == "sqlite" else "$1")

    # ------------------------------------------------------------------ users

    async def create_user(
        self, name: str, role: str, scope: UserScope, password: str | None = None
    ) -> UserInfo:
        _check_role(role)
        user_id = str(uuid.uuid4())
        row = {
            "id": user_id,
            "name": name,
            "role": role,
            "scope": _scope_json(scope),
            "password_hash": None if password is None else _hasher.hash(password),
            "failed_logins": 0,
            "created_at_ms": now_ms(),
        }
        try:
            async with self.engine.begin() as connection:
                await connection.execute(users.insert().values(**row))
        except IntegrityError:
            raise GridsyncError(409, "user_exists", f"a user named {name!r} already exists") from None
        return await self.user(user_id)

    async def user(self, user_id: str) -> UserInfo:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(users).where(users.c.id == user_id))).one_or_none()
        if row is None:
            raise GridsyncError(404, "not_found", f"no user {user_id!r}")
        return _user_info(row)

    async def user_by_name(self, name: str) -> UserInfo | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(users).where(users.c.name == name))).one_or_none()
        return None if row is None else _user_info(row)

    async def list_users(self) -> list[UserInfo]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(users).order_by(users.c.name))).all()
        return [_user_info(row) for row in rows]

    async def update_user(self, user_id: str, role: str, scope: UserScope) -> UserInfo:
        _check_role(role)
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(users).where(users.c.id == user_id).values(role=role, scope=_scope_json(scope))
            )
        if not result.rowcount:
            raise GridsyncError(404, "not_found", f"no user {user_id!r}")
        return await self.user(user_id)

    async def set_password(self, user_id: str, password: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(users).where(users.c.id == user_id).values(password_hash=_hasher.hash(password))
            )

    # ------------------------------------------------------------------ credentials

    async def enroll_device(
        self, user_id: str | None, name: str, *, kind: str = "device", role: str | None = None
    ) -> tuple[str, str]:
        """Create a credential; returns (id, token). The token is shown only this once.

        A credential without a user (protocol-level tooling) must say so with
        ``role="district_admin"``: it reads and writes everywhere, and like every device token
        it never manages users."""
        if user_id is None and role != "district_admin":
            raise GridsyncError(
                400,
                "role_required",
                "a device without a user is district-wide: pass role='district_admin', "
                "or enrol it for a user with a narrower role",
            )
        device_id = str(uuid.uuid4())
        token = new_token()
        now = now_ms()
        async with self.engine.begin() as connection:
            await connection.execute(
                devices.insert().values(_device_row(device_id, name, user_id, kind, token, now))
            )
        return device_id, token

    async def add_user(
        self, actor: Principal, name: str, role: str, scope: UserScope, password: str | None, address: str
    ) -> UserInfo:
        """Create a user and write the audit entry (the admin API and the CLI both come here)."""
        user = await self.create_user(name, role, scope, password)
        await self.audit(
            actor,
            "user_create",
            user.id,
            address=address,
            community_id=user.home_community,
            name=user.name,
            role=user.role,
        )
        return user

    async def enroll_phone(
        self, actor: Principal, user: UserInfo, name: str, address: str
    ) -> tuple[str, str]:
        """Enrol a phone for ``user`` and write the audit entry; returns (device id, token)."""
        device_id, token = await self.enroll_device(user.id, name)
        await self._audit_enrolment(actor, user, device_id, name, address)
        return device_id, token

    async def _audit_enrolment(
        self, actor: Principal, user: UserInfo, device_id: str, name: str, address: str, **detail: Any
    ) -> None:
        await self.audit(
            actor,
            "device_enroll",
            device_id,
            address=address,
            community_id=user.home_community,
            device_name=name,
            user_id=user.id,
            role=user.role,
            grids=user.grids,
            **detail,
        )

    async def places_outside(self, scope: UserScope, communities: Sequence[str]) -> list[str]:
        """The grids and buildings of ``scope`` that are not known places inside ``communities``
        (as ``grids/<id>``): an admin may grant only what lies inside what they administer."""
        wanted = [("grids", g) for g in scope.grids] + [("buildings", b) for b in scope.buildings]
        if not wanted:
            return []
        query = select(records.c.collection, records.c.record_id, records.c.community_id).where(
            records.c.deleted.is_(False),
            records.c.collection.in_(("grids", "buildings")),
            records.c.record_id.in_([record_id for _, record_id in wanted]),
        )
        async with self.engine.connect() as connection:
            found = {
                (row.collection, row.record_id): row.community_id for row in await connection.execute(query)
            }
        inside = set(communities)
        return [f"{c}/{r}" for c, r in wanted if found.get((c, r)) not in inside]

    async def issue_code(self, actor: Principal, user: UserInfo, ttl_s: int, address: str) -> EnrolmentCode:
        """A one-time enrolment code for a phone of ``user``, valid ``ttl_s`` seconds; audited."""
        code = new_code()
        now = now_ms()
        issued = EnrolmentCode(id=str(uuid.uuid4()), code=code, user=user, expires_at_ms=now + ttl_s * 1000)
        async with self.engine.begin() as connection:
            await connection.execute(
                enrolment_codes.insert().values(
                    id=issued.id,
                    code_hash=hash_token(normalise_code(code)),
                    user_id=user.id,
                    created_at_ms=now,
                    expires_at_ms=issued.expires_at_ms,
                )
            )
        await self.audit(
            actor,
            "enrolment_code_issue",
            issued.id,
            address=address,
            community_id=user.home_community,
            user_id=user.id,
            role=user.role,
            grids=user.grids,
            expires_at_ms=issued.expires_at_ms,
        )
        return issued

    async def redeem_code(
        self, code: str, name: str, address: str, replica_id: str | None = None
    ) -> tuple[str, str]:
        """Exchange an enrolment code for a device token, once; returns (device id, token).

        The code is spent in the same transaction that creates the device, by a conditional
        UPDATE: of two phones sending the same code at once, exactly one gets a token."""
        now = now_ms()
        device_id = str(uuid.uuid4())
        token = new_token()
        async with self.engine.begin() as connection:
            code_id, owner = await self._spend_code(connection, code, device_id, now)
            await connection.execute(
                devices.insert().values(_device_row(device_id, name, owner.id, "device", token, now))
            )
        user = _user_info(owner)
        await self._audit_enrolment(
            Principal(user_id=user.id, user_name=user.name, role=user.role, device_id=device_id),
            user,
            device_id,
            name,
            address,
            enrolment_code=code_id,
            replica_id=replica_id,
        )
        return device_id, token

    async def _spend_code(
        self, connection: AsyncConnection, code: str, device_id: str, now: int
    ) -> tuple[str, Any]:
        """Mark the code used by ``device_id``; returns its id and its user's row. A conditional
        UPDATE: of two phones sending the same code at once, exactly one spends it."""
        refused = GridsyncError(
            400,
            "invalid_enrolment_code",
            "this enrolment code is unknown, expired or already used; ask an admin for a new one",
        )
        row = (
            await connection.execute(
                select(enrolment_codes.c.id, enrolment_codes.c.user_id).where(
                    enrolment_codes.c.code_hash == hash_token(normalise_code(code))
                )
            )
        ).one_or_none()
        if row is None:
            raise refused
        spent = await connection.execute(
            update(enrolment_codes)
            .where(
                and_(
                    enrolment_codes.c.id == row.id,
                    enrolment_codes.c.used_at_ms.is_(None),
                    enrolment_codes.c.expires_at_ms > now,
                )
            )
            .values(used_at_ms=now, device_id=device_id)
        )
        owner = (await connection.execute(select(users).where(users.c.id == row.user_id))).one_or_none()
        if not spent.rowcount or owner is None or owner.disabled_at_ms is not None:
            raise refused
        return row.id, owner

    async def authenticate(self, token: str) -> Principal | None:
        """The caller behind a token, looked up on every request (so a revocation holds from
        the next request on, in every process); None for an unknown, revoked or expired token
        or a disabled user."""
        found = await pooled_rows(self.engine, self._credential, hash_token(token))
        if not found:
            return None
        device_id, name, kind, expires_at_ms, user_id, user_name, role, scope, disabled_at_ms = found[0]
        if disabled_at_ms is not None:
            return None
        if expires_at_ms is not None and expires_at_ms < now_ms():
            return None
        if user_id is None:
            # A device enrolled without a user (protocol-level tooling): district-wide access.
            return Principal(user_id=device_id, user_name=name, role="district_admin", device_id=device_id)
        return Principal(
            user_id=user_id,
            user_name=user_name,
            role=role,
            scope=_scope_from_json(scope),
            device_id=device_id,
            credential_kind=kind,
        )

    async def sign_in(self, name: str, password: str) -> tuple[UserInfo, str]:
        """Check a password; returns (user, session token).

        An unknown name, a disabled user and a wrong password cost the same (one read, one
        argon2 verification) and answer the same; slowing repeated failures down is the
        caller's (``server.access.rate_limits.SignInThrottle``), keyed by name and address, so it
        cannot tell which names exist either."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(users).where(users.c.name == name))).one_or_none()
        stored = row.password_hash if row is not None and row.disabled_at_ms is None else None
        try:
            valid = _hasher.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            valid = False
        if row is None or not valid:
            raise GridsyncError(401, "bad_credentials", "unknown user name or wrong password")
        _, token = await self.enroll_device(row.id, "admin sign-in", kind="session")
        return _user_info(row), token

    async def revoke(self, device_id: str) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(devices)
                .where(devices.c.id == device_id, devices.c.revoked_at_ms.is_(None))
                .values(revoked_at_ms=now_ms())
            )
        return bool(result.rowcount)

    async def device(self, device_id: str) -> DeviceInfo:
        found = await self.list_devices(device_ids=[device_id])
        if not found:
            raise GridsyncError(404, "not_found", f"no device {device_id!r}")
        return found[0]

    async def list_devices(self, *, device_ids: Sequence[str] | None = None) -> list[DeviceInfo]:
        query = (
            select(
                devices.c.id,
                devices.c.name,
                devices.c.user_id,
                users.c.name.label("user_name"),
                users.c.role,
                devices.c.created_at_ms,
                devices.c.revoked_at_ms,
                devices.c.last_seen_at_ms,
                devices.c.clock_skew_ms,
                devices.c.clock_flagged_at_ms,
            )
            .select_from(devices.outerjoin(users, users.c.id == devices.c.user_id))
            .where(devices.c.kind == "device")
            .order_by(devices.c.created_at_ms)
        )
        if device_ids is not None:
            query = query.where(devices.c.id.in_(device_ids))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [DeviceInfo(**row._mapping) for row in rows]

    # ------------------------------------------------------------------ audit

    async def audit(
        self,
        actor: Principal | None,
        action: str,
        target: str | None = None,
        *,
        address: str | None = None,
        community_id: str | None = None,
        **detail: Any,
    ) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                audit_log.insert().values(
                    at_ms=now_ms(),
                    actor_user_id=actor.user_id if actor else None,
                    actor_name=actor.user_name if actor else None,
                    actor_device_id=actor.device_id if actor else None,
                    address=address,
                    action=action,
                    target=target,
                    community_id=community_id,
                    detail=_json.encode(detail).decode(),
                )
            )

    async def audit_entries(
        self,
        *,
        action: str | None = None,
        actor_user_id: str | None = None,
        communities: Sequence[str] | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; page with ``before_id`` set to the last id of the previous page."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        if actor_user_id is not None:
            query = query.where(audit_log.c.actor_user_id == actor_user_id)
        if communities is not None:
            query = query.where(audit_log.c.community_id.in_(communities))
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [AuditEntry(**{**row._mapping, "detail": msgspec.json.decode(row.detail)}) for row in rows]
