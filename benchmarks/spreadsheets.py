"""The office's books in and out: import households and their residents from XLSX (dry run,
then apply) and export them, beside the same rows read and written by openpyxl alone in the
same run. Target: an apply (one pass over the file, its plan spooled, then pushed) within 3x the
library's read plus the push of the same changes (the time the apply spends inside its own
pushes is reported beside it); the dry run's peak memory flat in the file's
size (traced at a tenth of the rows and at all of them), and the apply's beside it (its plan
spooled to disk, its pushes discarded).
"""

from __future__ import annotations

import io
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook, load_workbook

from benchmarks.harness import Database, fresh_database, in_process_store
from schemas.protocol import Change, SetChange
from server.access.principals import Principal
from server.desk.exports import Exporter, ExportFilter
from server.desk.imports import Importer
from server.desk.service import Desk, Written
from server.inbox.service import ConflictInbox
from server.settings import Settings
from sync.hlc import format_hlc

__all__ = ["spreadsheets"]

BUILDINGS = 100
_HOUSEHOLD_HEADERS = ["户编号", "所属楼栋", "单元", "门牌号", "户主姓名", "联系电话", "人口数", "人员类别"]
_RESIDENT_HEADERS = ["户编号", "姓名", "身份证号", "出生日期", "联系电话"]
_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_number(n: int) -> str:
    """A valid ID number of its own for each ``n`` below 21,000 times 100 (the birth date and
    sequence repeat every 21,000, the region then moves on: a file may not repeat one)."""
    body = f"{370302 + n // 21_000}{1940 + n % 60}{1 + n % 12:02d}{1 + n % 28:02d}{n % 1000:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _W, strict=True)) % 11]


def _household_rows(households: int) -> Iterator[list[Any]]:
    for n in range(households):
        building = f"b{n % BUILDINGS}"
        yield [
            f"h{n}",
            building,
            str(1 + n % 4),
            str(101 + n % 600),
            f"户主{n}",
            f"138{n:08d}",
            3,
            "独居老人" if n % 9 == 0 else None,
        ]


def _resident_rows(households: int, per_household: int) -> Iterator[list[Any]]:
    for n in range(households * per_household):
        yield [
            f"h{n // per_household}",
            f"居民{n}",
            _id_number(n),
            f"{1940 + n % 60}年{1 + n % 12}月{1 + n % 28}日",
            None,
        ]


def _write(path: Path, headers: list[str], rows: Iterator[list[Any]]) -> float:
    """Write with openpyxl alone (write-only): the library's own time for these rows."""
    start = time.perf_counter()
    book = Workbook(write_only=True)
    sheet = book.create_sheet("台账")
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return time.perf_counter() - start


def _read(path: Path) -> float:
    """Read every row with openpyxl alone (read-only): the library's own time."""
    start = time.perf_counter()
    book = load_workbook(path, read_only=True, data_only=True)
    for _ in book.worksheets[0].iter_rows(values_only=True):
        pass
    book.close()
    return time.perf_counter() - start


def _tree() -> list[Change]:
    changes: list[Change] = []
    tick = iter(range(1, 10**9))

    def put(collection: str, record_id: str, **values: Any) -> None:
        for name, value in values.items():
            hlc = format_hlc(1_764_000_000_000 + next(tick), 0, "bench")
            changes.append(
                SetChange(
                    id=str(uuid.uuid4()),
                    collection=collection,
                    record_id=record_id,
                    hlc=hlc,
                    field=name,
                    value=value,
                )
            )

    put("communities", "c1", name="幸福社区")
    put("grids", "g1", community_id="c1", name="一网格")
    for b in range(BUILDINGS):
        put("buildings", f"b{b}", grid_id="g1", name=f"{b + 1}号楼")
    return changes


class _Discard(Desk):
    """A desk that pushes nothing: the apply's own memory, without the store's."""

    async def push(self, principal: Any, planned: Any) -> Written:
        return Written([], [])


class _Timed(Desk):
    """The store's desk, timing its pushes: how much of an apply is the push itself."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pushing = 0.0

    async def push(self, principal: Any, planned: Any) -> Written:
        start = time.perf_counter()
        try:
            return await super().push(principal, planned)
        finally:
            self.pushing += time.perf_counter() - start


class _Capture(Desk):
    """A desk that keeps what an apply would push, to push it alone elsewhere."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.captured: list[Change] = []

    async def push(self, principal: Any, planned: Any) -> Written:
        self.captured += planned
        return Written(list(planned), [])


async def _import(desk: Desk, path: Path, collection: str, *, apply: bool) -> tuple[float, int]:
    importer = Importer(desk, collection)
    with path.open("rb") as data:
        start = time.perf_counter()
        report = await (importer.apply(path, data) if apply else importer.dry_run(path, data))
    assert report.errors == 0, [row for row in report.rows if row.action == "error"][:3]
    return time.perf_counter() - start, report.changes


async def _traced(desk: Desk, path: Path, collection: str) -> tuple[float, float, float]:
    """Peak traced memory (MB) of a dry run, of an apply whose pushes are discarded, and of
    openpyxl reading the same file alone."""
    peaks = []
    discard = _Discard(desk.store, desk.settings)
    for work in ("dry run", "apply", "library"):
        tracemalloc.start()
        try:
            if work == "library":
                _read(path)
            else:
                await _import(discard, path, collection, apply=work == "apply")
            peaks.append(tracemalloc.get_traced_memory()[1] / 1e6)
        finally:
            tracemalloc.stop()
    return peaks[0], peaks[1], peaks[2]


async def _push_alone(database: Database, changes: list[Change]) -> float:
    async with in_process_store(database) as store:
        await store.writer.push(None, "bench-tree", _tree())
        start = time.perf_counter()
        for offset in range(0, len(changes), 500):
            await store.writer.push(None, "bench-import", changes[offset : offset + 500])
        return time.perf_counter() - start


async def _export(desk: Desk, collection: str, target: IO[bytes]) -> float:
    principal = Principal("bench", "bench", "district_admin")
    exporter = Exporter(desk.collections, ConflictInbox(desk.store.engine, desk.store))
    start = time.perf_counter()
    await exporter.write(principal, collection, ExportFilter(), target, "xlsx")
    return time.perf_counter() - start


async def spreadsheets(backend: str, workdir: Path, households: int, per_household: int) -> dict[str, Any]:
    files = {
        "households": workdir / "households.xlsx",
        "residents": workdir / "residents.xlsx",
        "households-tenth": workdir / "households-tenth.xlsx",
    }
    lib_write = _write(files["households"], _HOUSEHOLD_HEADERS, _household_rows(households))
    lib_write += _write(files["residents"], _RESIDENT_HEADERS, _resident_rows(households, per_household))
    _write(files["households-tenth"], _HOUSEHOLD_HEADERS, _household_rows(households // 10))
    result: dict[str, Any] = {"households": households, "residents": households * per_household}
    async with fresh_database(backend, workdir, "sheets") as database, in_process_store(database) as store:
        await store.writer.push(None, "bench-tree", _tree())
        desk = _Timed(store, Settings(database_url=database.url))
        capture = _Capture(store, desk.settings)
        # Traced first, while every row is one to create: the plan at its largest.
        peak_tenth, apply_tenth, library_tenth = await _traced(desk, files["households-tenth"], "households")
        peak_full, apply_full, library_full = await _traced(desk, files["households"], "households")
        dry = apply = apply_push = lib_read = 0.0
        for collection in ("households", "residents"):
            await _import(capture, files[collection], collection, apply=True)  # what the push will be
            # The library's read just before the dry run and just after the apply, averaged: a
            # shared machine's speed drifts over a run, so the baseline is taken beside the work.
            before = _read(files[collection])
            seconds, _ = await _import(desk, files[collection], collection, apply=False)
            dry += seconds
            pushed = desk.pushing
            seconds, changes = await _import(desk, files[collection], collection, apply=True)
            apply += seconds
            apply_push += desk.pushing - pushed
            lib_read += (before + _read(files[collection])) / 2
            result[f"{collection}_changes"] = changes
        again, unchanged = await _import(desk, files["households"], "households", apply=True)
        export = 0.0
        for collection in ("households", "residents"):
            export += await _export(desk, collection, io.BytesIO())
    async with fresh_database(backend, workdir, "sheets-push") as database:
        push = await _push_alone(database, capture.captured)
    result |= {
        "library_read_s": round(lib_read, 3),
        "library_write_s": round(lib_write, 3),
        "dry_run_s": round(dry, 3),
        "apply_s": round(apply, 3),
        "apply_push_s": round(apply_push, 3),
        "push_alone_s": round(push, 3),
        "apply_budget_s": round(3 * lib_read + push, 3),
        "apply_ratio": round(apply / (3 * lib_read + push), 3),
        "second_import_s": round(again, 3),
        "second_import_changes": unchanged,
        "export_s": round(export, 3),
        "export_ratio": round(export / lib_write, 3),
        "dry_run_peak_mb_tenth": round(peak_tenth, 1),
        "dry_run_peak_mb_full": round(peak_full, 1),
        "apply_peak_mb_tenth": round(apply_tenth, 1),
        "apply_peak_mb_full": round(apply_full, 1),
        "library_read_peak_mb_tenth": round(library_tenth, 1),
        "library_read_peak_mb_full": round(library_full, 1),
    }
    return result
