"""Fault 2: the connection drops after the server committed a batch (pushed alone or in an
exchange), before the phone read the answer. The retry is answered `duplicate` for every change;
nothing is lost or doubled."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.reliability.harness import (
    FieldPhone,
    ServerProcess,
    backend_of,
    check_log_and_states,
    record_figures,
    views,
)
from tests.reliability.proxy import ResponseDroppingProxy

ROUNDS = 5


def test_lost_push_and_pull_responses_are_retried_safely(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    backend = backend_of(database_url)
    rng = random.Random(5)
    with (
        ServerProcess(database_url, tmp_path / "server.log") as server,
        ResponseDroppingProxy(server.port) as proxy,
    ):
        walker = FieldPhone(tmp_path / "walker.db", "walker", enroll("walker"), proxy.base_url)
        other = FieldPhone(tmp_path / "other.db", "other", enroll("other"), server.base_url)
        replica, other_replica = walker.open(), other.open()
        lost_changes = 0
        with walker.http() as http, other.http() as direct:
            for _ in range(ROUNDS):
                walker.edit(replica, rng, 80)
                other.edit(other_replica, rng, 20)
                other.sync_until_done(other_replica, direct)
                pending = {c.id for c in replica.pending(200)}
                proxy.drop_next = 1
                assert not walker.push_once(replica, http), "the answer should have been lost"
                # The server committed the batch the phone never heard about...
                stored = check_log_and_states(database_url).stored_ids
                assert pending <= stored
                assert {c.id for c in replica.pending(200)} == pending
                # ...and the retry is told so, change by change.
                before = set(walker.told_duplicate)
                assert walker.push_once(replica, http)
                assert walker.told_duplicate - before == pending
                assert not pending & walker.told_applied
                lost_changes += len(pending)
                # A lost pull answer: the phone asks again from the same cursor.
                cursor = replica.cursor
                proxy.drop_next = 1
                with pytest.raises(httpx.TransportError):
                    replica.sync(http)
                assert replica.cursor == cursor
                walker.sync_until_done(replica, http)
                # A lost exchange answer, a push and a page at once: the server committed the
                # push; the phone keeps its changes pending and its cursor, and asks again.
                walker.edit(replica, rng, 10)
                pending, cursor = {c.id for c in replica.pending(200)}, replica.cursor
                proxy.drop_next = 1
                with pytest.raises(httpx.TransportError):
                    replica.sync(http)
                assert replica.cursor == cursor
                assert {c.id for c in replica.pending(200)} == pending
                assert pending <= check_log_and_states(database_url).stored_ids
                lost_changes += len(pending)
                walker.sync_until_done(replica, http)
                assert replica.pending(200) == []

            check = check_log_and_states(database_url)
            assert check.stored_ids == walker.made | other.made
            assert check.rows == len(walker.made) + len(other.made)
            other.sync_until_done(other_replica, direct)
            served = views(direct, check.record_ids, other.token)
            assert views(replica, check.record_ids) == served
            assert views(other_replica, check.record_ids) == served
        replica.close()
        other_replica.close()
        dropped = proxy.dropped
    record_figures(
        f"lost-response-{backend}",
        {
            "responses_dropped": dropped,
            "changes_in_lost_push_answers": lost_changes,
            "changes_checked": check.rows,
        },
    )
