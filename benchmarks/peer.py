"""Scenario 6: the peer, side by side. pouchdb-server (CouchDB's replication protocol, installed
by the benchmark with npm into benchmarks/peer/) receives household documents and edits from a
PouchDB client through ``_bulk_docs`` in batches of 500, and serves them from ``_changes``;
gridsync receives the same households and edits from its own client (``sync.client.Replica``)
in pushes of 500 changes (gzipped) and serves them from pull. A byte-counting TCP proxy in front of each
server measures the bytes on the wire (both directions, headers included) in a separate pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec

from benchmarks.harness import Measure, enroll, fresh_database, next_port, serve, stop
from benchmarks.scenarios import pull_all
from benchmarks.workload import HouseholdWorkload, household_doc
from schemas.protocol import AddChange, Change, PullResponse
from sync.client import Replica

__all__ = ["ensure_installed", "peer"]

PEER = Path(__file__).resolve().parent / "peer"
BATCH = 500
PAGE = 1000

_PULLED = msgspec.json.Decoder(PullResponse)


def ensure_installed() -> None:
    """``npm ci`` the peer once (node_modules is not committed)."""
    if (PEER / "node_modules" / "pouchdb-server").is_dir() and (PEER / "node_modules" / "pouchdb").is_dir():
        return
    if shutil.which("npm") is None:
        raise RuntimeError("the peer benchmark needs Node.js and npm (https://nodejs.org)")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER, check=True, timeout=600
    )


class ByteCounter:
    """A loopback TCP proxy that counts every byte it forwards, in a thread of its own."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port, self.target_port = port, target_port
        self.sent = self.received = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                if upstream:
                    self.sent += len(chunk)
                else:
                    self.received += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        # When the counter closes, a connection a client left open just ends here.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(client_reader, server_writer, True),
                self._pipe(server_reader, client_writer, False),
            )

    def reset(self) -> None:
        self.sent = self.received = 0

    @property
    def total(self) -> int:
        return self.sent + self.received

    def __enter__(self) -> ByteCounter:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def _pouchdb_server(port: int, directory: Path) -> Iterator[str]:
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(PEER / "node_modules" / ".bin" / "pouchdb-server"),
            "--port",
            str(port),
            "--dir",
            str(directory),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("pouchdb-server did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def _workload(households: int, edits: int) -> tuple[list[list[Change]], list[tuple[str, str, Any]]]:
    """Households (each as its creating changes) and single-field edits; 500 edits in a row
    touch 500 different households, so one ``_bulk_docs`` batch never edits a document twice."""
    workload = HouseholdWorkload(seed=23, edit_share=0.0)
    created = [workload.household(number) for number in range(1, households + 1)]
    edited: list[tuple[str, str, Any]] = []
    for n in range(edits):
        change = workload.edit_of(created[n % households][0].record_id)
        edited.append((change.record_id, str(change.field), change.value))
    return created, edited


def _run_pouch(
    url: str,
    docs: list[dict[str, Any]],
    edits: list[tuple[str, str, Any]],
    *,
    write: bool = True,
    feed: bool = True,
) -> dict[str, Any]:
    job = {
        "url": url,
        "creates": docs,
        "edits": edits,
        "batch": BATCH,
        "page": PAGE,
        "write": write,
        "feed": feed,
    }
    finished = subprocess.run(
        ["node", str(PEER / "client.js")],
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=600,
    )
    if finished.returncode:
        raise RuntimeError(f"the PouchDB client failed: {finished.stderr.decode()[-1500:]}")
    result: dict[str, Any] = json.loads(finished.stdout)
    result["stderr"] = finished.stderr.decode()[-2000:]
    return result


def _gridsync_phone(path: Path, created: list[list[Change]], edits: list[tuple[str, str, Any]]) -> None:
    """A reference client replica holding the same households and edits, made offline once;
    every run pushes from a fresh copy of its file."""
    phone = Replica(path, "peer-phone")
    for household in created:
        for change in household:
            if isinstance(change, AddChange):
                phone.add(change.collection, change.record_id, str(change.field), change.value)
            else:
                phone.set(change.collection, change.record_id, str(change.field), change.value)
    for record_id, field, value in edits:
        phone.set("households", record_id, field, value)
    phone.close()


def _gridsync_write(http: httpx.Client, phone: Any) -> tuple[int, float, int]:
    """The phone pushes everything pending, 500 changes a push, gzipped as phones on mobile data
    should (the PouchDB client does not compress its requests): (changes, seconds, rejected)."""
    from sync.client import _PUSHED, SyncReport, _json_encoder

    report = SyncReport()
    start = time.perf_counter()
    while (request := phone.push_request(BATCH)) is not None:
        body = gzip.compress(_json_encoder.encode(request), 1)
        reply = http.post("/v1/sync/push", content=body, headers={"content-encoding": "gzip"})
        reply.raise_for_status()
        phone.accept_push_response(request, _PUSHED.decode(reply.content), report)
    return report.pushed, time.perf_counter() - start, len(report.rejected)


def _gridsync_feed(http: httpx.Client) -> tuple[int, float]:
    """Another phone reads the whole log by pull, decoding each page into the protocol's
    PullResponse as the client does."""
    start = time.perf_counter()
    rows = pull_all(http, PAGE, _PULLED)
    return rows, time.perf_counter() - start


def _run_gridsync(base_url: str, token: str, phone: Any, counter: ByteCounter | None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        written, write_seconds, rejected = _gridsync_write(http, phone)
        write_bytes = counter.total if counter else 0
        rows, feed_seconds = _gridsync_feed(http)
        feed_bytes = counter.total - write_bytes if counter else 0
    return {
        "written": written,
        "writeSeconds": write_seconds,
        "rows": rows,
        "feedSeconds": feed_seconds,
        "errors": rejected,
        "writeBytes": write_bytes,
        "feedBytes": feed_bytes,
    }


async def peer(backend: str, workdir: Path, households: int, edits: int, runs: int) -> dict[str, Any]:
    """Write and feed rates and bytes per item of pouchdb-server and gridsync, same run."""
    ensure_installed()
    created, edited = _workload(households, edits)
    docs = [household_doc(household) for household in created]
    rates: dict[str, Measure] = {
        key: Measure()
        for key in (
            "peer_docs_per_s",
            "peer_feed_rows_per_s",
            "gridsync_changes_per_s",
            "gridsync_feed_changes_per_s",
            "peer_workload_s",
            "gridsync_workload_s",
            "write_ratio",
            "feed_ratio",
        )
    }
    wire: dict[str, float] = {}
    errors: dict[str, Any] = {"peer": 0, "gridsync": 0}
    if not (workdir / "phone.db").exists():  # the same phone for both backends
        _gridsync_phone(workdir / "phone.db", created, edited)
    for run in range(runs + 1):
        port, counter_port, our_counter_port = next_port(), next_port(), next_port()
        counted = run == 0  # the first pass goes through the byte counters, the others are timed
        with _pouchdb_server(port, workdir / f"pouch-{backend}-{run}") as pouch_url:
            if counted:
                with ByteCounter(counter_port, port) as counter:
                    url = f"http://127.0.0.1:{counter_port}/households"
                    pouch = _run_pouch(url, docs, edited, feed=False)
                    wire["peer_write_bytes"] = counter.total
                    counter.reset()
                    pouch |= {
                        k: v for k, v in _run_pouch(url, docs, edited, write=False).items() if k != "written"
                    }
                    wire["peer_feed_bytes"] = counter.total
            else:
                pouch = _run_pouch(f"{pouch_url}/households", docs, edited)
        async with fresh_database(backend, workdir, f"peer{run}") as database:
            [(_, token)] = await enroll(database, 1)
            shutil.copy(workdir / "phone.db", workdir / f"phone-{backend}-{run}.db")
            phone = Replica(workdir / f"phone-{backend}-{run}.db", token=token)
            try:
                with serve(database, workdir) as server:
                    if counted:
                        target = int(server.base_url.rpartition(":")[2])
                        with ByteCounter(our_counter_port, target) as counter:
                            ours = _run_gridsync(
                                f"http://127.0.0.1:{our_counter_port}", token, phone, counter
                            )
                        wire["gridsync_write_bytes"], wire["gridsync_feed_bytes"] = (
                            ours["writeBytes"],
                            ours["feedBytes"],
                        )
                    else:
                        ours = _run_gridsync(server.base_url, token, phone, None)
            finally:
                phone.close()
        errors["peer"] += pouch["errors"]
        errors["gridsync"] += ours["errors"]
        if pouch["errors"]:
            errors["peer_samples"] = pouch.get("stderr", "")[-500:]
        if counted:
            continue
        rates["peer_docs_per_s"].add(pouch["written"] / pouch["writeSeconds"])
        rates["peer_feed_rows_per_s"].add(pouch["rows"] / pouch["feedSeconds"])
        rates["gridsync_changes_per_s"].add(ours["written"] / ours["writeSeconds"])
        rates["gridsync_feed_changes_per_s"].add(ours["rows"] / ours["feedSeconds"])
        rates["peer_workload_s"].add(pouch["writeSeconds"])
        rates["gridsync_workload_s"].add(ours["writeSeconds"])
        rates["write_ratio"].add(
            rates["gridsync_changes_per_s"].values[-1] / rates["peer_docs_per_s"].values[-1]
        )
        rates["feed_ratio"].add(
            rates["gridsync_feed_changes_per_s"].values[-1] / rates["peer_feed_rows_per_s"].values[-1]
        )
    return {
        "households": households,
        "edits": edits,
        "peer_docs_written": len(docs) + len(edited),
        "peer_feed_rows": pouch["rows"],
        "gridsync_changes_written": ours["written"],
        "gridsync_feed_changes": ours["rows"],
        **{key: measure.summary() for key, measure in rates.items()},
        "wire": wire,
        "errors": errors,
        "bytes_per_peer_doc_written": wire["peer_write_bytes"] / (len(docs) + len(edited)),
        "bytes_per_gridsync_change_written": wire["gridsync_write_bytes"] / ours["written"],
        "bytes_per_peer_feed_row": wire["peer_feed_bytes"] / pouch["rows"],
        "bytes_per_gridsync_feed_change": wire["gridsync_feed_bytes"] / ours["rows"],
    }
