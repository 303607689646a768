"""Fault 1: the server is SIGKILLed in the middle of pushes, 50 times, while phones keep pushing
and retrying. Nothing a phone was told `applied` is lost, nothing is stored twice, the record
states equal a rebuild from the log, and every phone converges."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from tests.reliability.harness import (
    FieldDay,
    FieldPhone,
    ServerProcess,
    backend_of,
    check_log_and_states,
    record_figures,
    views,
)

KILLS = 50
PHONES = 3


def test_sigkill_in_the_middle_of_pushes(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    backend = backend_of(database_url)
    server = ServerProcess(database_url, tmp_path / "server.log")
    phones = [
        FieldPhone(tmp_path / f"phone-{n}.db", f"phone-{n}", enroll(f"phone-{n}"), server.base_url)
        for n in range(PHONES)
    ]
    day = FieldDay(phones, timeout=5.0, most_edits=40, backoff=0.02)
    server.start()
    day.start()
    rng = random.Random(99)
    kills_mid_push = 0
    try:
        for _ in range(KILLS):
            server.wait_ready()
            time.sleep(rng.uniform(0.05, 0.2))  # the phones get some pushes through
            # Wait (bounded) for a push to be on the wire, then kill at a random point inside it.
            for _ in range(500):
                if day.in_flight:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.03))
            kills_mid_push += bool(day.in_flight)
            server.kill()
            server.start(wait=False)
        server.wait_ready()
    finally:
        day.finish()
    assert not day.errors, day.errors

    try:
        # Back in signal: everyone pushes what is left, then everyone pulls everything.
        replicas = [phone.open() for phone in phones]
        with phones[0].http() as http:
            for _ in range(2):
                for phone, replica in zip(phones, replicas, strict=True):
                    phone.sync_until_done(replica, http)
            check = check_log_and_states(database_url)
            made = set().union(*(p.made for p in phones))
            applied = set().union(*(p.told_applied for p in phones))
            assert applied <= check.stored_ids, "a change told `applied` is not stored"
            assert made == check.stored_ids, "every change made is stored exactly once"
            assert check.rows == len(made)
            for replica in replicas:
                assert not replica.pending()
            record_ids = check.record_ids
            served = views(http, record_ids, phones[0].token)
            for replica in replicas:
                assert views(replica, record_ids) == served, replica.replica_id
        for replica in replicas:
            replica.close()
    finally:
        server.stop()

    failures = sum(p.failures for p in phones)
    duplicates = len(set().union(*(p.told_duplicate for p in phones)))
    assert failures > 0, "no push ever went unanswered"
    assert kills_mid_push > 0, "the kills never hit a push"
    record_figures(
        f"sigkill-{backend}",
        {
            "kills": KILLS,
            "kills_with_a_push_in_flight": kills_mid_push,
            "server_starts": server.starts,
            "pushes": sum(p.pushes for p in phones),
            "pushes_answered": sum(p.pushes for p in phones) - failures,
            "pushes_not_answered": failures,
            "pushes_cut_off_mid_request": sum(p.cut_off for p in phones),
            "changes_checked": check.rows,
            "told_applied": len(applied),
            "answered_duplicate_on_retry": duplicates,
            "records": check.records,
        },
    )
