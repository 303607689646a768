"""Fixtures the conformance suites share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from server.app import create_app
from server.settings import Settings
from tests.factories import create_user


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The app with two admins who sign in with ``PASSWORD``: ``district`` (district-wide) and
    ``east-admin`` (community c-east)."""
    create_user(settings, "district", "district_admin")
    create_user(settings, "east-admin", "community_admin", ("c-east",))
    with TestClient(create_app(settings)) as client:
        yield client
