"""Helpers shared by the tests: changes without repeating every field, users, sign-ins and tokens."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from typing import Any

from litestar.testing import TestClient

from schemas.protocol import AddChange, Change, DeleteChange, RemoveChange, SetChange
from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.settings import Settings
from sync.client import Replica
from sync.hlc import format_hlc

_counter = itertools.count(1)
PASSWORD = "correct horse battery"
ID_NUMBER = "110101199001011234"
# Two communities, three grids with a building and a household each, two residents and a visit:
# (collection, id, fields), parents first, as a district-wide device pushes them.
TWO_COMMUNITIES: list[tuple[str, str, dict[str, Any]]] = [
    ("communities", "c1", {"name": "Xingfu"}),
    ("communities", "c2", {"name": "Heping"}),
    ("grids", "g1", {"community_id": "c1", "name": "Grid 1"}),
    ("grids", "g2", {"community_id": "c1", "name": "Grid 2"}),
    ("grids", "g3", {"community_id": "c2", "name": "Grid 3"}),
    ("buildings", "b1", {"grid_id": "g1", "name": "Building 1"}),
    ("buildings", "b2", {"grid_id": "g2", "name": "Building 2"}),
    ("buildings", "b3", {"grid_id": "g3", "name": "Building 3"}),
    ("households", "h1", {"building_id": "b1", "address": "1-101"}),
    ("households", "h2", {"building_id": "b2", "address": "2-101"}),
    ("households", "h3", {"building_id": "b3", "address": "3-101"}),
    ("residents", "r1", {"household_id": "h1", "name": "Wang Fang", "id_number": ID_NUMBER}),
    ("residents", "r2", {"household_id": "h2", "name": "Li Lei"}),
    ("visits", "v1", {"household_id": "h1", "purpose": "routine"}),
]


async def _create_user(
    settings: Settings, name: str, role: str, communities: tuple[str, ...], password: str | None
) -> None:
    engine = create_engine(settings.database_url)
    try:
        await AccountStore(engine).create_user(name, role, UserScope(communities=communities), password)
    finally:
        await engine.dispose()


def create_user(
    settings: Settings,
    name: str,
    role: str,
    communities: tuple[str, ...] = (),
    password: str | None = PASSWORD,
) -> None:
    """Create a user who signs in with ``PASSWORD`` (with None: one who cannot sign in)."""
    asyncio.run(_create_user(settings, name, role, communities, password))


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> str:  # type: ignore[type-arg]
    """Sign in through the admin API; returns the session token."""
    reply = client.post("/v1/admin/login", json={"name": name, "password": password})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def enroll_user(settings: Settings, name: str, role: str, scope: UserScope) -> str:
    """Create a user with that role and scope and enrol a phone for them; returns its token."""
    engine = create_engine(settings.database_url)
    try:
        accounts = AccountStore(engine)
        user = await accounts.create_user(name, role, scope)
        _, token = await accounts.enroll_device(user.id, f"{name}'s phone")
    finally:
        await engine.dispose()
    return token


async def enroll_worker(settings: Settings, name: str, role: str, scope: UserScope) -> tuple[str, str]:
    """Like ``enroll_user``; returns the user's id (what a task's assignee holds) and the token."""
    engine = create_engine(settings.database_url)
    try:
        accounts = AccountStore(engine)
        user = await accounts.create_user(name, role, scope)
        _, token = await accounts.enroll_device(user.id, f"{name}'s phone")
    finally:
        await engine.dispose()
    return user.id, token


def audit_entries(settings: Settings, action: str) -> list[Any]:
    """The audit log's entries of one action, newest first."""

    async def read() -> list[Any]:
        engine = create_engine(settings.database_url)
        try:
            return list(await AccountStore(engine).audit_entries(action=action))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def change_id() -> str:
    return str(uuid.uuid4())


def hlc(wall: int, replica: str = "r1", counter: int = 0) -> str:
    return format_hlc(1_700_000_000_000 + wall, counter, replica)


def _common(at: int | None, replica: str, record: str, collection: str, id: str | None) -> dict[str, Any]:
    """What every change carries: an id, where it goes, and an hlc (the next tick unless ``at``)."""
    return {
        "id": id or change_id(),
        "collection": collection,
        "record_id": record,
        "hlc": hlc(next(_counter) if at is None else at, replica),
    }


def set_(
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...] = (),
    at: int | None = None,
    replica: str = "r1",
    record: str = "h1",
    collection: str = "households",
    id: str | None = None,
) -> Change:
    return SetChange(**_common(at, replica, record, collection, id), field=field, value=value, pred=pred)


def add(
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...] = (),
    at: int | None = None,
    replica: str = "r1",
    record: str = "h1",
) -> Change:
    return AddChange(**_common(at, replica, record, "households", None), field=field, value=value, pred=pred)


def remove(
    field: str,
    value: Any,
    *,
    pred: tuple[str, ...],
    at: int | None = None,
    replica: str = "r1",
    record: str = "h1",
) -> Change:
    return RemoveChange(
        **_common(at, replica, record, "households", None), field=field, value=value, pred=pred
    )


def delete(
    *, pred: tuple[str, ...], at: int | None = None, replica: str = "r1", record: str = "h1"
) -> Change:
    return DeleteChange(**_common(at, replica, record, "households", None), pred=pred)


def seed_places(client: Any, token: str, places: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Push registry records (``(collection, id, fields)``) as the district-wide ``token``, in
    one batch, through the HTTP API; every change must be applied."""
    changes = [
        {
            "op": "set",
            "id": change_id(),
            "collection": collection,
            "record_id": record_id,
            "hlc": hlc(next(_counter), "seeder"),
            "field": name,
            "value": value,
            "pred": [],
        }
        for collection, record_id, fields in places
        for name, value in fields.items()
    ]
    reply = client.post(
        "/v1/sync/push",
        json={"replica_id": "seeder", "protocol": 1, "changes": changes},
        headers={"authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.text
    assert {r["status"] for r in reply.json()["results"]} == {"applied"}, reply.text


def make_conflict(
    client: TestClient,  # type: ignore[type-arg]
    *writers: Replica,
    record: str = "h1",
    field: str = "phone",
    values: tuple[Any, ...] = ("2", "3"),
    bystanders: tuple[Replica, ...] = (),
) -> None:
    """Phones start from the same value and each writer writes its own one offline; a bystander
    only takes the starting value and stays offline."""
    first = writers[0]
    first.set("households", record, field, "1" if field == "phone" else "start")
    first.sync(client)
    for replica in (*writers[1:], *bystanders):
        replica.sync(client)
    for replica, value in zip(writers, values, strict=True):
        replica.set("households", record, field, value)
    for replica in writers:
        replica.sync(client)


# The key the test apps seal ID numbers with (64 bytes, URL-safe base64): fixed, so a test may
# open what the server stored.
TEST_ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(64))).decode()


def photo(
    kind: str = "JPEG", *, place: tuple[float, float] | None = (39.9042, 116.4074), seed: int = 0
) -> bytes:
    """A small real photo (``JPEG`` or ``PNG``), with EXIF naming where it was taken unless
    ``place`` is None; ``seed`` makes its pixels differ."""
    import io

    from PIL import Image

    image = Image.new("RGB", (16, 12), (seed % 256, 80, 160))
    exif = Image.Exif()
    if place is not None:
        latitude, longitude = place
        # GPS IFD: latitude and longitude as degrees, minutes, seconds.
        exif[0x8825] = {
            1: "N",
            2: (float(int(latitude)), float(int(latitude * 60 % 60)), 12.34),
            3: "E",
            4: (float(int(longitude)), float(int(longitude * 60 % 60)), 56.78),
        }
        exif[0x010F] = "PhoneMaker"  # camera make, in IFD0
    out = io.BytesIO()
    image.save(out, kind, exif=exif.tobytes() if place is not None else b"")
    return out.getvalue()
