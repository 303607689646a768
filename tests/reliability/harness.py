"""Real faults need real pieces: a `gridsync serve` subprocess on a loopback port, phones that
push and retry over httpx, and checks that read the database itself afterwards.

Every loop here is bounded in count and in time; every port is in 19000-19999 on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import func, select

from schemas.protocol import Change, PushResponse
from server.db.engine import create_engine
from server.db.tables import changes, records
from server.sync.pull import change_from_row
from sync.client import Replica
from sync.merge import RecordState, apply_batch, state_codec

H = "households"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
_PUSHED = msgspec.json.Decoder(PushResponse)
_json = msgspec.json.Encoder()


def free_port() -> int:
    """A free loopback port in 19000-19999 (the range these tests may use)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(19000, 19999)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 19000-19999")


def backend_of(database_url: str) -> str:
    """``sqlite`` or ``postgresql``: the database a test URL names, as its figures are filed."""
    return database_url.split(":", 1)[0].split("+")[0]


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Print what a fault test measured and keep it in tests/artifacts/ for docs/reliability.md."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(f"{name}: {json.dumps(figures, sort_keys=True)}")


def server_clock(base_url: str, token: str) -> str:
    """One empty push on a fresh connection; the node of the server clock that answered it
    (each process has its own: ``<wall>-<counter>-server-<id>``)."""
    body = msgspec.json.encode({"replica_id": "probe", "changes": []})
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    reply = httpx.post(f"{base_url}/v1/sync/push", content=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    node: str = reply.json()["server_hlc"].split("-", 2)[2]
    return node


def compact_from_cli(database_url: str) -> Any:
    """``gridsync db compact`` on the database, as an operator runs it; its JSON report."""
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", "compact", "--database-url", database_url],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return msgspec.json.decode(done.stdout)


class ServerProcess:
    """`gridsync serve` in a subprocess, started, killed and restarted by the test."""

    def __init__(
        self, database_url: str, log: Path, env: dict[str, str] | None = None, workers: int = 1
    ) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        # The fault tests hammer one server from a few phones; rate limits are not under test.
        quiet = {
            "GRIDSYNC_DEVICE_REQUESTS_PER_MINUTE": "1000000",
            "GRIDSYNC_ADDRESS_REQUESTS_PER_MINUTE": "1000000",
        }
        self.env = {**os.environ, **quiet, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __enter__(self) -> ServerProcess:
        """Started on entry, stopped on exit: ``with ServerProcess(...) as server:``."""
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, *, wait: bool = True) -> None:
        assert self.process is None, "already running"
        command = [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--database-url",
            self.database_url,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--workers",
            str(self.workers),
        ]
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=sink, env=self.env, cwd=ROOT)
        self.starts += 1
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log}")
                try:
                    if http.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise TimeoutError(f"server not ready after {timeout}s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests die mid-transaction."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class FieldPhone:
    """A grid worker's phone: a reference client replica that edits, pushes and retries, and
    remembers exactly what the server told it."""

    path: Path
    name: str
    token: str
    base_url: str
    told_applied: set[str] = field(default_factory=set)
    told_duplicate: set[str] = field(default_factory=set)
    made: set[str] = field(default_factory=set)
    failures: int = 0
    cut_off: int = 0
    pushes: int = 0

    def open(self) -> Replica:
        return Replica(self.path, self.name, token=self.token)

    def http(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def edit(
        self, replica: Replica, rng: random.Random, count: int, records_pool: int = 30, prefix: str = "h"
    ) -> None:
        """Make ``count`` offline edits on a pool of households shared with the other phones."""
        for _ in range(count):
            record_id = f"{prefix}-{rng.randrange(records_pool):03d}"
            roll = rng.random()
            change: Change | None
            if roll < 0.35:
                change = replica.set(H, record_id, "notes", f"{self.name} visit {rng.randrange(10**6)}")
            elif roll < 0.6:
                change = replica.set(H, record_id, "phone", f"138{rng.randrange(10**8):08d}")
            elif roll < 0.75:
                change = replica.set(H, record_id, "members_count", rng.randrange(12))
            elif roll < 0.88:
                change = replica.add(
                    H, record_id, "tags", rng.choice(["elderly-alone", "veteran", "disability"])
                )
            elif roll < 0.95:
                tags = replica.record(H, record_id).fields.get("tags") or []
                change = replica.remove(H, record_id, "tags", tags[0]) if tags else None
            else:
                change = replica.delete(H, record_id)
            if change is not None:
                self.made.add(change.id)

    def push_once(self, replica: Replica, http: httpx.Client, batch: int = 200) -> bool:
        """One push of pending changes; True when the server answered it. Every result is kept."""
        request = replica.push_request(batch)
        if request is None:
            return True
        self.pushes += 1
        try:
            reply = http.post(
                "/v1/sync/push",
                content=_json.encode(request),
                headers={"authorization": f"Bearer {self.token}", "content-type": "application/json"},
            )
        except httpx.TransportError as error:
            self.failures += 1
            # Refused: the server was down. Anything else: the request died on the wire.
            self.cut_off += not isinstance(error, httpx.ConnectError)
            return False
        if reply.status_code != 200:
            assert reply.status_code in (503, 507), reply.text
            self.failures += 1
            return False
        response = _PUSHED.decode(reply.content)
        for result in response.results:
            assert result.status != "rejected", result
            assert result.id is not None
            (self.told_applied if result.status == "applied" else self.told_duplicate).add(result.id)
        replica.accept_push_response(request, response, _report())
        return True

    def sync_until_done(self, replica: Replica, http: httpx.Client, attempts: int = 50) -> None:
        """Push everything pending (recording results) and pull until caught up, retrying."""
        for _ in range(attempts):
            try:
                while replica.push_request() is not None:
                    if not self.push_once(replica, http):
                        raise httpx.TransportError("push not answered")
                replica.sync(http)
                return
            except (httpx.TransportError, httpx.HTTPStatusError):
                time.sleep(0.1)
        raise AssertionError(f"{self.name} could not sync in {attempts} attempts")


def _report() -> Any:
    from sync.client import SyncReport

    return SyncReport()


def views(
    replica_or_http: Replica | httpx.Client, record_ids: Iterable[str], token: str = ""
) -> dict[str, Any]:
    """Record views as plain dicts, from a replica or from the server."""
    found: dict[str, Any] = {}
    for record_id in sorted(record_ids):
        if isinstance(replica_or_http, Replica):
            found[record_id] = msgspec.json.decode(_json.encode(replica_or_http.record(H, record_id)))
        else:
            reply = replica_or_http.get(
                f"/v1/records/{H}/{record_id}", headers={"authorization": f"Bearer {token}"}
            )
            assert reply.status_code == 200, reply.text
            found[record_id] = reply.json()
    return found


@dataclass(frozen=True)
class LogCheck:
    stored_ids: set[str]
    rows: int
    records: int
    record_ids: set[str]


def check_log_and_states(database_url: str) -> LogCheck:
    """Every change id is stored once, and every stored record state equals a rebuild of that
    record from the change log (the same rebuild as tests/conformance/test_store.py)."""

    async def run() -> LogCheck:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                log = (await connection.execute(select(changes).order_by(changes.c.seq))).all()
                distinct = (
                    await connection.execute(select(func.count(func.distinct(changes.c.id))))
                ).scalar_one()
                stored = {
                    (row.collection, row.record_id): state_codec.decode(row.state)
                    for row in await connection.execute(select(records))
                }
        finally:
            await engine.dispose()
        assert distinct == len(log), "a change id is stored twice"
        seqs = [row.seq for row in log]
        assert seqs == sorted(set(seqs))
        rebuilt: dict[tuple[str, str], RecordState] = {key: RecordState() for key in stored}
        decoded = [change_from_row(row) for row in log]
        apply_batch(rebuilt, decoded, set())
        assert rebuilt == stored, "stored record states differ from a rebuild from the change log"
        return LogCheck(
            stored_ids={row.id for row in log},
            rows=len(log),
            records=len(stored),
            record_ids={record_id for _, record_id in stored},
        )

    return asyncio.run(run())


class FieldDay:
    """Phones that edit and push in their own threads until stopped, retrying what the server
    does not answer. Bounded in iterations; errors of the threads are kept for the test."""

    def __init__(self, phones: list[FieldPhone], *, timeout: float, most_edits: int, backoff: float) -> None:
        self.phones = phones
        self.timeout = timeout
        self.most_edits = most_edits
        self.backoff = backoff
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(phone, seed), daemon=True)
            for seed, phone in enumerate(phones)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _work(self, phone: FieldPhone, seed: int) -> None:
        rng = random.Random(seed)
        replica = phone.open()
        try:
            with phone.http(timeout=self.timeout) as http:
                for _ in range(100_000):
                    if self.stop.is_set():
                        return
                    if len(replica.pending(400)) < 200:
                        phone.edit(replica, rng, rng.randint(5, self.most_edits))
                    with self._lock:
                        self.in_flight += 1
                    try:
                        answered = phone.push_once(replica, http)  # a status other than 503/507 raises
                    finally:
                        with self._lock:
                            self.in_flight -= 1
                    if not answered:
                        time.sleep(self.backoff)  # the server is away: back off, then retry
        except BaseException as error:
            self.errors.append(error)
        finally:
            replica.close()
