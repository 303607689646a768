"""The field app's sync as a phone's browser runs it: the JS SDK in Debian's Chromium (headless,
through Playwright), on the browser's own IndexedDB, against a real ``gridsync serve``.

Two figures on one database holding the demo district laid out so that every grid holds about
280 households (``DISTRICT``), as a grid worker's phone of one grid sees it:

* **grid_bootstrap**: a new phone (a fresh browser context, so an empty IndexedDB)
  ``Replica.open({..., store: new IndexedDBStore(...)})`` and ``sync()`` until caught up (the
  snapshot, then the exchange): seconds, and the bytes the browser received (gzipped bodies as
  Chromium counts them, headers apart). Beside it, in the same run, the Python reference client
  (``sync.client.Replica``) bootstrapping the same grid into its SQLite file. The time inside the
  page is split into the requests (start to last byte, as Resource Timing gives them), the
  IndexedDB writes (the store's ``write`` calls), and the rest (decoding, merging, the SDK).
* **grid_day_3g**: the bootstrapped phone makes ``offline`` changes (visits, check-ins, edits of
  households) without syncing, while another phone of the grid (the reference client) pushes
  ``others``; then, under CDP ``Network.emulateNetworkConditions`` (400 kbit/s each way, 400 ms
  latency), one ``sync()`` until caught up is timed.

``python -m benchmarks.field_grid [--size tiny] [--backend sqlite]`` runs both alone and writes
benchmarks/results/field_grid.json; ``python -m benchmarks`` runs them on every backend
(scenarios ``grid_bootstrap`` and ``grid_day_3g``, which share one loaded database)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Measure, fresh_database, in_process_store, serve, workdir
from schemas.protocol import Change, SetChange
from server.access.accounts import AccountStore
from server.access.principals import UserScope
from server.db.engine import create_engine
from server.registry.demo import DemoPlan, demo_changes, load_demo

__all__ = ["DISTRICT", "TARGET_BYTES", "TARGET_S", "field_grid"]

CHROMIUM = "/usr/bin/chromium"
RESULTS = Path(__file__).resolve().parent / "results" / "field_grid.json"
DEMO_NOW = datetime.datetime(2026, 5, 15, 16, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
# The demo district (4,100 households, 15 grids) in 45 buildings, three a grid: every grid holds
# 273-274 households with their residents, visits, check-ins and a season of history.
DISTRICT = DemoPlan(buildings=45)
TARGET_S = 3.0
TARGET_BYTES = 1_000_000
# Chromium's DevTools conditions for the day's sync: 400 kbit/s down and up, 400 ms latency.
THREE_G = {"offline": False, "latency": 400, "downloadThroughput": 50_000, "uploadThroughput": 50_000}
UNTHROTTLED = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
_PLACE = {("households", "building_id"), ("buildings", "grid_id"), ("grids", "community_id")}

_PAGE = """<!doctype html><meta charset="utf-8"><title>grid bench</title>
<script type="module">
import { Replica, IndexedDBStore } from "/app/sdk/index.js";
const spent = { idbMs: 0, writes: 0 };
function network() {
  const entries = performance.getEntriesByType("resource").filter((e) => e.name.includes("/v1/"));
  const sum = (f) => entries.reduce((total, e) => total + f(e), 0);
  return { requests: entries.length, requestMs: sum((e) => e.responseEnd - e.startTime),
           waitMs: sum((e) => e.responseStart - e.requestStart),
           receiveMs: sum((e) => e.responseEnd - e.responseStart) };
}
async function timed(work) {
  spent.idbMs = 0; spent.writes = 0;
  performance.clearResourceTimings();
  const start = performance.now();
  const report = await work();
  const ms = performance.now() - start;
  return { ms, idbMs: spent.idbMs, writes: spent.writes, network: network(), report,
           records: window.phone.states.size, pending: window.phone.pending().length };
}
window.bench = {
  bootstrap: (token, name) => timed(async () => {
    const store = new IndexedDBStore(name);
    const write = store.write.bind(store);
    store.write = async (w) => {
      const start = performance.now();
      try { await write(w); } finally { spent.idbMs += performance.now() - start; spent.writes += 1; }
    };
    window.phone = await Replica.open({ url: location.origin, token, replicaId: name, store });
    return window.phone.sync();
  }),
  offline: async (edits) => {
    for (const [op, collection, id, field, value] of edits) await window.phone[op](collection, id, field, value);
    return window.phone.pending().length;
  },
  sync: () => timed(() => window.phone.sync()),
  get: (collection, id) => window.phone.get(collection, id),
};
window.ready = true;
</script>"""


@dataclass(frozen=True)
class Grid:
    community: str
    grid: str
    households: list[str]


def _the_grid(changes: list[Change]) -> Grid:
    """The grid holding the most households, read from the demo's own links."""
    up = {
        (c.collection, c.record_id): c.value
        for c in changes
        if isinstance(c, SetChange) and (c.collection, c.field) in _PLACE
    }
    grid_of = {h: up.get(("buildings", b)) for (kind, h), b in up.items() if kind == "households"}
    counts = Counter(grid for grid in grid_of.values() if isinstance(grid, str))
    grid = min(counts, key=lambda g: (-counts[g], g))
    return Grid(str(up[("grids", grid)]), grid, sorted(h for h, g in grid_of.items() if g == grid))


async def _grid_worker(database_url: str, grid: Grid) -> tuple[str, str]:
    """A grid worker of ``grid`` (and its community's record) with two phones: the browser's
    and the reference client's. Their tokens."""
    engine = create_engine(database_url)
    try:
        accounts = AccountStore(engine)
        scope = UserScope(communities=(grid.community,), grids=(grid.grid,))
        user = await accounts.create_user(f"worker-{grid.grid}", "grid_worker", scope)
        _, browser = await accounts.enroll_device(user.id, "browser-phone")
        _, other = await accounts.enroll_device(user.id, "reference-phone")
        return browser, other
    finally:
        await engine.dispose()


def _edits(households: list[str], count: int, tag: str, step: int) -> list[tuple[str, str, str, str, Any]]:
    """``count`` changes of a day in the field: new visits and check-ins (four fields each) and
    households' notes edited, in turn (two records, then three edits)."""
    edits: list[tuple[str, str, str, str, Any]] = []
    n = 0
    while len(edits) < count:
        household = households[(n * step) % len(households)]
        at = (DEMO_NOW - datetime.timedelta(minutes=n)).isoformat()
        fields: dict[str, Any] | None = None
        if n % 5 == 0:
            collection = "visits"
            fields = {
                "household_id": household,
                "visited_at": at,
                "purpose": "routine",
                "notes": f"{tag} {n}",
            }
        elif n % 5 == 1:
            collection = "checkins"
            fields = {
                "household_id": household,
                "day": DEMO_NOW.date().isoformat(),
                "signal": True,
                "checked_at": at,
            }
        if fields is not None and count - len(edits) >= len(fields):
            edits += [("set", collection, f"{tag}-{n}", name, value) for name, value in fields.items()]
        else:
            edits.append(("set", "households", household, "notes", f"{tag}: seen {at}"))
        n += 1
    return edits


@contextmanager
def _chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class _Phone:
    """One phone: a fresh browser context (its own, empty IndexedDB) on the bench page, served
    under the server's origin; the SDK comes from the server's /app/sdk/."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 360, "height": 780})
        self.page = self.context.new_page()
        self.finished: list[Any] = []
        self.page.on("requestfinished", lambda request: self.finished.append(request))
        self.page.route(
            "**/grid-bench.html", lambda route: route.fulfill(body=_PAGE, content_type="text/html")
        )
        self.page.goto(f"{base_url}/grid-bench.html")
        self.page.wait_for_function("window.ready === true")
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("Network.enable")

    def run(self, call: str, *args: Any) -> dict[str, Any]:
        """``window.bench[call](...args)``, with the bytes of the API requests it made."""
        self.finished.clear()
        found: dict[str, Any] = self.page.evaluate(f"(args) => window.bench.{call}(...args)", list(args))
        deadline = time.monotonic() + 10
        while self._api() < found["network"]["requests"] and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)  # the last requestfinished events are still on their way
        sizes = [request.sizes() for request in self.finished if "/v1/" in request.url]
        found["bytes"] = {
            key: sum(size[name] for size in sizes)
            for key, name in (
                ("down", "responseBodySize"),
                ("down_headers", "responseHeadersSize"),
                ("up", "requestBodySize"),
                ("up_headers", "requestHeadersSize"),
            )
        }
        return found

    def _api(self) -> int:
        return sum("/v1/" in request.url for request in self.finished)

    def throttle(self, conditions: dict[str, Any]) -> None:
        self.cdp.send("Network.emulateNetworkConditions", conditions)

    def close(self) -> None:
        self.context.close()


def _reference_bootstrap(base_url: str, token: str, path: Path) -> tuple[Any, float, int, int]:
    """The Python reference client's bootstrap of the grid (snapshot, then sync until caught
    up) into a fresh file: the replica, seconds, gzipped bytes received and records held."""
    from sync.client import Replica

    responses: list[httpx.Response] = []
    phone = Replica(path, f"reference-{path.stem}", token=token)
    with httpx.Client(base_url=base_url, timeout=60, event_hooks={"response": [responses.append]}) as http:
        start = time.perf_counter()
        phone.bootstrap(http)
        phone.sync(http)
        seconds = time.perf_counter() - start
    held = phone.db.execute("SELECT count(*) FROM records").fetchone()[0]
    return phone, seconds, sum(r.num_bytes_downloaded for r in responses), held


def _split(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the page's time went: the requests (start to last byte), the IndexedDB writes, and
    the rest (decoding, merging, the SDK's own work), in ms."""
    return {
        "requests_ms": Measure([r["network"]["requestMs"] for r in runs]).summary(),
        "waiting_ms": Measure([r["network"]["waitMs"] for r in runs]).summary(),
        "indexeddb_ms": Measure([r["idbMs"] for r in runs]).summary(),
        "rest_ms": Measure([r["ms"] - r["network"]["requestMs"] - r["idbMs"] for r in runs]).summary(),
        "requests": runs[-1]["network"]["requests"],
        "indexeddb_writes": runs[-1]["writes"],
    }


@dataclass
class _Setup:
    base_url: str
    token: str  # the browser phone's
    other: str  # the reference client's: the grid's other phone
    grid: Grid
    files: Path  # the reference client's replicas


def _bootstraps(setup: _Setup, browser: Any, runs: int) -> tuple[_Phone, dict[str, Any], Any]:
    """``runs`` browser bootstraps (after one that warms the server) beside as many of the
    reference client; returns the last browser phone and the last reference replica, open."""
    phone: _Phone | None = None
    found: list[dict[str, Any]] = []
    for run in range(runs + 1):
        if phone is not None:
            phone.close()
        phone = _Phone(browser, setup.base_url)
        made = phone.run("bootstrap", setup.token, f"phone-{run}")
        assert (made["pending"], made["report"]["rejected"]) == (0, []), made["report"]
        if run:
            found.append(made)
    assert phone is not None
    households = phone.page.evaluate("() => window.phone.list('households').length")
    reference, seconds, received = None, Measure(), Measure()
    for run in range(runs):
        if reference is not None:
            reference.close()
        reference, elapsed, got, held = _reference_bootstrap(
            setup.base_url, setup.other, setup.files / f"ref-{run}.db"
        )
        seconds.add(elapsed)
        received.add(got)
        # Both hold the same grid, and only it: a broken scope filter cannot pass as fast.
        assert held == found[-1]["records"], (held, found[-1]["records"])
    assert households == len(setup.grid.households), (households, len(setup.grid.households))
    result = {
        "grid": setup.grid.grid,
        "households": households,
        "records": found[-1]["records"],
        "heads": found[-1]["report"]["pulled"],
        "browser_s": Measure([r["ms"] / 1000 for r in found]).summary(),
        "browser_bytes": found[-1]["bytes"],
        "split": _split(found),
        "reference_s": seconds.summary(),
        "reference_bytes": int(received.summary()["median"]),
    }
    return phone, result, reference


def _day(setup: _Setup, phone: _Phone, reference: Any, run: int, offline: int, others: int) -> dict[str, Any]:
    """One day: ``offline`` changes made on the phone, ``others`` pushed by the other phone, then
    one sync under emulated 3G."""
    households = setup.grid.households
    mine = _edits(households, offline, f"b{run}", 7)
    held = phone.page.evaluate("(edits) => window.bench.offline(edits)", mine)
    assert held == offline, held
    for op, collection, record, name, value in _edits(households, others, f"o{run}", 11):
        getattr(reference, op)(collection, record, name, value)
    with httpx.Client(base_url=setup.base_url, timeout=60) as http:
        pushed = reference.sync(http)
    assert (pushed.pushed, pushed.rejected) == (others, []), (pushed.pushed, pushed.rejected[:3])
    phone.throttle(THREE_G)
    try:
        made = phone.run("sync")
    finally:
        phone.throttle(UNTHROTTLED)
    report = made["report"]
    assert (report["pushed"], report["rejected"], made["pending"]) == (offline, [], 0), report
    assert report["pulled"] >= others, report
    # The phone shows what the server shows, for the last household it edited.
    checked = next(edit[2] for edit in reversed(mine) if edit[1] == "households")
    shown = phone.page.evaluate("(id) => window.bench.get('households', id)", checked)
    served = httpx.get(
        f"{setup.base_url}/v1/records/households/{checked}",
        headers={"authorization": f"Bearer {setup.token}"},
        timeout=60,
    )
    assert shown == served.json(), (shown, served.text)
    return made


def _measure(setup: _Setup, runs: int, offline: int, others: int, day: bool) -> dict[str, Any]:
    with _chromium() as browser:
        phone, bootstrap, reference = _bootstraps(setup, browser, runs)
        try:
            days = [_day(setup, phone, reference, run, offline, others) for run in range(runs if day else 0)]
        finally:
            phone.close()
            reference.close()
    found: dict[str, Any] = {"grid_bootstrap": bootstrap}
    if days:
        found["grid_day_3g"] = {
            "offline": offline,
            "others": others,
            "conditions": THREE_G,
            "pulled": days[-1]["report"]["pulled"],
            "sync_s": Measure([d["ms"] / 1000 for d in days]).summary(),
            "bytes": days[-1]["bytes"],
            "split": _split(days),
        }
    return found


async def field_grid(
    backend: str, workdir: Path, district: DemoPlan, runs: int, offline: int, others: int, *, day: bool = True
) -> dict[str, Any]:
    """Both figures on one fresh database holding ``district``, behind a real ``gridsync serve``:
    ``{"grid_bootstrap": ..., "grid_day_3g": ...}`` (the second only with ``day``)."""
    changes = demo_changes(district, DEMO_NOW)
    grid = _the_grid(changes)
    async with fresh_database(backend, workdir, "grid") as database:
        start = time.perf_counter()
        async with in_process_store(database) as store:
            loaded = await load_demo(store, changes)
        assert not loaded.rejected, loaded.rejected[:3]
        load_seconds = time.perf_counter() - start
        token, other = await _grid_worker(database.url, grid)
        # The reference client's files, apart from another backend's run in the same workdir.
        with serve(database, workdir) as server, tempfile.TemporaryDirectory(dir=workdir) as files:
            setup = _Setup(server.base_url, token, other, grid, Path(files))
            found = await asyncio.to_thread(_measure, setup, runs, offline, others, day)
    found["grid_bootstrap"] |= {"district_changes": len(changes), "load_seconds": load_seconds}
    return found


class FieldGrid:
    """The two scenarios of ``python -m benchmarks`` on one backend, measured together on one
    loaded database the first time either is asked for."""

    def __init__(
        self,
        backend: str,
        workdir: Path,
        district: DemoPlan,
        runs: int,
        offline: int,
        others: int,
        *,
        day: bool,
    ) -> None:
        self.arguments = (backend, workdir, district, runs, offline, others)
        self.day = day
        self.found: dict[str, Any] | None = None
        self.error: BaseException | None = None

    async def _measured(self, name: str) -> dict[str, Any]:
        if self.found is None and self.error is None:
            try:
                self.found = await field_grid(*self.arguments, day=self.day)
            except Exception as error:
                self.error = error
        if self.error is not None:
            raise self.error
        assert self.found is not None
        return dict(self.found[name])

    async def bootstrap(self) -> dict[str, Any]:
        return await self._measured("grid_bootstrap")

    async def day_3g(self) -> dict[str, Any]:
        return await self._measured("grid_day_3g")


def verdicts(found: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    """Each figure of a backend's results with its target: (figure, value, target, met)."""
    judged = []
    if "grid_bootstrap" in found:
        boot = found["grid_bootstrap"]
        seconds = boot["browser_s"]["median"]
        received = boot["browser_bytes"]["down"] + boot["browser_bytes"]["down_headers"]
        judged.append(
            ("grid bootstrap into IndexedDB, Chromium (s)", seconds, f"< {TARGET_S:g} s", seconds < TARGET_S)
        )
        judged.append(
            ("grid bootstrap, bytes received gzipped (MB)", received / 1e6, "< 1 MB", received < TARGET_BYTES)
        )
    if "grid_day_3g" in found:
        seconds = found["grid_day_3g"]["sync_s"]["median"]
        judged.append(
            ("a day's sync under emulated 3G (s)", seconds, f"< {TARGET_S:g} s", seconds < TARGET_S)
        )
    return judged


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import SIZES

    parser = argparse.ArgumentParser(prog="python -m benchmarks.field_grid", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    with workdir() as folder:
        found = asyncio.run(
            field_grid(
                args.backend,
                folder,
                size.field_district,
                size.field_runs,
                size.field_offline,
                size.field_others,
            )
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
    judged = verdicts(found)
    for figure, value, target, met in judged:
        print(f"{figure}: {value:.2f} (target {target}): {'met' if met else 'MISSED'}")
    return 0 if all(met for *_, met in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
