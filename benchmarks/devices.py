"""Scenario 5: many devices at once. Run as its own process (``python -m benchmarks.devices``)
so that the clients' CPU is not the server's: every device opens its own connection, waits at a
common start line, then pushes a small batch of its own changes and pulls a small page.

Reads a JSON job on stdin, writes a JSON result on stdout."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httpx
import msgspec

from benchmarks.workload import HouseholdWorkload, push_body

__all__ = ["Job", "main", "simulate"]


class Job(msgspec.Struct):
    base_url: str
    tokens: list[str]
    changes_per_device: int = 10
    pull_limit: int = 100
    since: str | None = None


class Outcome(msgspec.Struct):
    push_ms: list[float]
    pull_ms: list[float]
    device_ms: list[float]
    errors: list[str]
    wall_seconds: float
    cpu_seconds: float = 0.0  # the simulator's own CPU during the storm


async def _device(
    number: int,
    job: Job,
    body: bytes,
    start_line: asyncio.Event,
    all_ready: asyncio.Event,
    outcome: Outcome,
    ready: list[int],
) -> None:
    headers = {"authorization": f"Bearer {job.tokens[number]}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=job.base_url, headers=headers, timeout=60, limits=limits) as http:
        ready.append(number)
        if len(ready) == len(job.tokens):
            all_ready.set()
        await start_line.wait()
        began = time.perf_counter()
        try:
            reply = await http.post("/v1/sync/push", content=body)
            pushed = time.perf_counter()
            if reply.status_code != 200 or any(r["status"] != "applied" for r in reply.json()["results"]):
                outcome.errors.append(f"push {reply.status_code}: {reply.text[:200]}")
                return
            params: dict[str, Any] = {"limit": job.pull_limit} | ({"since": job.since} if job.since else {})
            reply = await http.get("/v1/sync/pull", params=params)
            pulled = time.perf_counter()
            if reply.status_code != 200:
                outcome.errors.append(f"pull {reply.status_code}: {reply.text[:200]}")
                return
        except httpx.HTTPError as error:
            outcome.errors.append(f"{type(error).__name__}: {error}")
            return
        outcome.push_ms.append((pushed - began) * 1000)
        outcome.pull_ms.append((pulled - pushed) * 1000)
        outcome.device_ms.append((pulled - began) * 1000)


async def simulate(job: Job) -> Outcome:
    bodies = []
    for number in range(len(job.tokens)):
        workload = HouseholdWorkload(seed=1000 + number, replica_id=f"phone-{number}", prefix=f"d{number}")
        bodies.append(push_body(f"phone-{number}", workload.changes(job.changes_per_device)))
    outcome = Outcome([], [], [], [], 0.0)
    start_line, all_ready = asyncio.Event(), asyncio.Event()
    ready: list[int] = []
    tasks = [
        asyncio.create_task(_device(n, job, bodies[n], start_line, all_ready, outcome, ready))
        for n in range(len(job.tokens))
    ]
    await all_ready.wait()
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
