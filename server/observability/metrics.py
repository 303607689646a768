"""Prometheus metrics: what a running server is doing, scraped from ``GET /metrics``.

The counters and histograms live in this module, one of each per process. With ``gridsync serve
--workers N`` (N > 1) every worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(set by the serve command) and a scrape, answered by any one worker, sums them all
(prometheus-client's multiprocess mode). What is a fact of the database rather than of a
process (how far behind the devices' acknowledged cursors are) is read at scrape time.

No label carries a device, a user or a record: every label value comes from a short fixed set
(route templates, status codes, rejection codes), so the series stay few.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import case, func, literal, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.protocol import ChangeResult
from server.db.tables import devices, sync_counter

__all__ = [
    "CONTENT_TYPE",
    "PULL_LAG_BUCKETS",
    "count_changes",
    "count_conflicts",
    "count_replica_read",
    "forget_dead_workers",
    "multiprocess_dir",
    "observe_pool",
    "observe_push_group",
    "observe_request",
    "scrape",
    "sse_connection",
    "sse_connections",
    "sse_streams_open",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Keyword arguments throughout: a metric's name is not an error code (tests/unit/test_codes.py).
REQUESTS = Counter(
    name="gridsync_http_requests",
    documentation="HTTP requests answered, by route template and status",
    labelnames=["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    name="gridsync_http_request_duration_seconds",
    documentation="Time from a request's arrival to the last byte of its response, by route template",
    labelnames=["method", "route"],
    buckets=_SECONDS,
)
CHANGES = Counter(
    name="gridsync_changes",
    documentation="Pushed changes by result: applied, duplicate, or rejected with its code",
    labelnames=["result", "code"],
)
CONFLICTS_OPENED = Counter(name="gridsync_conflicts_opened", documentation="Conflicts a push opened")
CONFLICTS_RESOLVED = Counter(
    name="gridsync_conflicts_resolved", documentation="Conflicts a push closed", labelnames=["via"]
)
PUSH_GROUP_PUSHES = Histogram(
    name="gridsync_push_group_pushes",
    documentation="Pushes written together in one transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
PUSH_GROUP_CHANGES = Histogram(
    name="gridsync_push_group_changes",
    documentation="Changes written together in one transaction (group commit)",
    buckets=(0, 1, 10, 50, 100, 250, 500, 1000, 2000, 4000),
)
PUSH_WAIT_SECONDS = Histogram(
    name="gridsync_push_wait_seconds",
    documentation="Time a validated push waited for the writer before its group began",
    buckets=_SECONDS,
)
POOL_IN_USE = Gauge(
    name="gridsync_database_connections_in_use",
    documentation="Pooled database connections checked out, by database (primary, replica)",
    labelnames=["database"],
    multiprocess_mode="livesum",
)
SSE_CONNECTIONS = Gauge(
    name="gridsync_sse_connections",
    documentation="Open server-sent event streams",
    multiprocess_mode="livesum",
)
REPLICA_READS = Counter(
    name="gridsync_replica_reads",
    documentation="Reads offered to a replica: served there, or sent to the primary because the "
    "replica had not replayed far enough (behind) or could not be reached (unavailable)",
    labelnames=["outcome"],
)

# Changes a device's acknowledged cursor may be behind the newest one.
PULL_LAG_BUCKETS = (0, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or None when this process keeps its metrics alone."""
    return os.environ.get(_MULTIPROC_ENV) or None


def forget_dead_workers() -> None:
    """Drop the live gauges (connections in use, SSE streams) of workers that are gone: uvicorn
    starts a new worker in place of one that died, and the dead one's last values must not stay
    in the sums. Called as each worker starts."""
    directory = multiprocess_dir()
    if directory is None:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(method, route).observe(seconds)


def count_changes(results: Sequence[ChangeResult]) -> None:
    """Count a push's results by outcome (and rejection code)."""
    tally: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result.status, result.code or "") if result.status == "rejected" else (result.status, "")
        tally[key] = tally.get(key, 0) + 1
    for (status, code), count in tally.items():
        CHANGES.labels(status, code).inc(count)


def count_conflicts(opened: int, resolved: int, via: str) -> None:
    if opened:
        CONFLICTS_OPENED.inc(opened)
    if resolved:
        CONFLICTS_RESOLVED.labels(via).inc(resolved)


def observe_push_group(pushes: int, changes: int, waits: Sequence[float]) -> None:
    PUSH_GROUP_PUSHES.observe(pushes)
    PUSH_GROUP_CHANGES.observe(changes)
    for wait in waits:
        PUSH_WAIT_SECONDS.observe(wait)


def observe_pool(database: str, engine: AsyncEngine) -> None:
    """This process's checked-out connections of ``engine`` (summed over the workers)."""
    checked_out = getattr(engine.pool, "checkedout", None)
    if checked_out is not None:
        POOL_IN_USE.labels(database).set(checked_out())


def count_replica_read(outcome: str) -> None:
    REPLICA_READS.labels(outcome).inc()


def sse_connections(change: int) -> None:
    """Count server-sent event streams opening (+1) or closing (-1)."""
    SSE_CONNECTIONS.inc(change)


def sse_streams_open(count: int) -> None:
    """This process's open server-sent event streams, as ``LogEvents`` reports them (a watcher
    of its ``stream_watchers``)."""
    SSE_CONNECTIONS.set(count)


@contextmanager
def sse_connection() -> Iterator[None]:
    """Counts one open server-sent event stream for as long as the block runs."""
    sse_connections(1)
    try:
        yield
    finally:
        sse_connections(-1)


class _Families(Collector):
    """Metric families computed for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def _pull_lag(engine: AsyncEngine) -> Metric:
    """The devices' acknowledged cursors, bucketed by how many changes each is behind the
    newest: one count per bucket, never one series per device."""
    newest = select(sync_counter.c.last_seq).where(sync_counter.c.id == 1).scalar_subquery()
    lag = newest - devices.c.acked_seq
    bucket = case(*((lag <= bound, literal(index)) for index, bound in enumerate(PULL_LAG_BUCKETS)), else_=-1)
    query = (
        select(bucket, func.count(), func.sum(lag))
        .where(
            devices.c.kind == "device", devices.c.revoked_at_ms.is_(None), devices.c.acked_seq.is_not(None)
        )
        .group_by(literal_column("1"))  # the CASE by position: its bound values are parameters
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    counts = [0] * (len(PULL_LAG_BUCKETS) + 1)
    total = 0
    for index, count, lag_sum in rows:
        counts[index] += int(count)
        total += int(lag_sum or 0)
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*map(str, PULL_LAG_BUCKETS), "+Inf"), counts, strict=True):
        running += count
        cumulative.append((bound, running))
    family = GaugeHistogramMetricFamily(
        name="gridsync_pull_lag_changes",
        documentation="Active devices by how many changes their acknowledged pull cursor is behind the newest",
    )
    family.add_metric([], cumulative, gsum_value=total)
    return family


async def scrape(engine: AsyncEngine) -> bytes:
    """Every metric in the Prometheus text format: this process's (or, in multiprocess mode,
    all workers' summed), then what the database says at this moment."""
    if (directory := multiprocess_dir()) is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    now = CollectorRegistry()
    now.register(_Families([await _pull_lag(engine)]))
    return text + generate_latest(now)
