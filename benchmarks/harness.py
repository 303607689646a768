"""Processes and databases the benchmark owns: fresh databases per scenario, a ``gridsync serve``
process per database, device tokens, and the server's memory read from /proc. Everything made
here is removed again, even when a scenario fails."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from schemas.protocol import Change
from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.db.engine import create_engine, migrate
from server.settings import Settings
from server.sync.store import SyncStore

__all__ = [
    "Backend",
    "Measure",
    "Server",
    "backends",
    "bare_sqlite",
    "fresh_database",
    "pushed_in_process",
    "remove_sqlite",
    "serve",
]

ROOT = Path(__file__).resolve().parent.parent
GRIDSYNC = Path(sys.executable).parent / "gridsync"
POSTGRES_URL = os.environ.get(
    "GRIDSYNC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" or "postgres"


# The key the benchmark's servers encrypt the demo district's ID numbers with (docs/security.md).
BENCH_ENCRYPTION_KEY = base64.urlsafe_b64encode(b"gridsync-benchmark-key".ljust(64, b".")).decode()


def backends(names: list[str]) -> list[Backend]:
    return [Backend(name) for name in names]


@dataclass
class Measure:
    """Repeated measurements of one figure: the median, with min and max beside it."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    def summary(self) -> dict[str, float | int]:
        return {
            "median": statistics.median(self.values),
            "min": min(self.values),
            "max": max(self.values),
            "runs": len(self.values),
        }


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@dataclass
class Database:
    backend: str
    url: str  # SQLAlchemy URL, what the server is given
    path: Path | None = None  # the SQLite file
    name: str | None = None  # the PostgreSQL database

    @property
    def asyncpg_dsn(self) -> str:
        return _asyncpg_dsn(self.url)


def bare_sqlite(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to ``path`` with the server's durability (WAL, every commit
    synced), in autocommit: what the raw limits and the replayed push run on."""
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        db.execute(f"PRAGMA {pragma}")
    return db


def remove_sqlite(path: Path) -> None:
    """A SQLite database file and its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@asynccontextmanager
async def fresh_database(backend: str, workdir: Path, label: str) -> AsyncIterator[Database]:
    """A new, migrated database, dropped afterwards."""
    if backend == "sqlite":
        path = workdir / f"{label}-{uuid.uuid4().hex[:6]}.db"
        database = Database(backend, f"sqlite+aiosqlite:///{path}", path=path)
    else:
        name = f"gs_bench_{label}_{uuid.uuid4().hex[:8]}"
        await _admin(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        database = Database(backend, url, name=name)
    try:
        engine = create_engine(database.url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        yield database
    finally:
        if database.name is not None:
            await _admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
        elif database.path is not None:
            remove_sqlite(database.path)


async def enroll(database: Database, count: int) -> list[tuple[str, str]]:
    """``count`` device (id, token) pairs."""
    engine = create_engine(database.url)
    try:
        # Enrolled without a user: district-wide credentials, so pulls take the unscoped path.
        accounts = AccountStore(engine)
        return [
            await accounts.enroll_device(None, f"bench-phone-{n}", role="district_admin")
            for n in range(count)
        ]
    finally:
        await engine.dispose()


@asynccontextmanager
async def in_process_store(database: Database) -> AsyncIterator[SyncStore]:
    """The store itself, for fast bulk loading of a big database through its own push."""
    engine = create_engine(database.url)
    try:
        store = SyncStore(engine, Settings(database_url=database.url, encryption_key=BENCH_ENCRYPTION_KEY))
        yield store
        # Its background upkeep (a checkpoint, an ANALYZE) finishes before the database is let go.
        await store.writer.idle()
        if store.writer.upkeep is not None:
            await store.writer.upkeep.idle()
    finally:
        await engine.dispose()


async def pushed_in_process(
    database: Database, seed: list[Change], changes: list[Change], principal: Principal | None, batch: int
) -> float:
    """Seconds to push ``changes`` in-process, ``batch`` a push, as ``principal`` (None: a
    district-wide device) into ``database`` once the office has pushed ``seed`` (their place);
    every change must be applied."""
    [(device_id, _)] = await enroll(database, 1)
    async with in_process_store(database) as store:
        await store.writer.push(None, "office", seed)
        gc.freeze()  # as the server does after start-up
        try:
            start = time.perf_counter()
            for offset in range(0, len(changes), batch):
                answer = await store.writer.push(
                    device_id, "bench-phone", changes[offset : offset + batch], principal
                )
                refused = [r for r in answer.results if r.status != "applied"]
                if refused:
                    raise RuntimeError(f"the bench phone's push was refused: {refused[:3]}")
            return time.perf_counter() - start
        finally:
            gc.unfreeze()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def pids(self) -> list[int]:
        """The server's process and, with ``--workers``, its worker processes."""
        found, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
        return found

    def peak_rss_mb(self) -> float:
        """Peak resident memory so far (VmHWM), in MB: the sum over the server's processes (an
        upper bound with several workers, since shared pages count in each)."""
        return sum(_status_kb(pid, "VmHWM") for pid in self.pids()) / 1024

    def rss_mb(self) -> float:
        return sum(_status_kb(pid, "VmRSS") for pid in self.pids()) / 1024

    def cpu_seconds(self) -> float:
        """CPU time the server's processes have used so far (user + system, all threads)."""
        ticks = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def next_port() -> int:
    """A free loopback port, chosen by the kernel: a fixed range would let two runs on one
    machine (or a test and a run) talk to each other's servers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve(database: Database, workdir: Path, workers: int = 1, **env: str) -> Iterator[Server]:
    """``gridsync serve`` on the database, in its own process (with ``workers`` app processes);
    stopped (and waited for) on exit."""
    port = next_port()
    log = workdir / f"server-{port}.log"
    environment = (
        os.environ
        | {"GRIDSYNC_ENCRYPTION_KEY": BENCH_ENCRYPTION_KEY}
        | {f"GRIDSYNC_{key.upper()}": value for key, value in env.items()}
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(GRIDSYNC),
                "serve",
                "--database-url",
                database.url,
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--workers",
                str(workers),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=workdir,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        _wait_healthy(server, workers)
        profiler = _profile(process.pid, port)
        yield server
    except BaseException:
        print(
            f"--- gridsync serve log ({log.name}), last lines ---\n{log.read_text()[-3000:]}", file=sys.stderr
        )
        raise
    finally:
        stop(process)
        if profiler is not None:
            profiler.wait(30)


def _profile(pid: int, port: int) -> subprocess.Popen[bytes] | None:
    """With GRIDSYNC_BENCH_PROFILE=<folder>, py-spy samples the server (all threads) until it
    stops, into <folder>/server-<port>.txt (collapsed stacks; speedscope and flamegraph read them)."""
    folder = os.environ.get("GRIDSYNC_BENCH_PROFILE")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"server-{port}.txt"
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--threads"]
    command.append("--subprocesses")  # the workers of `serve --workers N`
    return subprocess.Popen(
        [
            *command,
            "--rate",
            os.environ.get("GRIDSYNC_BENCH_PROFILE_RATE", "250"),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ]
    )


def stop(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: Server, workers: int = 1, timeout: float = 30) -> None:
    """Until the server answers and, with several workers, all of them have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gridsync serve exited: {server.log.read_text()[-2000:]}")
        try:
            answered = httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            answered = False
        if answered and len(server.pids()) >= (1 if workers == 1 else workers + 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"gridsync serve did not answer within {timeout}s")


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gridsync-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
