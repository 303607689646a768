"""The import's whole-file checks on both backends: a record or an ID number on two rows of one
file is wrong (both rows named) and nothing is imported; the apply reads the file once, keeps its
plan until the last row is checked, and shows its progress (the CLI's bars)."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from sqlalchemy import func, select

from server.db.engine import create_engine
from server.db.tables import changes
from server.desk import cli, imports
from server.desk.imports import Importer, ImportReport
from server.desk.service import Desk
from server.settings import Settings
from server.sync.store import SyncStore
from sync.client import Replica
from tests.desk.test_spreadsheets import ADMIN, run
from tests.domain.district import Client, build

ROWS = 1_200  # more than two of the importer's chunks of 500


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    lines = [",".join(header), *(",".join("" if v is None else str(v) for v in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _households(count: int = ROWS) -> list[list[Any]]:
    return [[f"h{100 + n}", "b1", "1", str(1000 + n), f"户主{n}"] for n in range(count)]


HOUSEHOLD_COLUMNS = ["户编号", "所属楼栋", "单元", "门牌号", "户主姓名"]


def _errors(report: ImportReport) -> list[tuple[int, str]]:
    return [(r.row, r.message) for r in report.rows if r.action == "error"]


def _refused_whole(settings: Settings, path: Path, collection: str) -> list[tuple[int, str]]:
    """The dry run's wrong rows, once the apply was seen to write nothing."""
    preview, before = run(settings, path, collection, apply=False)
    applied, after = run(settings, path, collection, apply=True)
    assert (after, applied.applied, applied.errors) == (before, False, preview.errors)
    assert _errors(applied) == _errors(preview)
    return _errors(preview)


def test_a_household_on_two_rows_is_refused_naming_both(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    rows = _households()
    rows.append(["h105", "b1", "2", "9999", "又一户"])  # row 1202: h105 is row 7 (header on row 1)
    rows.insert(1, ["h100", "b1", "3", "8888", "重复"])  # row 3 repeats row 2
    errors = _refused_whole(settings, _csv(tmp_path / "twice.csv", HOUSEHOLD_COLUMNS, rows), "households")
    assert [row for row, _ in errors] == [3, ROWS + 3]
    assert "第 3 行与第 2 行是同一条记录（户编号「h100」相同）" in errors[0][1]
    assert "第 1203 行与第 8 行" in errors[1][1]


def test_a_household_named_by_its_door_twice_is_refused(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    header = ["所属楼栋", "单元", "门牌号", "户主姓名"]
    rows = [["b1", "1", "101", "甲"], ["b1", "2", "101", "乙"], ["b1", "1", "101", "丙"]]
    errors = _refused_whole(settings, _csv(tmp_path / "doors.csv", header, rows), "households")
    assert errors == [(4, "第 4 行与第 2 行是同一条记录（楼栋、单元、门牌号相同）：每条记录只能占一行")]


def test_an_id_number_or_a_resident_on_two_rows_is_refused(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    header = ["户编号", "姓名", "身份证号"]
    rows = [
        ["h1", "张桂兰", "370302194203150027"],
        ["h1", "李建国", "370302195607080015"],
        ["h2", "王秀英", "370302194203150027"],  # another resident, the first one's ID number
        ["h1", "李建国", None],  # the second one again, by household and name
    ]
    errors = _refused_whole(settings, _csv(tmp_path / "people.csv", header, rows), "residents")
    assert [row for row, _ in errors] == [4, 5]
    assert errors[0][1].startswith("第 4 行与第 2 行的身份证号「370302…」相同")
    assert "第 5 行与第 3 行是同一条记录（同一户、同名" in errors[1][1]
    assert not any("370302194203150027" in message for _, message in errors)


async def _apply(
    settings: Settings, path: Path, seen: list[tuple[str, int, int | None]]
) -> tuple[ImportReport, int]:
    engine = create_engine(settings.database_url)
    try:
        desk = Desk(SyncStore(engine, settings), settings)
        importer = Importer(desk, "households", principal=ADMIN, progress=lambda *step: seen.append(step))
        with path.open("rb") as data:
            report = await importer.apply(path, data)
        async with engine.connect() as connection:
            logged = (await connection.execute(select(func.count()).select_from(changes))).scalar_one()
    finally:
        await engine.dispose()
    return report, logged


def test_apply_reads_once_and_writes_only_a_whole_file(
    client: Client,
    settings: Settings,
    phone: Callable[[str], Replica],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build(phone("office"), client)
    opened: list[Path] = []
    read_rows = imports.read_rows

    def counted(path: Path, *args: Any) -> tuple[list[str], Iterator[Any]]:
        opened.append(path)
        return read_rows(path, *args)

    monkeypatch.setattr(imports, "read_rows", counted)
    rows = _households()
    rows[-1][1] = "b99"  # the last row, after two chunks were planned
    seen: list[tuple[str, int, int | None]] = []
    path = _csv(tmp_path / "late.csv", HOUSEHOLD_COLUMNS, rows)
    _, before = run(settings, path, "households", apply=False)
    opened.clear()
    refused, logged = asyncio.run(_apply(settings, path, seen))
    assert (refused.errors, refused.applied, logged, len(opened)) == (1, False, before, 1)
    assert seen[-1] == ("read", ROWS, None)
    assert not [s for s in seen if s[0] == "write"]
    rows[-1][1] = "b1"
    seen.clear()
    applied, logged = asyncio.run(
        _apply(settings, _csv(tmp_path / "fixed.csv", HOUSEHOLD_COLUMNS, rows), seen)
    )
    assert (applied.created, applied.errors, applied.applied, len(opened)) == (ROWS, 0, True, 2)
    assert logged - before == applied.changes == ROWS * 4  # four fields a row
    assert [s for s in seen if s[0] == "write"] == [("write", n, ROWS) for n in (0, 500, 1000, ROWS)]


def test_the_cli_shows_its_bars_and_the_counts(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    path = _csv(tmp_path / "cli.csv", HOUSEHOLD_COLUMNS, _households())
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    args = argparse.Namespace(
        file=str(path), collection="households", community=None, mapping=None, dry_run=False, verbose=False
    )

    async def main() -> int:
        engine = create_engine(settings.database_url)
        try:
            return await cli._import(engine, settings, args, console)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 0
    shown = Text.from_ansi(out.getvalue()).plain
    # Both bars (reading, then writing), each at its end.
    assert [t for t in ("读取并核对", "写入", f"{ROWS}/{ROWS}") if t not in shown] == [], shown
    assert f"已导入：新建 {ROWS}，修改 0，无变化 0，错误 0" in shown
