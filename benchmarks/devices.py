"""Scenario 5: many devices at once. Run as its own process (``python -m benchmarks.devices``)
so that the clients' CPU is not the server's: every device waits at a common start line, then
opens its own connection, pushes a small batch of its own changes and pulls a small page on it:
in one exchange (``POST /v1/sync/exchange``, as the reference client syncs), or with
``exchange`` off as a push then a pull, two requests.

The devices speak HTTP/1.1 through a lean client on asyncio streams (one keep-alive connection
per device, ``Content-Length`` bodies out, ``Content-Length`` or chunked bodies in, gzip as a
phone accepts it), the way load generators such as wrk do: a general-purpose client costs more
CPU per request than the server it measures, and on a shared machine that CPU lands in the
latency being measured.

Reads a JSON job on stdin, writes a JSON result on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import zlib
from urllib.parse import urlencode, urlsplit

import msgspec

from benchmarks.workload import HouseholdWorkload, push_body

__all__ = ["Job", "Reply", "Wire", "main", "simulate"]


class Job(msgspec.Struct):
    base_url: str
    tokens: list[str]
    changes_per_device: int = 10
    pull_limit: int = 100
    since: str | None = None
    exchange: bool = True


class Outcome(msgspec.Struct):
    push_ms: list[float]  # the two parts of a device's sync, without the exchange
    pull_ms: list[float]
    device_ms: list[float]
    errors: list[str]
    wall_seconds: float
    cpu_seconds: float = 0.0  # the simulator's own CPU during the storm


class _Result(msgspec.Struct):
    status: str


class _Pushed(msgspec.Struct):
    results: list[_Result]


class _Pulled(msgspec.Struct):
    changes: list[msgspec.Raw]
    cursor: str
    more: bool


class _Exchanged(msgspec.Struct):
    push: _Pushed
    pull: _Pulled


_pushed = msgspec.json.Decoder(_Pushed)
_pulled = msgspec.json.Decoder(_Pulled)
_exchanged = msgspec.json.Decoder(_Exchanged)


class Reply(msgspec.Struct):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # decoded from gzip when the server sent it so


class Wire:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, base_url: str) -> Wire:
        parts = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer, parts.netloc)

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Reply:
        lines = [f"{method} {path} HTTP/1.1", f"host: {self._host}", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        reply_headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        if "chunked" in reply_headers.get("transfer-encoding", ""):
            content = await self._chunks()
        else:
            content = await self._reader.readexactly(int(reply_headers.get("content-length", "0")))
        if reply_headers.get("content-encoding") == "gzip":
            content = zlib.decompress(content, 31)
        return Reply(int(status_line.split(" ", 2)[1]), reply_headers, content)

    async def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                # Trailers, if any, end with an empty line like the head does.
                while await self._reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def _device(
    number: int, job: Job, body: bytes, start_line: asyncio.Event, outcome: Outcome, query: str
) -> None:
    headers = {
        "authorization": f"Bearer {job.tokens[number]}",
        "content-type": "application/json",
        "accept-encoding": "gzip",
    }
    await start_line.wait()
    began = pushed_at = time.perf_counter()
    wire: Wire | None = None
    try:
        wire = await Wire.open(job.base_url)
        if job.exchange:
            reply = await wire.request("POST", f"/v1/sync/exchange?{query}", headers, body)
            if reply.status != 200:
                outcome.errors.append(f"exchange {reply.status}: {reply.body[:200]!r}")
                return
            answer = _exchanged.decode(reply.body)
            pushed, page = answer.push, answer.pull
        else:
            reply = await wire.request("POST", "/v1/sync/push", headers, body)
            pushed_at = time.perf_counter()
            if reply.status != 200:
                outcome.errors.append(f"push {reply.status}: {reply.body[:200]!r}")
                return
            pushed = _pushed.decode(reply.body)
            reply = await wire.request("GET", f"/v1/sync/pull?{query}", headers)
            if reply.status != 200:
                outcome.errors.append(f"pull {reply.status}: {reply.body[:200]!r}")
                return
            page = _pulled.decode(reply.body)  # a whole, well-formed page, or it counts as an error
        done = time.perf_counter()
        if any(r.status != "applied" for r in pushed.results):
            outcome.errors.append(f"push not applied: {[r.status for r in pushed.results]}")
            return
        if len(page.changes) != job.pull_limit:
            outcome.errors.append(f"pull gave {len(page.changes)} changes, not {job.pull_limit}")
            return
    except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, msgspec.DecodeError) as error:
        outcome.errors.append(f"{type(error).__name__}: {error}")
        return
    finally:
        if wire is not None:
            await wire.close()
    if not job.exchange:
        outcome.push_ms.append((pushed_at - began) * 1000)
        outcome.pull_ms.append((done - pushed_at) * 1000)
    outcome.device_ms.append((done - began) * 1000)


async def simulate(job: Job) -> Outcome:
    bodies = []
    for number in range(len(job.tokens)):
        workload = HouseholdWorkload(seed=1000 + number, replica_id=f"phone-{number}", prefix=f"d{number}")
        bodies.append(push_body(f"phone-{number}", workload.changes(job.changes_per_device)))
    query = urlencode({"limit": job.pull_limit} | ({"since": job.since} if job.since else {}))
    outcome = Outcome([], [], [], [], 0.0)
    start_line = asyncio.Event()
    tasks = [
        asyncio.create_task(_device(n, job, bodies[n], start_line, outcome, query))
        for n in range(len(job.tokens))
    ]
    await asyncio.sleep(0)  # every device is waiting at the line
    began, cpu = time.perf_counter(), time.process_time()
    start_line.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
    outcome.wall_seconds = time.perf_counter() - began
    outcome.cpu_seconds = time.process_time() - cpu
    return outcome


def main() -> int:
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=Job)
    sys.stdout.buffer.write(msgspec.json.encode(asyncio.run(simulate(job))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
