"""`gridsync serve` believes X-Forwarded-For only from the proxies it is told to trust: uvicorn's
own default (trust 127.0.0.1) would let anyone on the host pick the address that the rate limits,
the sign-in slow-down and the audit log see."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine, migrate
from tests.reliability.harness import ServerProcess

PASSWORD = "correct horse battery"


async def _admin(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        await AccountStore(engine).create_user("admin", "district_admin", UserScope(), PASSWORD)
    finally:
        await engine.dispose()


def _signed_in_address(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        signed_in = http.post(
            "/v1/admin/login",
            json={"name": "admin", "password": PASSWORD},
            headers={"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https"},
        )
        assert signed_in.status_code == 200, signed_in.text
        token = signed_in.json()["token"]
        audit = http.get("/v1/admin/audit", headers={"authorization": f"Bearer {token}"}).json()
    address: str = audit["entries"][0]["address"]
    return address


@pytest.mark.parametrize(("trusted", "seen"), [("", "127.0.0.1"), ("127.0.0.1", "198.51.100.7")])
def test_forwarded_for_counts_only_from_a_trusted_proxy(
    database_url: str, tmp_path: Path, trusted: str, seen: str
) -> None:
    asyncio.run(_admin(database_url))
    with ServerProcess(
        database_url, tmp_path / "server.log", env={"GRIDSYNC_TRUSTED_PROXIES": trusted}
    ) as server:
        assert _signed_in_address(server.base_url) == seen
