"""Scenarios 1-4: push and pull throughput against the raw limit, incremental pull in a small and a
big database, and the bootstrap of one community. Each returns plain dicts for the results JSON."""

from __future__ import annotations

import asyncio
import datetime
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from benchmarks.devices import Job, Outcome, Wire
from benchmarks.harness import (
    Database,
    Measure,
    bare_sqlite,
    enroll,
    fresh_database,
    in_process_store,
    next_port,
    remove_sqlite,
    serve,
)
from benchmarks.standby import Standby
from benchmarks.workload import HouseholdWorkload, change_row, push_body
from schemas.protocol import Change, SetChange
from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.registry.demo import DemoPlan, demo_changes, load_demo

__all__ = [
    "bootstrap",
    "incremental_pull",
    "many_devices",
    "pull_all",
    "raw_postgres_push",
    "raw_sqlite_push",
    "throughput",
]

BATCH = 500
PAGE = 5000
_COLUMNS = "seq, id, collection, record_id, field, op, value, hlc, pred, device_id, received_at_ms"
_READ = "seq, id, collection, record_id, field, op, value, hlc, pred"
# The server's changes table (server/db/tables.py): same columns, primary key, unique id, index.
_RAW_TABLE = """
CREATE TABLE changes (
    seq BIGINT NOT NULL PRIMARY KEY, id VARCHAR(36) NOT NULL UNIQUE,
    collection VARCHAR(64) NOT NULL, record_id VARCHAR(64) NOT NULL, field VARCHAR(64),
    op VARCHAR(8) NOT NULL, value TEXT NOT NULL, hlc VARCHAR(96) NOT NULL, pred TEXT NOT NULL,
    device_id VARCHAR(36), received_at_ms BIGINT NOT NULL
)"""
_RAW_INDEX = "CREATE INDEX ix_changes_record ON changes (collection, record_id)"


class _Page(msgspec.Struct):
    changes: list[msgspec.Raw]
    cursor: str
    more: bool


_page = msgspec.json.Decoder(_Page)


def _client(base_url: str, token: str, encoding: str = "identity") -> httpx.Client:
    """Uncompressed by default: the raw limits it is compared with compress nothing either."""
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "accept-encoding": encoding,
    }
    return httpx.Client(base_url=base_url, headers=headers, timeout=120)


def _push_all(http: httpx.Client, bodies: list[bytes]) -> None:
    for body in bodies:
        reply = http.post("/v1/sync/push", content=body)
        reply.raise_for_status()


async def _wire_push_all(wire: Wire, token: str, bodies: list[bytes]) -> None:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    for body in bodies:
        reply = await wire.request("POST", "/v1/sync/push", headers, body)
        if reply.status != 200:
            raise RuntimeError(f"push answered {reply.status}: {reply.body[:300]!r}")


async def _wire_pull_all(wire: Wire, token: str, encoding: str = "identity") -> int:
    """``pull_all`` on the lean client: every page decoded, as a phone needs its cursor."""
    headers = {"authorization": f"Bearer {token}", "accept-encoding": encoding}
    count, more, since = 0, True, None
    while more:
        query = urlencode({"limit": PAGE} | ({"since": since} if since else {}))
        reply = await wire.request("GET", f"/v1/sync/pull?{query}", headers)
        if reply.status != 200:
            raise RuntimeError(f"pull answered {reply.status}: {reply.body[:300]!r}")
        page = _page.decode(reply.body)
        count += len(page.changes)
        since, more = page.cursor, page.more
    return count


def pull_all(http: httpx.Client, limit: int = PAGE, decoder: Any = _page) -> int:
    """Page through the whole log; each page is decoded (the client needs its cursor)."""
    count, more, since = 0, True, None
    while more:
        params: dict[str, Any] = {"limit": limit} | ({"since": since} if since else {})
        reply = http.get("/v1/sync/pull", params=params)
        reply.raise_for_status()
        page = decoder.decode(reply.content)
        count += len(page.changes)
        since, more = page.cursor, page.more
    return count


# ---------------------------------------------------------------------- raw limits


def raw_sqlite_push(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Plain sqlite3 executemany, one transaction per batch like a push, same durability."""
    db = bare_sqlite(path)
    try:
        db.execute(_RAW_TABLE)
        db.execute(_RAW_INDEX)
        marks = ", ".join("?" * 11)
        start = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            db.execute("BEGIN")
            db.executemany(
                f"INSERT INTO changes ({_COLUMNS}) VALUES ({marks})", rows[offset : offset + BATCH]
            )
            db.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        db.close()


def _raw_sqlite_scan(path: Path) -> tuple[float, int]:
    """Page through the log with the pull's own query, in pages of the same size."""
    db = sqlite3.connect(path)
    try:
        start, after, count = time.perf_counter(), 0, 0
        query = f"SELECT {_READ} FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"
        while rows := db.execute(query, (after, PAGE)).fetchall():
            count += len(rows)
            after = rows[-1][0]
        return time.perf_counter() - start, count
    finally:
        db.close()


async def raw_postgres_push(database: Database, rows: list[tuple[Any, ...]]) -> float:
    """Plain asyncpg executemany into a fresh table, one transaction per batch."""
    db = await asyncpg.connect(database.asyncpg_dsn)
    try:
        await db.execute(_RAW_TABLE.replace("changes", "raw_changes", 1))
        await db.execute(_RAW_INDEX.replace("ix_changes_record ON changes", "ix_raw_record ON raw_changes"))
        marks = ", ".join(f"${n}" for n in range(1, 12))
        statement = f"INSERT INTO raw_changes ({_COLUMNS}) VALUES ({marks})"
        start = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            async with db.transaction():
                await db.executemany(statement, rows[offset : offset + BATCH])
        return time.perf_counter() - start
    finally:
        await db.close()


async def _raw_postgres_scan(database: Database) -> tuple[float, int]:
    db = await asyncpg.connect(database.asyncpg_dsn)
    try:
        query = await db.prepare(f"SELECT {_READ} FROM raw_changes WHERE seq > $1 ORDER BY seq LIMIT $2")
        start, after, count = time.perf_counter(), 0, 0
        while rows := await query.fetch(after, PAGE):
            count += len(rows)
            after = rows[-1][0]
        return time.perf_counter() - start, count
    finally:
        await db.close()


# ---------------------------------------------------------------------- scenario 1 and 2


async def throughput(backend: str, workdir: Path, count: int, runs: int) -> dict[str, Any]:
    """Push ``count`` changes in batches of 500, then page through them, ``runs`` times, each on a
    fresh database next to the raw limit on a fresh file (or table) in the same run."""
    changes = HouseholdWorkload(seed=11).changes(count)
    bodies = [push_body("bench-phone", changes[i : i + BATCH]) for i in range(0, count, BATCH)]
    push, raw_push, pull, raw_scan, pull_gzip = Measure(), Measure(), Measure(), Measure(), Measure()
    push_ratio, pull_ratio = Measure(), Measure()
    for run in range(runs):
        async with fresh_database(backend, workdir, f"tp{run}") as database:
            [(device_id, token)] = await enroll(database, 1)
            rows = [
                change_row(seq, c, device_id, time.time_ns() // 1_000_000) for seq, c in enumerate(changes, 1)
            ]
            with serve(database, workdir) as server:
                # The lean HTTP/1.1 client of the device storm, as load generators measure a
                # server: httpx spent about half a millisecond a push of its own (section 1).
                wire = await Wire.open(server.base_url)
                try:
                    await _wire_push_all(wire, token, bodies[:2])  # warm up; counted in the pull
                    start = time.perf_counter()
                    await _wire_push_all(wire, token, bodies[2:])
                    push_rate = (count - 2 * BATCH) / (time.perf_counter() - start)
                    start = time.perf_counter()
                    pulled = await _wire_pull_all(wire, token)
                    pull_rate = pulled / (time.perf_counter() - start)
                    start = time.perf_counter()
                    pull_gzip.add(await _wire_pull_all(wire, token, "gzip") / (time.perf_counter() - start))
                finally:
                    await wire.close()
            if backend == "sqlite":
                raw_seconds = raw_sqlite_push(workdir / f"raw-{run}.db", rows[2 * BATCH :])
                scan_seconds, scanned = _raw_sqlite_scan(workdir / f"raw-{run}.db")
                remove_sqlite(workdir / f"raw-{run}.db")
            else:
                raw_seconds = await raw_postgres_push(database, rows[2 * BATCH :])
                scan_seconds, scanned = await _raw_postgres_scan(database)
        raw_rate, scan_rate = (count - 2 * BATCH) / raw_seconds, scanned / scan_seconds
        push.add(push_rate)
        raw_push.add(raw_rate)
        pull.add(pull_rate)
        raw_scan.add(scan_rate)
        push_ratio.add(push_rate / raw_rate)
        pull_ratio.add(pull_rate / scan_rate)
    return {
        "changes": count,
        "batch": BATCH,
        "page": PAGE,
        "push_changes_per_s": push.summary(),
        "raw_executemany_rows_per_s": raw_push.summary(),
        "push_ratio": push_ratio.summary(),
        "pull_changes_per_s": pull.summary(),
        "raw_scan_rows_per_s": raw_scan.summary(),
        "pull_ratio": pull_ratio.summary(),
        "pull_gzip_changes_per_s": pull_gzip.summary(),
    }


# ---------------------------------------------------------------------- scenario 3


async def _load(database: Database, changes: list[Change], device_id: str) -> None:
    """Fill a database fast through the store's own batched push, in-process."""
    async with in_process_store(database) as store:
        for offset in range(0, len(changes), 2000):
            await store.writer.push(device_id, "bench-loader", changes[offset : offset + 2000])


async def _incremental(servers: dict[str, tuple[str, str]], behind: int, repeats: int) -> dict[str, Measure]:
    """Time a pull of the last ``behind`` changes, as a phone that far behind does, on each
    server (label: base URL, token) in turn, ``repeats`` times each after one warm-up."""
    wires: dict[str, Wire] = {}
    paths: dict[str, str] = {}
    measured = {label: Measure() for label in servers}
    try:
        for label, (base_url, token) in servers.items():
            with _client(base_url, token) as http:
                epoch, _, last = _position(http).rpartition(".")
            paths[label] = "/v1/sync/pull?" + urlencode(
                {"since": f"{epoch}.{int(last) - behind}", "limit": behind}
            )
            wires[label] = await Wire.open(base_url)
        for _ in range(repeats + 1):
            for label, wire in wires.items():
                start = time.perf_counter()
                reply = await wire.request(
                    "GET", paths[label], {"authorization": f"Bearer {servers[label][1]}"}
                )
                elapsed = time.perf_counter() - start
                if reply.status != 200:
                    raise RuntimeError(f"pull answered {reply.status}: {reply.body[:300]!r}")
                page = _page.decode(reply.body)
                assert len(page.changes) == behind, len(page.changes)
                assert not page.more
                measured[label].add(elapsed * 1000)
    finally:
        for wire in wires.values():
            await wire.close()
    for seconds in measured.values():
        seconds.values.pop(0)  # the first request warms caches and prepared statements
    return measured


def _position(http: httpx.Client) -> str:
    """The log's current cursor: an empty push answers it."""
    reply = http.post("/v1/sync/push", content=push_body("bench-probe", []))
    reply.raise_for_status()
    cursor: str = reply.json()["cursor"]
    return cursor


async def incremental_pull(backend: str, workdir: Path, small: int, big: int, repeats: int) -> dict[str, Any]:
    """Pull of 1,000 changes by a phone 1,000 behind, in a database of ``small`` and one of
    ``big`` changes (the same workload, the big one loaded on), each behind its own server. The
    requests alternate between the two, so a machine that slows down or speeds up while they run
    moves both sizes alike, and the ratio is the database's size, not the hour's."""
    behind = 1000
    result: dict[str, Any] = {"behind": behind}
    tokens: dict[str, str] = {}
    async with (
        fresh_database(backend, workdir, "inc-small") as small_database,
        fresh_database(backend, workdir, "inc-big") as big_database,
    ):
        databases = {"small": (small_database, small), "big": (big_database, big)}
        for label, (database, size) in databases.items():
            [(device_id, token)] = await enroll(database, 1)
            workload = HouseholdWorkload(seed=13)
            start = time.perf_counter()
            for loaded in range(0, size, 100_000):
                await _load(database, workload.changes(min(100_000, size - loaded)), device_id)
            result[label] = {"changes": size, "load_seconds": time.perf_counter() - start}
            tokens[label] = token
        with serve(small_database, workdir) as small_server, serve(big_database, workdir) as big_server:
            servers = {"small": small_server, "big": big_server}
            measured = await _incremental(
                {label: (server.base_url, tokens[label]) for label, server in servers.items()},
                behind,
                repeats,
            )
    for label, seconds in measured.items():
        result[label]["pull_ms"] = seconds.summary()
    result["ratio_big_to_small"] = result["big"]["pull_ms"]["median"] / result["small"]["pull_ms"]["median"]
    return result


# ---------------------------------------------------------------------- scenario 4

# The district's clock for the bootstrap: the demo's dates are offsets back from it, so a fixed
# one (and the plan's fixed seed) makes every run load the same changes.
DEMO_NOW = datetime.datetime(2026, 5, 15, 16, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
BOOT_COMMUNITY = "c1"
_PLACE_LINKS = {("households", "building_id"), ("buildings", "grid_id"), ("grids", "community_id")}


class _SnapshotRecord(msgspec.Struct):
    collection: str
    heads: list[msgspec.Raw]


class _SnapshotPage(msgspec.Struct):
    records: list[_SnapshotRecord]
    cursor: str
    more: bool


_snapshot_page = msgspec.json.Decoder(_SnapshotPage)


def _community_households(changes: list[Change], community: str) -> int:
    """How many households the demo puts in ``community``, read from the changes themselves
    (household -> building -> grid -> community), not from the server's scope columns."""
    up: dict[tuple[str, str], Any] = {
        (c.collection, c.record_id): c.value
        for c in changes
        if isinstance(c, SetChange) and (c.collection, c.field) in _PLACE_LINKS
    }
    households = [building for (collection, _), building in up.items() if collection == "households"]
    return sum(up.get(("grids", up.get(("buildings", b), ""))) == community for b in households)


async def _grid_worker_phone(database: Database, changes: list[Change], community: str) -> str:
    """A grid worker assigned every grid of ``community`` (and the community itself, whose record
    the phone shows), with one enrolled phone; returns the phone's token."""
    grids = sorted(
        c.record_id
        for c in changes
        if isinstance(c, SetChange)
        and (c.collection, c.field) == ("grids", "community_id")
        and c.value == community
    )
    engine = create_engine(database.url)
    try:
        accounts = AccountStore(engine)
        scope = UserScope(communities=(community,), grids=tuple(grids))
        user = await accounts.create_user(f"worker-{community}", "grid_worker", scope)
        _, token = await accounts.enroll_device(user.id, f"new-phone-{community}")
        return token
    finally:
        await engine.dispose()


def _snapshot_pages(http: httpx.Client) -> tuple[float, list[bytes], list[_SnapshotPage]]:
    """Every page of the caller's snapshot at the default page size, all collections; returns
    the milliseconds spent in the requests (round trips on loopback), the bodies and the pages."""
    bodies: list[bytes] = []
    pages: list[_SnapshotPage] = []
    seconds, cursor, more = 0.0, None, True
    while more:
        start = time.perf_counter()
        reply = http.get("/v1/sync/snapshot", params={"cursor": cursor} if cursor else None)
        seconds += time.perf_counter() - start
        reply.raise_for_status()
        pages.append(_snapshot_page.decode(reply.content))
        bodies.append(reply.content)
        cursor, more = pages[-1].cursor, pages[-1].more
    return seconds * 1000, bodies, pages


async def bootstrap(backend: str, workdir: Path, district: DemoPlan, repeats: int) -> dict[str, Any]:
    """A new phone of a grid worker who serves a whole community bootstraps it from a database
    holding the whole demo district: the snapshot's pages (all collections, default page size)
    as the server answers them, and the reference client's whole bootstrap into its own file."""
    from sync.client import Replica

    changes = demo_changes(district, DEMO_NOW)
    expected = _community_households(changes, BOOT_COMMUNITY)
    async with fresh_database(backend, workdir, "boot") as database:
        start = time.perf_counter()
        async with in_process_store(database) as store:
            loaded = await load_demo(store, changes)
        load_seconds = time.perf_counter() - start
        assert not loaded.rejected, loaded.rejected[:3]
        token = await _grid_worker_phone(database, changes, BOOT_COMMUNITY)
        server_ms, client_ms = Measure(), Measure()
        with serve(database, workdir) as server, _client(server.base_url, token) as http:
            for run in range(repeats + 1):
                elapsed, bodies, pages = _snapshot_pages(http)
                phone = Replica(workdir / f"phone-{run}.db", f"new-phone-{run}", token=token)
                try:
                    start = time.perf_counter()
                    phone.bootstrap(http)
                    client_elapsed = (time.perf_counter() - start) * 1000
                    held = phone.db.execute("SELECT count(*) FROM records").fetchone()[0]
                finally:
                    phone.close()
                    Path(workdir / f"phone-{run}.db").unlink(missing_ok=True)
                if run:  # the first run warms the server
                    server_ms.add(elapsed)
                    client_ms.add(client_elapsed)
    counts = Counter(record.collection for page in pages for record in page.records)
    heads = sum(len(record.heads) for page in pages for record in page.records)
    # A broken scope filter must not pass as a fast snapshot.
    assert counts["households"] == expected, (counts["households"], expected)
    assert held == sum(counts.values()), (held, counts)
    return {
        "district": {"households": district.households, "seed": district.seed, "now": DEMO_NOW.isoformat()},
        "changes": len(changes),
        "load_seconds": load_seconds,
        "caller": f"grid_worker of every grid of community {BOOT_COMMUNITY}",
        "households": counts["households"],
        "records": dict(sorted(counts.items())),
        "heads": heads,
        "pages": len(pages),
        "snapshot_bytes": sum(map(len, bodies)),
        "snapshot_ms": server_ms.summary(),
        "phone_bootstrap_ms": client_ms.summary(),
    }


# ---------------------------------------------------------------------- scenario 5


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def many_devices(backend: str, workdir: Path, devices: int, runs: int) -> dict[str, Any]:
    """``devices`` phones push a small batch and pull a page at the same moment, from a separate
    process: in one exchange each (the targets' figures), and, in the runs between, as a push
    then a pull; latency percentiles, errors and the server's peak memory (VmHWM from /proc)."""
    storms = {True: _Storm(), False: _Storm()}
    for run in range(runs):
        for exchange, storm in storms.items():
            await _storm(backend, workdir, devices, f"dev{run}{'x' if exchange else 'p'}", exchange, storm)
    one, two = storms[True], storms[False]
    peak = Measure(one.rss.values + two.rss.values)  # the memory target holds for either kind
    return {
        "devices": devices,
        "changes_per_device": 10,
        "pull_limit": 100,
        "latency": "one device = its exchange (or its push then its pull), from the common start line",
        **one.summary(),
        "errors": len(one.errors) + len(two.errors),  # the two-request storms count too
        "error_samples": (one.errors + two.errors)[:5],
        "server_peak_rss_mb": peak.summary(),
        "two_requests": two.summary(),
    }


@dataclass
class _Storm:
    """The figures of several storms of one kind."""

    p50: Measure = field(default_factory=Measure)
    p95: Measure = field(default_factory=Measure)
    p99: Measure = field(default_factory=Measure)
    push_p99: Measure = field(default_factory=Measure)
    pull_p99: Measure = field(default_factory=Measure)
    rss: Measure = field(default_factory=Measure)
    server_cpu: Measure = field(default_factory=Measure)
    client_cpu: Measure = field(default_factory=Measure)
    wall: Measure = field(default_factory=Measure)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Latencies are None where no device finished (push and pull apart: only with two requests)."""
        latencies = {
            "p50_ms": self.p50,
            "p95_ms": self.p95,
            "p99_ms": self.p99,
            "push_p99_ms": self.push_p99,
            "pull_p99_ms": self.pull_p99,
        }
        return {key: found.summary() if found.values else None for key, found in latencies.items()} | {
            "storm_seconds": self.wall.summary(),
            "server_cpu_ms_per_device": self.server_cpu.summary(),
            "client_cpu_ms_per_device": self.client_cpu.summary(),
        }


def _seed_district(http: httpx.Client) -> str:
    """Push a district already synced for a while; the cursor a page (100 changes) behind its
    head, where each phone of a storm starts."""
    _push_all(http, [push_body("bench-seed", HouseholdWorkload(seed=19).changes(2000))])
    epoch, _, last = _position(http).rpartition(".")
    return f"{epoch}.{int(last) - 100}"


def _run_devices(job: Job, timeout: int) -> Outcome:
    """The storm's phones, in a process of their own (benchmarks/devices.py)."""
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.devices"],
        input=msgspec.json.encode(job),
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    return msgspec.json.decode(finished.stdout, type=Outcome)


async def _storm(
    backend: str, workdir: Path, devices: int, label: str, exchange: bool, storm: _Storm
) -> None:
    async with fresh_database(backend, workdir, label) as database:
        tokens = [token for _, token in await enroll(database, devices)]
        with serve(database, workdir) as server, _client(server.base_url, tokens[0]) as http:
            job = Job(server.base_url, tokens, since=_seed_district(http), exchange=exchange)
            cpu_before = server.cpu_seconds()
            outcome = _run_devices(job, timeout=600)
            storm.rss.add(server.peak_rss_mb())
            storm.server_cpu.add((server.cpu_seconds() - cpu_before) * 1000 / devices)
            storm.client_cpu.add(outcome.cpu_seconds * 1000 / devices)
            storm.wall.add(outcome.wall_seconds)
    storm.errors += outcome.errors
    if outcome.device_ms:
        storm.p50.add(_percentile(outcome.device_ms, 0.50))
        storm.p95.add(_percentile(outcome.device_ms, 0.95))
        storm.p99.add(_percentile(outcome.device_ms, 0.99))
    if outcome.push_ms:
        storm.push_p99.add(_percentile(outcome.push_ms, 0.99))
        storm.pull_p99.add(_percentile(outcome.pull_ms, 0.99))


# ---------------------------------------------------------------------- scenario 5b


def _backend_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time each of the given PostgreSQL backends has used so far (those still running)."""
    used: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


async def _backends(primary_url: str, database: str) -> list[int]:
    """The primary's backends connected to ``database`` (the app processes' pools)."""
    dsn = make_url(primary_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
    finally:
        await connection.close()
    return [int(row["pid"]) for row in rows]


def _replica_reads(base_url: str) -> dict[str, float]:
    """``gridsync_replica_reads_total`` by outcome, summed over the workers (loopback scrape)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=30).text):
        if family.name == "gridsync_replica_reads":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["outcome"]] = sample.value
    return found


async def standby_storm(workdir: Path, devices: int, runs: int) -> dict[str, Any]:
    """The storm of phones (one exchange each, as the reference client syncs) through two app
    processes, on the primary alone and with one streaming standby for the reads (PostgreSQL):
    p99 of a sync, errors, and the CPU a device costs the primary's backends."""
    found: dict[str, Any] = {"devices": devices}
    for mode in ("primary", "standby"):
        storm = _Storm()
        primary_cpu = Measure()
        reads: dict[str, float] = {}
        for run in range(runs):
            async with fresh_database("postgres", workdir, f"sb{mode[0]}{run}") as database:
                assert database.name is not None
                standby = Standby(database.url, next_port()) if mode == "standby" else None
                try:
                    env: dict[str, str] = {}
                    if standby is not None:
                        # Its set-up runs its own event loop: in a thread of its own.
                        await asyncio.to_thread(standby.create)
                        env["database_read_urls"] = standby.url(database.name)
                    tokens = [token for _, token in await enroll(database, devices)]
                    with (
                        serve(database, workdir, workers=2, **env) as server,
                        _client(server.base_url, tokens[0]) as http,
                    ):
                        since = _seed_district(http)
                        if standby is not None:
                            await standby.wait_caught_up()
                        job = Job(server.base_url, tokens, since=since, exchange=True)
                        app_before = server.cpu_seconds()
                        backends_before = _backend_cpu_seconds(await _backends(database.url, database.name))
                        outcome = _run_devices(job, timeout=900)
                        storm.server_cpu.add((server.cpu_seconds() - app_before) * 1000 / devices)
                        # The pools keep their connections: backends opened during the storm
                        # are still there, and count from zero.
                        after = _backend_cpu_seconds(await _backends(database.url, database.name))
                        spent = sum(used - backends_before.get(pid, 0.0) for pid, used in after.items())
                        primary_cpu.add(spent * 1000 / devices)
                        storm.wall.add(outcome.wall_seconds)
                        for outcome_name, count in _replica_reads(server.base_url).items():
                            reads[outcome_name] = reads.get(outcome_name, 0) + count
                finally:
                    if standby is not None:
                        await asyncio.to_thread(standby.remove)
            storm.errors += outcome.errors
            if outcome.device_ms:
                storm.p50.add(_percentile(outcome.device_ms, 0.50))
                storm.p99.add(_percentile(outcome.device_ms, 0.99))
        found[mode] = {
            "p50_ms": storm.p50.summary() if storm.p50.values else None,
            "p99_ms": storm.p99.summary() if storm.p99.values else None,
            "errors": len(storm.errors),
            "error_samples": storm.errors[:5],
            "server_cpu_ms_per_device": storm.server_cpu.summary(),
            "primary_db_cpu_ms_per_device": primary_cpu.summary(),
            "replica_reads": reads,
        }
    return found
