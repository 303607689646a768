"""Reads from a real PostgreSQL hot standby (``GRIDSYNC_DATABASE_READ_URLS``): writers and pullers
through two app processes while the standby is stopped, restarted and finally promoted (then
written to, as a split brain would). Every puller sees every change exactly once and nothing the
promoted standby made up; every pusher reads its pushes back, an exchange in its own response."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.engine import make_url

from benchmarks.standby import Standby
from schemas.protocol import PushRequest
from server.db.engine import create_engine
from server.db.tables import changes
from tests.conftest import POSTGRES_URL
from tests.factories import set_
from tests.reliability.harness import ServerProcess, free_port, record_figures

pytestmark = pytest.mark.skipif(POSTGRES_URL is None, reason="needs GRIDSYNC_TEST_POSTGRES_URL")

WRITERS = 4
PULLERS = 2
# The run's phases, in seconds: streaming, standby stopped, restarted, promoted and diverged.
PHASES = (4.0, 3.0, 4.0, 3.0)
SPLIT_BRAIN_ID = "00000000-5917-b7a1-0000-000000000000"


@pytest.fixture(scope="module")
def standby() -> Iterator[Standby]:
    assert POSTGRES_URL is not None
    made = Standby(POSTGRES_URL, free_port())
    try:
        made.create()
        yield made
    finally:
        made.remove()


def _seq(cursor: str) -> int:
    return int(cursor.split(".")[1])


@dataclass
class Stream:
    """What one client pulled: every change id in the order it came, and its cursor."""

    token: str
    cursor: str | None = None
    ids: list[str] = field(default_factory=list)
    pulls: int = 0

    def take(self, page: dict[str, object]) -> bool:
        self.ids += [change["id"] for change in page["changes"]]  # type: ignore[attr-defined, index]
        self.cursor = str(page["cursor"])
        self.pulls += 1
        return bool(page["more"])


class Run:
    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()
        # Per pusher: applied ids, and how many pulls it took to read a push back.
        self.applied: dict[str, set[str]] = {}
        self.read_back_pulls: list[int] = []
        self.exchanges_checked = 0

    def url(self, rng: random.Random) -> str:
        return rng.choice(self.servers).base_url

    def note(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def pull(self, http: httpx.Client, base: str, stream: Stream, limit: int = 500) -> bool:
        params: dict[str, object] = {"limit": limit}
        if stream.cursor:
            params["since"] = stream.cursor
        reply = http.get(
            f"{base}/v1/sync/pull", params=params, headers={"authorization": f"Bearer {stream.token}"}
        )
        self.note(reply.status_code)
        assert reply.status_code == 200, reply.text
        return stream.take(reply.json())

    def writer(self, index: int, stream: Stream) -> None:
        rng = random.Random(index)
        name = f"writer-{index}"
        applied = self.applied.setdefault(name, set())
        try:
            with httpx.Client(timeout=30) as http:
                for round_number in range(100_000):
                    if self.stop.is_set():
                        return
                    batch = [
                        set_(
                            "notes",
                            f"{name} {round_number}",
                            record=f"h-{rng.randrange(100):03d}",
                            replica=name,
                        )
                        for _ in range(rng.randint(1, 20))
                    ]
                    body = msgspec.json.encode(PushRequest(replica_id=name, changes=batch))  # type: ignore[arg-type]
                    headers = {"authorization": f"Bearer {stream.token}", "content-type": "application/json"}
                    mine = {change.id for change in batch}
                    if round_number % 2:
                        # An exchange: the page after its cursor holds its own push.
                        params = {"limit": 5000, **({"since": stream.cursor} if stream.cursor else {})}
                        reply = http.post(
                            f"{self.url(rng)}/v1/sync/exchange", params=params, content=body, headers=headers
                        )
                        self.note(reply.status_code)
                        assert reply.status_code == 200, reply.text
                        answer = reply.json()
                        assert all(r["status"] == "applied" for r in answer["push"]["results"]), answer[
                            "push"
                        ]
                        applied |= mine
                        more = stream.take(answer["pull"])
                        if not more:
                            assert mine <= set(stream.ids), "an exchange's page lacks its own push"
                            with self.lock:
                                self.exchanges_checked += 1
                        continue
                    reply = http.post(f"{self.url(rng)}/v1/sync/push", content=body, headers=headers)
                    self.note(reply.status_code)
                    assert reply.status_code == 200, reply.text
                    applied |= mine
                    # Read back by pulling, through either process, until every change is seen.
                    pulls = 0
                    deadline = time.monotonic() + 20
                    while not mine <= set(stream.ids):
                        assert time.monotonic() < deadline, "a push was not read back by its pusher"
                        more = self.pull(http, self.url(rng), stream)
                        pulls += 1
                        if not more and not mine <= set(stream.ids):
                            time.sleep(0.005)
                    with self.lock:
                        self.read_back_pulls.append(pulls)
        except BaseException as error:
            self.errors.append(error)

    def puller(self, index: int, stream: Stream) -> None:
        rng = random.Random(100 + index)
        try:
            with httpx.Client(timeout=30) as http:
                while not self.stop.is_set():
                    if not self.pull(http, self.url(rng), stream):
                        time.sleep(0.01)
        except BaseException as error:
            self.errors.append(error)

    def drain(self, stream: Stream, last_seq: int) -> None:
        """Pull until the stream's cursor is at the primary's last seq."""
        rng = random.Random()
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=30) as http:
            while stream.cursor is None or _seq(stream.cursor) < last_seq:
                assert time.monotonic() < deadline, "a puller could not catch up"
                if not self.pull(http, self.url(rng), stream, limit=5000):
                    time.sleep(0.01)


def _primary_log(database_url: str) -> tuple[list[str], int]:
    async def read() -> tuple[list[str], int]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                ids = list((await connection.execute(select(changes.c.id).order_by(changes.c.seq))).scalars())
                last = (await connection.exec_driver_sql("SELECT last_seq FROM sync_counter")).scalar_one()
        finally:
            await engine.dispose()
        return ids, int(last)

    return asyncio.run(read())


async def _diverge(url: str) -> int:
    """Write into the promoted standby as an app pointed at it would: a change at its next seq."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    for _ in range(100):
        try:
            connection = await asyncpg.connect(dsn)
            break
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
    try:
        async with connection.transaction():
            seq = await connection.fetchval(
                "UPDATE sync_counter SET last_seq = last_seq + 1 RETURNING last_seq"
            )
            await connection.execute(
                "INSERT INTO changes (seq, id, collection, record_id, field, op, value, hlc, pred, "
                "received_at_ms) VALUES ($1, $2, 'households', 'h-000', 'notes', 'set', '\"made up\"', "
                "'0001700000000000-0000-split', '[]', 0)",
                seq,
                SPLIT_BRAIN_ID,
            )
        return int(seq)
    finally:
        await connection.close()


def _replica_reads(server: ServerProcess) -> dict[str, float]:
    scraped = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert scraped.status_code == 200, scraped.text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(scraped.text):
        if family.name == "gridsync_replica_reads":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["outcome"]] = sample.value
    return found


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_standby_reads_lose_and_repeat_nothing_through_stop_restart_and_promotion(
    database_url: str, standby: Standby, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    database = make_url(database_url).database
    assert database is not None
    asyncio.run(standby.wait_caught_up())
    env = {"GRIDSYNC_DATABASE_READ_URLS": standby.url(database), "GRIDSYNC_DATABASE_CONNECT_TIMEOUT": "2"}
    servers = [ServerProcess(database_url, tmp_path / f"app-{n}.log", env=env) for n in (1, 2)]
    for server in servers:
        server.start()
    run = Run(servers)
    writers = [Stream(enroll(f"writer-{n}")) for n in range(WRITERS)]
    pullers = [Stream(enroll(f"puller-{n}")) for n in range(PULLERS)]
    late = Stream(enroll("late-puller"))
    threads = [threading.Thread(target=run.writer, args=(n, s), daemon=True) for n, s in enumerate(writers)]
    threads += [threading.Thread(target=run.puller, args=(n, s), daemon=True) for n, s in enumerate(pullers)]
    figures: dict[str, object] = {}
    try:
        for thread in threads:
            thread.start()
        time.sleep(PHASES[0])
        standby.stop()
        time.sleep(PHASES[1])
        standby.start()
        time.sleep(PHASES[2])
        figures["before_promotion"] = [_replica_reads(server) for server in servers]
        standby.promote()
        diverged_seq = asyncio.run(_diverge(standby.url(database)))
        # A phone new since the promotion pulls from the start: the promoted standby holds a
        # made-up change at a seq the primary gives to another one.
        late_thread = threading.Thread(target=run.puller, args=(PULLERS, late), daemon=True)
        late_thread.start()
        threads.append(late_thread)
        time.sleep(PHASES[3])
        run.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not run.errors, run.errors
        ids, last_seq = _primary_log(database_url)
        assert last_seq >= diverged_seq, "the run was too short to put the primary past the split"
        for stream in [*pullers, late, *writers]:
            run.drain(stream, last_seq)
        figures["after"] = [_replica_reads(server) for server in servers]
    finally:
        run.stop.set()
        for server in servers:
            server.stop()

    assert set(run.statuses) == {200}, run.statuses
    assert len(ids) == len(set(ids))
    for stream in [*pullers, late, *writers]:
        assert SPLIT_BRAIN_ID not in stream.ids
        assert len(stream.ids) == len(set(stream.ids)), "a change was pulled twice"
        assert stream.ids == ids, "a change was skipped or pulled out of order"
    for name, pushed in run.applied.items():
        assert pushed, name
        assert pushed <= set(ids)
    assert run.exchanges_checked > 0
    served = sum(reads.get("served", 0) for reads in figures["after"])  # type: ignore[attr-defined]
    behind = sum(reads.get("behind", 0) for reads in figures["after"])  # type: ignore[attr-defined]
    unavailable = sum(reads.get("unavailable", 0) for reads in figures["after"])  # type: ignore[attr-defined]
    assert served > 0
    assert unavailable > 0
    backs = sorted(run.read_back_pulls)
    record_figures(
        "replicas",
        {
            "changes": len(ids),
            "requests": sum(run.statuses.values()),
            "replica_served": served,
            "replica_behind": behind,
            "replica_unavailable": unavailable,
            "behind_share": round(behind / max(1.0, served + behind), 4),
            "read_back_pulls_median": backs[len(backs) // 2] if backs else None,
            "read_back_pulls_max": backs[-1] if backs else None,
            "exchanges_checked": run.exchanges_checked,
            "run_id": uuid.uuid4().hex[:6],
        },
    )
