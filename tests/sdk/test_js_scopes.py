"""A grid worker's JS phone against a real server: it holds exactly its grid, drops a household
that moves to another grid (``left``), and starts over when its assignment changes (409
``scope_changed``), its own edit judged on the way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.settings import Settings
from sync.client import Replica
from tests.factories import enroll_user
from tests.sdk.conftest import phone_turn

DISTRICT: list[tuple[str, str, dict[str, Any]]] = [
    ("communities", "c1", {"name": "Xingfu"}),
    ("grids", "g1", {"community_id": "c1", "name": "Grid 1"}),
    ("grids", "g2", {"community_id": "c1", "name": "Grid 2"}),
    ("buildings", "b1", {"grid_id": "g1", "name": "Building 1"}),
    ("buildings", "b2", {"grid_id": "g2", "name": "Building 2"}),
    ("households", "h1", {"building_id": "b1", "address": "1-101"}),
    ("households", "h2", {"building_id": "b2", "address": "2-101"}),
    ("residents", "r1", {"household_id": "h1", "name": "Wang Fang"}),
    ("visits", "v1", {"household_id": "h1", "purpose": "routine"}),
]
GRID_1 = {"communities/c1", "grids/g1", "buildings/b1", "households/h1", "residents/r1", "visits/v1"}
GRID_2 = {"communities/c1", "grids/g2", "buildings/b2", "households/h2"}


async def _reassign(settings: Settings, name: str, scope: UserScope) -> None:
    engine = create_engine(settings.database_url)
    try:
        accounts = AccountStore(engine)
        user = await accounts.user_by_name(name)
        assert user is not None
        await accounts.update_user(user.id, user.role, scope)
    finally:
        await engine.dispose()


def test_a_grid_workers_js_phone_follows_its_scope(
    server_url: str, enroll: Callable[[str], str], settings: Settings, tmp_path: Path
) -> None:
    admin = Replica(tmp_path / "admin.db", "admin-phone", token=enroll("admin-phone"))
    for collection, record_id, fields in DISTRICT:
        for name, value in fields.items():
            admin.set(collection, record_id, name, value)
    worker_token = asyncio.run(
        enroll_user(settings, "worker1", "grid_worker", UserScope(communities=("c1",), grids=("g1",)))
    )
    job = {"url": server_url, "token": worker_token, "replicaId": "worker1-js", "sync": True}
    job["storePath"] = str(tmp_path / "worker1.json")
    with httpx.Client(base_url=server_url, timeout=30) as http:
        assert admin.sync(http).rejected == []
        assert set(phone_turn(job)["held"]) == GRID_1

        admin.set("households", "h1", "building_id", "b2")
        assert admin.sync(http).rejected == []
        moved = phone_turn(job)
        assert set(moved["held"]) == GRID_1 - {"households/h1", "residents/r1", "visits/v1"}

        asyncio.run(_reassign(settings, "worker1", UserScope(communities=("c1",), grids=("g2",))))
        # Typed on the phone before it learns of its new grid: judged out of scope at the push.
        start_over = phone_turn({**job, "writes": [["buildings", "b1", "name", "typed before the change"]]})
        assert start_over["report"]["resynced"] is True
        assert [r["code"] for r in start_over["report"]["rejected"]] == ["out_of_scope"]
        assert set(start_over["held"]) == GRID_2 | {"households/h1", "residents/r1", "visits/v1"}
        assert start_over["pending"] == 0
    admin.close()
