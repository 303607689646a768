"""``python -m benchmarks``: run every scenario on SQLite and PostgreSQL, write
``benchmarks/results/<name>.json``, print the figures next to their targets, and exit non-zero
when a target is missed."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import (
    app_shell,
    field_grid,
    floor,
    harness,
    new_records,
    peer,
    scenarios,
    sdk_merge,
    spreadsheets,
)
from server.registry.demo import DemoPlan

__all__ = ["SIZES", "Target", "evaluate", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
CHART = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.png"


@dataclass(frozen=True)
class Size:
    changes: int
    runs: int
    small: int
    big: int
    repeats: int
    district: DemoPlan  # the demo district the bootstrap's database holds
    devices: int
    device_runs: int
    peer_households: int
    peer_edits: int
    peer_runs: int
    merge_repeats: int = 10  # passes over the conformance vectors per round of the SDK's merge
    record_changes: int = 20_000  # changes of the record-creating push, per workload and run
    sheet_households: int = 10_000
    # The storm through two app processes, on the primary alone and with a standby (PostgreSQL).
    standby_devices: int = 2_000
    standby_runs: int = 1
    # The field app in Chromium: a grid bootstrapped into IndexedDB, then a day's sync under 3G.
    field_district: DemoPlan = field_grid.DISTRICT
    field_runs: int = 3
    field_offline: int = 100  # changes the phone made offline
    field_others: int = 300  # changes other phones pushed to its grid meanwhile


SIZES = {
    "full": Size(50_000, 3, 10_000, 1_000_000, 20, DemoPlan(), 500, 3, 5_000, 5_000, 2),
    # 13 buildings of 8: every community holds some, so the scope filter has others to leave out.
    "tiny": Size(
        2_000,
        1,
        1_500,
        3_000,
        2,
        DemoPlan(households=100, households_per_building=8),
        5,
        1,
        40,
        40,
        1,
        merge_repeats=1,
        record_changes=1_000,
        sheet_households=500,
        standby_devices=5,
        field_district=DemoPlan(households=100, households_per_building=8),
        field_runs=1,
        field_offline=10,
        field_others=30,
    ),
}


@dataclass(frozen=True)
class Target:
    scenario: str
    figure: str
    value: float | None
    target: str
    met: bool


def _median(result: dict[str, Any], *path: str) -> float:
    node: Any = result
    for key in path:
        node = node[key]
    return float(node["median"]) if isinstance(node, dict) else float(node)


def evaluate(results: dict[str, Any]) -> list[Target]:
    """Every figure with its target; a figure that was not measured is not judged."""
    targets: list[Target] = []

    def judge(scenario: str, figure: str, value: float, target: str, met: Callable[[float], bool]) -> None:
        targets.append(Target(scenario, figure, value, target, met(value)))

    if "app_shell" in results:
        judge(
            "app",
            "app shell to first use, gzipped (KB)",
            results["app_shell"]["gzip_kb"],
            f"< {app_shell.TARGET_KB} KB",
            lambda v: v < app_shell.TARGET_KB,
        )
    for backend, found in results["backends"].items():
        if "throughput" in found:
            tp = found["throughput"]
            judge(backend, "push / raw executemany", _median(tp, "push_ratio"), ">= 0.5x", lambda v: v >= 0.5)
            judge(backend, "pull / raw scan", _median(tp, "pull_ratio"), ">= 0.5x", lambda v: v >= 0.5)
        if "new_records" in found:
            # The database's share of a push is larger on PostgreSQL (a round trip per statement,
            # the server process's own work), so the push can come nearer its raw limit there.
            floor_ratio = 0.5 if backend == "postgres" else 0.35

            def reaches(value: float, at_least: float = floor_ratio) -> bool:
                return value >= at_least

            for label, name in (("one_change", "1"), ("two_changes", "2")):
                for who in ("district", "grid_worker"):
                    judge(
                        backend,
                        f"new records, {name} change(s) each, {who.replace('_', ' ')} / raw",
                        _median(found, "new_records", label, f"{who}_ratio"),
                        f">= {floor_ratio}x",
                        reaches,
                    )
        if "incremental" in found:
            inc = found["incremental"]
            for label in ("small", "big"):
                size = inc[label]["changes"]
                judge(
                    backend,
                    f"pull 1,000 of {size:,} (ms)",
                    _median(inc[label], "pull_ms"),
                    "< 50 ms",
                    lambda v: v < 50,
                )
            judge(backend, "pull big / small", inc["ratio_big_to_small"], "<= 1.3x", lambda v: v <= 1.3)
        if "bootstrap" in found:
            judge(
                backend,
                "bootstrap snapshot (ms)",
                _median(found["bootstrap"], "snapshot_ms"),
                "< 1000 ms",
                lambda v: v < 1000,
            )
        if "devices" in found:
            dev = found["devices"]
            if dev["p99_ms"] is not None:
                judge(
                    backend,
                    f"{dev['devices']} devices p99 (ms)",
                    _median(dev, "p99_ms"),
                    "< 1000 ms",
                    lambda v: v < 1000,
                )
            judge(backend, f"{dev['devices']} devices errors", dev["errors"], "0", lambda v: v == 0)
            judge(
                backend,
                "server peak RSS (MB)",
                _median(dev, "server_peak_rss_mb"),
                "< 300 MB",
                lambda v: v < 300,
            )
        if "peer" in found:
            pr = found["peer"]
            judge(backend, "write rate / peer", _median(pr, "write_ratio"), ">= 3x", lambda v: v >= 3)
            judge(backend, "feed rate / peer", _median(pr, "feed_ratio"), ">= 10x", lambda v: v >= 10)
            judge(
                backend,
                "bytes per change written / peer",
                pr["bytes_per_gridsync_change_written"] / pr["bytes_per_peer_doc_written"],
                "< 1x",
                lambda v: v < 1,
            )
            judge(
                backend,
                "bytes per change fed / peer",
                pr["bytes_per_gridsync_feed_change"] / pr["bytes_per_peer_feed_row"],
                "< 1x",
                lambda v: v < 1,
            )
        for figure, value, target, met in field_grid.verdicts(found):
            targets.append(Target(backend, figure, value, target, met))
        if "sdk_merge" in found:
            judge(
                backend,
                "SDK merge in Node / Python engine",
                found["sdk_merge"]["js_to_python"],
                ">= 1x",
                lambda v: v >= 1,
            )
        if "spreadsheets" in found:
            sheets = found["spreadsheets"]
            judge(
                backend,
                "import / (3x library read + push)",
                sheets["apply_ratio"],
                "<= 1x",
                lambda v: v <= 1,
            )
            # What openpyxl itself holds (a file's shared strings) grows with the file; the rest is flat.
            judge(
                backend,
                "dry-run peak memory beyond openpyxl's own, all rows / a tenth",
                (sheets["dry_run_peak_mb_full"] - sheets["library_read_peak_mb_full"])
                / max(0.1, sheets["dry_run_peak_mb_tenth"] - sheets["library_read_peak_mb_tenth"]),
                "<= 1.5x (flat)",
                lambda v: v <= 1.5,
            )
            judge(backend, "second import's changes", sheets["second_import_changes"], "0", lambda v: v == 0)
    return targets


def _figures_table(results: dict[str, Any]) -> Table:
    """The docs' figures (``_figure_rows``) on the console, leaving out those this run did not
    measure on any backend."""
    backends = results["backends"]
    table = Table(title="gridsync benchmark: medians (min-max)")
    for column in ("figure", *(_LABELS.get(name, name) for name in backends)):
        table.add_column(column)
    for label, cells in _figure_cells(backends):
        if any(cell != "-" for cell in cells):
            table.add_row(label, *cells)
    return table


def _targets_table(targets: list[Target]) -> Table:
    table = Table(title="targets")
    for column in ("backend", "figure", "value", "target", "met"):
        table.add_column(column)
    for t in targets:
        value = "-" if t.value is None else f"{t.value:,.2f}"
        table.add_row(t.scenario, t.figure, value, t.target, "[green]yes[/]" if t.met else "[red]MISSED[/]")
    return table


async def _run(size: Size, backends: list[str], skip: set[str], console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {"backends": {}}
    with harness.workdir() as workdir:
        if "app_shell" not in skip:
            console.print("[bold]app[/]: app_shell ...")
            try:
                results["app_shell"] = await app_shell.app_shell(workdir)
            except Exception as error:  # the server figures still count
                console.print_exception()
                results.setdefault("failed", []).append(f"app_shell: {type(error).__name__}: {error}")
        for backend in backends:
            found: dict[str, Any] = results["backends"].setdefault(backend, {})
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("throughput", partial(scenarios.throughput, backend, workdir, size.changes, size.runs)),
                ("floor", partial(floor.push_floor, backend, workdir, size.changes, size.runs)),
                (
                    "new_records",
                    partial(new_records.new_records, backend, workdir, size.record_changes, size.runs),
                ),
                (
                    "incremental",
                    partial(scenarios.incremental_pull, backend, workdir, size.small, size.big, size.repeats),
                ),
                ("bootstrap", partial(scenarios.bootstrap, backend, workdir, size.district, size.repeats)),
                (
                    "devices",
                    partial(scenarios.many_devices, backend, workdir, size.devices, size.device_runs),
                ),
                (
                    "peer",
                    partial(
                        peer.peer, backend, workdir, size.peer_households, size.peer_edits, size.peer_runs
                    ),
                ),
                (
                    "spreadsheets",
                    partial(spreadsheets.spreadsheets, backend, workdir, size.sheet_households, 3),
                ),
            ]
            grid = field_grid.FieldGrid(
                backend,
                workdir,
                size.field_district,
                size.field_runs,
                size.field_offline,
                size.field_others,
                day="grid_day_3g" not in skip,
            )
            steps += [("grid_bootstrap", grid.bootstrap), ("grid_day_3g", grid.day_3g)]
            if backend == backends[0]:  # no database: once a run
                steps.append(("sdk_merge", partial(sdk_merge.sdk_merge, repeats=size.merge_repeats)))
            if backend == "postgres":
                steps.append(
                    (
                        "standby",
                        partial(scenarios.standby_storm, workdir, size.standby_devices, size.standby_runs),
                    )
                )
            for name, step in steps:
                if name in skip:
                    continue
                start = time.perf_counter()
                console.print(f"[bold]{backend}[/]: {name} ...")
                try:
                    found[name] = await step()
                except Exception as error:  # one failed scenario must not lose the others' figures
                    console.print_exception()
                    results.setdefault("failed", []).append(
                        f"{backend} {name}: {type(error).__name__}: {error}"
                    )
                    continue
                console.print(f"  done in {time.perf_counter() - start:.1f}s")
    return results


def _commit() -> str:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return found.stdout.strip()


def _span(node: Any, fmt: str = "{:,.0f}") -> str:
    if isinstance(node, dict) and "median" in node:
        return f"{fmt.format(node['median'])} ({fmt.format(node['min'])}-{fmt.format(node['max'])})"
    return fmt.format(node)


def _push_budget(found: dict[str, Any]) -> str:
    """One push of ``BATCH`` changes in milliseconds, taken apart (section 1 of docs/benchmarks.md),
    and what a push at exactly half the raw rate would leave our code (decoding, validation, the
    merge, HTTP) once its own SQL has run: the bound of the push / raw target."""
    floor = found["floor"]

    def ms(rate: float) -> float:
        return scenarios.BATCH / rate * 1000

    raw = ms(_median(floor, "raw_executemany_rows_per_s"))
    sql = ms(_median(floor, "floor_changes_per_s"))
    in_process = ms(_median(floor, "in_process_changes_per_s"))
    http = ms(_median(found, "throughput", "push_changes_per_s"))
    return f"{raw:.1f} / {sql:.1f} / {in_process:.1f} / {http:.1f} ({2 * raw - sql:.1f})"


def _new_records(label: str) -> Callable[[dict[str, Any]], str]:
    """The record-creating push's raw limit, and each push with its ratio to it."""

    def cell(found: dict[str, Any]) -> str:
        node = found["new_records"][label]
        return (
            f"{_median(node, 'raw_changes_per_s'):,.0f} / "
            f"{_median(node, 'district_changes_per_s'):,.0f} ({_median(node, 'district_ratio'):.2f}x) / "
            f"{_median(node, 'grid_worker_changes_per_s'):,.0f} ({_median(node, 'grid_worker_ratio'):.2f}x)"
        )

    return cell


def _sheet_memory(sheets: dict[str, Any]) -> str:
    return (
        f"{sheets['library_write_s']:.2f} / {sheets['export_s']:.2f}; "
        f"{sheets['dry_run_peak_mb_tenth']:.1f} ({sheets['library_read_peak_mb_tenth']:.1f}) / "
        f"{sheets['dry_run_peak_mb_full']:.1f} ({sheets['library_read_peak_mb_full']:.1f})"
    )


def _figure_rows() -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    """Each row of the figures table: its label, and its cell from one backend's results."""

    def rate(*path: str, fmt: str = "{:,.0f}") -> Callable[[dict[str, Any]], str]:
        def cell(found: dict[str, Any]) -> str:
            node: Any = found
            for key in path:
                node = node[key]
            return _span(node, fmt)

        return cell

    def with_ratio(scenario: str, rates: str, ratio: str) -> Callable[[dict[str, Any]], str]:
        """A rate and, beside it, its ratio (``scenario`` may be a path joined by dots)."""
        path = scenario.split(".")
        return lambda b: f"{rate(*path, rates)(b)} ({_median(b, *path, ratio):.2f}x)"

    def medians(
        *keys: str, of: tuple[str, ...] = ("devices",), fmt: str = "{:,.0f}"
    ) -> Callable[[dict[str, Any]], str]:
        """Several medians of one scenario (``of``, a path), ``a / b / c``."""
        return lambda b: " / ".join(fmt.format(_median(b, *of, key)) for key in keys)

    return [
        ("push, changes/s", rate("throughput", "push_changes_per_s")),
        ("raw executemany, rows/s", rate("throughput", "raw_executemany_rows_per_s")),
        (
            "push's SQL alone, replayed on the bare driver, changes/s (ratio to its own raw run)",
            with_ratio("floor", "floor_changes_per_s", "floor_ratio"),
        ),
        (
            "push in-process, no HTTP, changes/s (ratio to raw)",
            with_ratio("floor", "in_process_changes_per_s", "in_process_ratio"),
        ),
        (
            "a push of 500, ms: raw batch / the push's SQL alone / in-process / over HTTP "
            "(at 0.5x the raw rate, what the SQL leaves for everything else)",
            _push_budget,
        ),
        (
            "same, as a grid worker, households placed in its grid, changes/s (ratio to a district device)",
            with_ratio("floor.grid_worker", "grid_worker_changes_per_s", "grid_worker_ratio"),
        ),
        (
            "new records, one change each: raw limit / district device / grid worker, changes/s",
            _new_records("one_change"),
        ),
        (
            "new records, two changes each: raw limit / district device / grid worker, changes/s",
            _new_records("two_changes"),
        ),
        ("pull, changes/s", rate("throughput", "pull_changes_per_s")),
        ("raw scan, rows/s", rate("throughput", "raw_scan_rows_per_s")),
        ("pull gzipped, changes/s", rate("throughput", "pull_gzip_changes_per_s")),
        ("pull of 1,000 in 10,000, ms", rate("incremental", "small", "pull_ms", fmt="{:,.1f}")),
        ("pull of 1,000 in 1,000,000, ms", rate("incremental", "big", "pull_ms", fmt="{:,.1f}")),
        (
            "bootstrap snapshot of community c1 (864 households, 6,550 records), ms",
            rate("bootstrap", "snapshot_ms"),
        ),
        ("same, the phone's whole bootstrap, ms", rate("bootstrap", "phone_bootstrap_ms")),
        ("500 devices, one exchange each: p50 / p95 / p99, ms", medians("p50_ms", "p95_ms", "p99_ms")),
        (
            "500 devices p99 min-max, ms",
            lambda b: f"{b['devices']['p99_ms']['min']:,.0f}-{b['devices']['p99_ms']['max']:,.0f}",
        ),
        (
            "same as a push then a pull (two requests): p99 / push p99 / pull p99, ms",
            medians("p99_ms", "push_p99_ms", "pull_p99_ms", of=("devices", "two_requests")),
        ),
        (
            "500 devices errors (both kinds); server peak RSS, MB",
            lambda b: f"{b['devices']['errors']}; {_median(b, 'devices', 'server_peak_rss_mb'):,.0f}",
        ),
        (
            "server / simulator CPU per device, ms: one exchange",
            medians("server_cpu_ms_per_device", "client_cpu_ms_per_device", fmt="{:.1f}"),
        ),
        (
            "same, two requests",
            medians(
                "server_cpu_ms_per_device",
                "client_cpu_ms_per_device",
                of=("devices", "two_requests"),
                fmt="{:.1f}",
            ),
        ),
        ("gridsync client writes, changes/s", rate("peer", "gridsync_changes_per_s")),
        ("pouchdb-server `_bulk_docs`, docs/s", rate("peer", "peer_docs_per_s")),
        ("gridsync pull feed, changes/s", rate("peer", "gridsync_feed_changes_per_s")),
        ("pouchdb-server `_changes`, rows/s", rate("peer", "peer_feed_rows_per_s")),
        (
            "bytes per change written (gridsync / peer)",
            medians(
                "bytes_per_gridsync_change_written", "bytes_per_peer_doc_written", of=("peer",), fmt="{:.0f}"
            ),
        ),
        (
            "bytes per change fed (gridsync / peer)",
            medians("bytes_per_gridsync_feed_change", "bytes_per_peer_feed_row", of=("peer",), fmt="{:.0f}"),
        ),
        (
            "import households + 3 residents each from XLSX (full: 10,000 + 30,000), s: "
            "library read / dry run / apply / push alone",
            lambda b: " / ".join(
                f"{b['spreadsheets'][k]:.2f}"
                for k in ("library_read_s", "dry_run_s", "apply_s", "push_alone_s")
            ),
        ),
        (
            "export them to XLSX, s: library write / export; households dry-run peak MB, a tenth / all "
            "rows: import (openpyxl reading alone)",
            lambda b: _sheet_memory(b["spreadsheets"]),
        ),
        (
            "same household work, s (gridsync / peer)",
            medians("gridsync_workload_s", "peer_workload_s", of=("peer",), fmt="{:.2f}"),
        ),
        (
            "a grid (274 households, 1,864 records) bootstrapped into IndexedDB by the SDK in Chromium, "
            "s (the Python reference client, s)",
            lambda b: (
                f"{_span(b['grid_bootstrap']['browser_s'], '{:.2f}')} "
                f"({_median(b, 'grid_bootstrap', 'reference_s'):.2f})"
            ),
        ),
        (
            "same, KB received gzipped, bodies: Chromium / the reference client",
            lambda b: (
                f"{b['grid_bootstrap']['browser_bytes']['down'] / 1000:,.0f} / "
                f"{b['grid_bootstrap']['reference_bytes'] / 1000:,.0f}"
            ),
        ),
        (
            "same, the page's time, ms: requests / IndexedDB writes / decoding and merging",
            medians("requests_ms", "indexeddb_ms", "rest_ms", of=("grid_bootstrap", "split")),
        ),
        (
            "a day's sync of that phone under emulated 3G (100 changes up, 300 down), s",
            rate("grid_day_3g", "sync_s", fmt="{:.2f}"),
        ),
        (
            "same, KB sent / received (bodies, gzipped)",
            lambda b: (
                f"{b['grid_day_3g']['bytes']['up'] / 1000:.1f} / {b['grid_day_3g']['bytes']['down'] / 1000:.1f}"
            ),
        ),
        (
            "JS SDK's merge in Node on the conformance vectors, changes/s (ratio to the Python engine)",
            with_ratio("sdk_merge", "js_changes_per_s", "js_to_python"),
        ),
        ("Python engine's merge on the same, changes/s", rate("sdk_merge", "python_changes_per_s")),
    ]


def _figure_cells(backends: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Each figure's label and its cell for every backend: a dash where one did not measure it."""
    rows = []
    for label, cell in _figure_rows():
        cells = []
        for found in backends.values():
            try:
                cells.append(cell(found))
            except KeyError:
                cells.append("-")
        rows.append((label, cells))
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md ("Latest results") from a results file: every figure
    per backend (a figure a backend did not measure is a dash), then the targets."""
    backends = results["backends"]
    meta = results["meta"]
    lines = [
        f"Run of commit `{meta['commit']}` on {meta['finished']}, {meta['machine']}, Python "
        f"{meta['python']}, {meta['seconds']:.0f} s in all (`benchmarks/results/full.json`). "
        "Medians with (min-max).",
        "",
        "| figure | " + " | ".join(_LABELS.get(name, name) for name in backends) + " |",
        "| --- |" + " --- |" * len(backends),
    ]
    for label, cells in _figure_cells(backends):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Targets:",
        "",
        "| backend | figure | value | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in results["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:,.2f}"
        lines.append(
            f"| {t['scenario']} | {t['figure']} | {value} | {t['target']} | {'yes' if t['met'] else '**missed**'} |"
        )
    return "\n".join(lines)


_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument("--name", default=None, help="results file name (default: the size)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the results JSON")
    parser.add_argument("--chart", type=Path, default=None, help=f"write the chart here (full size: {CHART})")
    parser.add_argument(
        "--markdown", type=Path, default=None, help="print the docs' tables of this results file and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    size = SIZES[args.size]
    console = Console()
    started = time.perf_counter()
    results = asyncio.run(
        _run(
            size, [b for b in args.backends.split(",") if b], {s for s in args.skip.split(",") if s}, console
        )
    )
    targets = evaluate(results)
    results["meta"] = {
        "size": args.size,
        "commit": _commit(),
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}",
        "seconds": round(time.perf_counter() - started, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results["targets"] = [t.__dict__ for t in targets]
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{args.name or args.size}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(_figures_table(results))
    console.print(_targets_table(targets))
    chart = args.chart or (CHART if args.size == "full" else None)
    if chart is not None:
        from benchmarks.chart import draw

        draw(results, chart)
        console.print(f"chart: {chart}")
    console.print(f"results: {out} ({results['meta']['seconds']}s)")
    missed = [t for t in targets if not t.met]
    for failure in results.get("failed", []):
        console.print(f"[red]FAILED[/] {failure}")
    for t in missed:
        console.print(f"[red]MISSED[/] {t.scenario}: {t.figure} = {t.value:,.2f} (target {t.target})")
    return 1 if missed or results.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
