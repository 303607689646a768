"""``gridsync serve --workers N``: N app processes share the port, every one of them serves, and
a revoked token fails on its next request whichever process answers it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from server.access.accounts import AccountStore
from server.db.engine import create_engine
from tests.reliability.harness import ServerProcess, server_clock

WORKERS = 2


def _status(base_url: str, token: str) -> int:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.get(f"{base_url}/v1/sync/pull", headers=headers, timeout=30).status_code


async def _revoke(database_url: str, token: str) -> None:
    engine = create_engine(database_url)
    try:
        accounts = AccountStore(engine)
        principal = await accounts.authenticate(token)
        assert principal is not None
        assert principal.device_id is not None
        assert await accounts.revoke(principal.device_id)
    finally:
        await engine.dispose()


def test_workers_all_serve_and_a_revocation_holds_in_every_one(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    token = enroll("phone")
    with (
        ServerProcess(database_url, tmp_path / "server.log", workers=WORKERS) as server,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        # Fresh connections, many at once: the kernel hands them to every worker.
        nodes = set(pool.map(lambda _: server_clock(server.base_url, token), range(200)))
        assert len(nodes) == WORKERS, nodes
        asyncio.run(_revoke(database_url, token))
        assert set(pool.map(lambda _: _status(server.base_url, token), range(50))) == {401}
