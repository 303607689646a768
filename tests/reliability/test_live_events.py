"""``GET /v1/sync/events`` on a real ``gridsync serve``: a phone holding the stream hears of
another phone's push within 2 seconds, in the same app process and in another one (PostgreSQL's
LISTEN/NOTIFY; SQLite's head reads), and within a few seconds when PostgreSQL has just killed
the LISTEN connections; heartbeats keep an idle stream alive; a device's streams are bounded;
no token, no stream."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from server.sync.events import LISTENER_NAME
from tests.factories import set_
from tests.reliability.harness import ServerProcess

WITHIN = 2.0
# A listener that lost its connection opens it again after 0.5 s of backoff, then catches up.
AFTER_LOSS = 5.0


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, object] | None
    comment: str | None = None


def _read(base_url: str, token: str, into: queue.Queue[Event | BaseException], stop: threading.Event) -> None:
    headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
    try:
        with httpx.stream("GET", f"{base_url}/v1/sync/events", headers=headers, timeout=30) as reply:
            if reply.status_code != 200:
                into.put(Event("status", {"status": reply.status_code}))
                return
            name, data = None, None
            for line in reply.iter_lines():
                if stop.is_set():
                    return
                if line.startswith(":"):
                    into.put(Event("comment", None, line[1:].strip()))
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:].strip())
                    name = name or "message"
                elif line == "" and name is not None:
                    into.put(Event(name, data))
                    name, data = None, None
    except BaseException as error:  # the test reads it from the queue
        into.put(error)


@contextmanager
def _stream(base_url: str, token: str) -> Iterator[Callable[[float], Event]]:
    """A stream read on a thread; yields ``next_event(timeout)``."""
    events: queue.Queue[Event | BaseException] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_read, args=(base_url, token, events, stop), daemon=True)
    reader.start()

    def next_event(timeout: float) -> Event:
        item = events.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    try:
        yield next_event
    finally:
        stop.set()


@contextmanager
def _registered_stream(base_url: str, token: str) -> Iterator[Callable[[float], Event]]:
    """``_stream`` once its first event, the head, is read: the server has registered it."""
    with _stream(base_url, token) as next_event:
        assert next_event(10).name == "head"
        yield next_event


def _push(base_url: str, token: str, phone_number: str) -> int:
    body = msgspec.json.encode({"replica_id": "other-phone", "changes": [set_("phone", phone_number)]})
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    reply = httpx.post(f"{base_url}/v1/sync/push", content=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["status"] == "applied", reply.text
    return int(reply.json()["cursor"].split(".")[1])


def _next_head(next_event: Callable[[float], Event], within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        event = next_event(max(0.01, deadline - time.monotonic()))
        if event.name == "head":
            assert event.data is not None
            seq = event.data["seq"]
            assert isinstance(seq, int)
            return seq


def _hears_push(listen_url: str, push_url: str, listener: str, pusher: str) -> None:
    with _stream(listen_url, listener) as next_event:
        first = _next_head(next_event, 10)
        pushed_at = time.monotonic()
        head = _push(push_url, pusher, "13800000001")
        assert head > first
        assert _next_head(next_event, WITHIN) >= head
        assert time.monotonic() - pushed_at < WITHIN


def test_a_push_by_another_device_is_heard_within_two_seconds(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    listener, pusher = enroll("listening-phone"), enroll("pushing-phone")
    with ServerProcess(database_url, tmp_path / "server.log") as server:
        _hears_push(server.base_url, server.base_url, listener, pusher)


def test_a_push_to_another_app_process_is_heard_within_two_seconds(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    listener, pusher = enroll("listening-phone"), enroll("pushing-phone")
    with (
        ServerProcess(database_url, tmp_path / "listening.log") as listening,
        ServerProcess(database_url, tmp_path / "pushing.log") as pushing,
    ):
        _hears_push(listening.base_url, pushing.base_url, listener, pusher)
        # Twice: the notice path holds up after its first use.
        with _stream(listening.base_url, listener) as next_event:
            first = _next_head(next_event, 10)
            head = _push(pushing.base_url, pusher, "13800000002")
            assert head > first
            assert _next_head(next_event, WITHIN) >= head


def test_an_idle_stream_gets_heartbeats(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    token = enroll("quiet-phone")
    heartbeat = {"GRIDSYNC_EVENT_HEARTBEAT_SECONDS": "1"}
    with (
        ServerProcess(database_url, tmp_path / "server.log", env=heartbeat) as server,
        _registered_stream(server.base_url, token) as next_event,
    ):
        assert next_event(3) == Event("comment", None, "heartbeat")
        assert next_event(3) == Event("comment", None, "heartbeat")


def test_a_device_holds_a_bounded_number_of_streams(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    token = enroll("restless-phone")
    two_streams = {"GRIDSYNC_MAX_EVENT_STREAMS_PER_DEVICE": "2"}
    # Opened one after the other: each is registered (its first event read) before the next.
    with (
        ServerProcess(database_url, tmp_path / "server.log", env=two_streams) as server,
        _registered_stream(server.base_url, token) as oldest,
        _registered_stream(server.base_url, token) as middle,
        _registered_stream(server.base_url, token) as newest,
    ):
        assert oldest(10) == Event("bye", {"reason": "replaced"})
        with httpx.Client(base_url=server.base_url) as http:
            other = http.get("/v1/sync/events", headers={"authorization": "Bearer nonsense"})
            assert other.status_code == 401
            assert other.json()["code"] == "invalid_token"
            assert http.get("/v1/sync/events").json()["code"] == "missing_token"
        # The two that remain still hear pushes.
        head = _push(server.base_url, enroll("pushing-phone"), "13800000003")
        assert _next_head(middle, WITHIN) >= head
        assert _next_head(newest, WITHIN) >= head


def test_a_stopping_server_ends_its_streams_cleanly(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    token = enroll("phone")
    with (
        ServerProcess(database_url, tmp_path / "server.log") as server,
        _registered_stream(server.base_url, token) as next_event,
    ):
        started = time.monotonic()
        server.stop()  # SIGTERM, as a service manager sends it
        # The stream ends with a word before the server waits out its grace period for it.
        assert next_event(5) == Event("bye", {"reason": "shutdown"})
        assert time.monotonic() - started < 2.5
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def _open_streams_metric(base_url: str) -> float:
    """``gridsync_sse_connections`` as a loopback scrape reads it."""
    scraped = httpx.get(f"{base_url}/metrics", timeout=30)
    assert scraped.status_code == 200, scraped.text
    for family in text_string_to_metric_families(scraped.text):
        if family.name == "gridsync_sse_connections":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("no gridsync_sse_connections in the scrape")


def test_open_streams_are_counted_in_the_metrics(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    token = enroll("counted-phone")
    with ServerProcess(database_url, tmp_path / "server.log") as server:
        assert _open_streams_metric(server.base_url) == 0
        with _stream(server.base_url, token) as first, _stream(server.base_url, token) as second:
            assert first(10).name == "head"
            assert second(10).name == "head"
            assert _open_streams_metric(server.base_url) == 2


def _terminate_listeners(database_url: str, application_name: str | None = None) -> int:
    """Kill the app's LISTEN connections from the server side (all of the database's, or the one
    of an app process, by the ``application_name`` its listener carries); how many were killed."""

    async def terminate() -> int:
        url = make_url(database_url)
        connection = await asyncpg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            killed = await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE $1",
                application_name or f"{LISTENER_NAME}%",
            )
        finally:
            await connection.close()
        return int(killed)

    return asyncio.run(terminate())


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_killed_listen_connection_is_opened_again(
    database_url: str, tmp_path: Path, enroll: Callable[[str], str]
) -> None:
    listener, pusher = enroll("listening-phone"), enroll("pushing-phone")
    with (
        ServerProcess(database_url, tmp_path / "listening.log") as listening,
        ServerProcess(database_url, tmp_path / "pushing.log") as pushing,
    ):
        assert pushing.process is not None
        with _stream(listening.base_url, listener) as next_event:
            first = _next_head(next_event, 10)
            # Every process's listener killed at once, then a push at once: heard when they are back.
            assert _terminate_listeners(database_url) == 2
            head = _push(pushing.base_url, pusher, "13800000004")
            assert head > first
            assert _next_head(next_event, AFTER_LOSS) >= head
            # Only the pushing process's listener killed: its notice of the next push must not be
            # lost while it reconnects (the listening process never missed anything to wake for).
            assert _terminate_listeners(database_url, f"{LISTENER_NAME}-{pushing.process.pid}") == 1
            head = _push(pushing.base_url, pusher, "13800000005")
            assert _next_head(next_event, AFTER_LOSS) >= head
            # And once all is back, a push is heard within the usual time again.
            time.sleep(1)
            head = _push(pushing.base_url, pusher, "13800000006")
            assert _next_head(next_event, WITHIN) >= head
    for log in ("listening.log", "pushing.log"):
        assert "Traceback" not in (tmp_path / log).read_text()
