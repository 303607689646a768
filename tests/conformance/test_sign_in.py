"""Sign-in: the same work and the same answers for unknown and known names; a slow-down that
an attacker cannot turn into a lock-out; proxy headers believed only from trusted proxies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from litestar.testing import TestClient

import server.access.accounts
from server.access.rate_limits import SignInThrottle
from server.app import create_app
from server.settings import Settings
from tests.factories import PASSWORD, create_user

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def users(settings: Settings) -> Settings:
    create_user(settings, "admin", "district_admin")
    create_user(settings, "gone", "district_admin")
    create_user(settings, "phone-only", "grid_worker", password=None)
    return settings


def _app(settings: Settings, **overrides: Any) -> Client:
    # Sign-ins per address per minute are not under test here.
    return TestClient(create_app(replace(settings, sign_ins_per_minute=10_000, **overrides)))


@pytest.fixture
def app_client(users: Settings) -> Iterator[Client]:
    with _app(users) as client:
        yield client


@pytest.fixture
def behind_proxy(users: Settings) -> Iterator[Client]:
    """The app behind a trusted proxy (the test client's own address)."""
    with _app(users, trusted_proxies="testclient") as client:
        yield client


def _sign_in(client: Client, name: str, password: str, address: str | None = None) -> Any:
    headers = {"x-forwarded-for": address} if address else {}
    return client.post("/v1/admin/login", json={"name": name, "password": password}, headers=headers)


def test_unknown_names_cost_one_password_check_like_known_ones(
    app_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    real = server.access.accounts._hasher

    class Counted:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            checks.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(server.access.accounts, "_hasher", Counted())
    for name in ("admin", "nobody", "phone-only"):
        checks.clear()
        reply = _sign_in(app_client, name, "wrong password")
        assert (reply.status_code, reply.json()["code"]) == (401, "bad_credentials"), name
        assert [stored[:8] for stored in checks] == ["$argon2i"], name


def _tight(client: Client) -> Client:
    """Fewer free attempts than the defaults, so that each test checks few passwords (argon2
    is slow on purpose)."""
    client.app.state.sign_in_throttle = SignInThrottle(free_per_address=2, free_per_name=4)
    return client


def test_the_slow_down_is_the_same_for_unknown_and_known_names(app_client: Client) -> None:
    _tight(app_client)
    answers: dict[str, list[tuple[int, str]]] = {}
    for name in ("admin", "nobody"):
        replies = [_sign_in(app_client, name, "wrong password") for _ in range(4)]
        answers[name] = [(r.status_code, r.json()["code"]) for r in replies]
    assert answers["admin"] == answers["nobody"]
    assert answers["admin"][-2:] == [(429, "sign_in_slowed")] * 2


def test_untrusted_forwarded_for_does_not_dodge_the_slow_down(app_client: Client) -> None:
    _tight(app_client)
    for n in range(2):
        assert _sign_in(app_client, "admin", "wrong", f"10.0.0.{n}").status_code == 401
    assert _sign_in(app_client, "admin", PASSWORD, "10.9.9.9").status_code == 429


def test_an_attacker_cannot_lock_the_real_admin_out(behind_proxy: Client) -> None:
    _tight(behind_proxy)
    # One attacker address is slowed down after its free guesses...
    for _ in range(2):
        assert _sign_in(behind_proxy, "admin", "guess", "203.0.113.1").status_code == 401
    assert _sign_in(behind_proxy, "admin", PASSWORD, "203.0.113.1").status_code == 429
    # ...then more addresses, until the name is slowed down for every address that failed.
    for n in (2, 3):
        assert _sign_in(behind_proxy, "admin", "guess", f"203.0.113.{n}").status_code == 401
    assert _sign_in(behind_proxy, "admin", PASSWORD, "203.0.113.2").status_code == 429
    # The admin, from their own office, still signs in.
    office = _sign_in(behind_proxy, "admin", PASSWORD, "198.51.100.20")
    assert office.status_code == 200, office.text


def test_the_audit_log_records_the_forwarded_address_only_behind_a_trusted_proxy(
    app_client: Client, behind_proxy: Client
) -> None:
    for client, expected in ((app_client, "testclient"), (behind_proxy, "198.51.100.20")):
        token = _sign_in(client, "admin", PASSWORD, "198.51.100.20").json()["token"]
        audit = client.get("/v1/admin/audit", headers={"authorization": f"Bearer {token}"}).json()
        assert audit["entries"][0]["address"] == expected


def test_the_throttle_forgets_and_stays_bounded() -> None:
    throttle = SignInThrottle(free_per_address=2, free_per_name=3, max_lock_s=10, forget_after_s=60)
    for n in range(3):
        throttle.failed("admin", "a", now=100 + n)
    assert throttle.wait_s("admin", "a", now=103) > 0
    assert throttle.wait_s("admin", "fresh", now=103) == 0
    assert throttle.wait_s("admin", "a", now=120) == 0
    for n in range(1000):
        throttle.failed(f"name-{n}", f"addr-{n}", now=200)
    throttle.failed("admin", "b", now=400)
    assert len(throttle._by_pair) == 1
    assert len(throttle._by_name) == 1
