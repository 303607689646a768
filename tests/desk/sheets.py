"""Spreadsheets as a community office keeps them, for the desk's tests and docs/samples/: a
merged title row, a blank row, Chinese headers, Chinese dates, tags in Chinese, a household's
cell merged over its members' rows. ``python -m tests.desk.sheets`` writes the samples."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook

HOUSEHOLD_HEADERS = [
    "户编号",
    "所属楼栋",
    "单元",
    "门牌号",
    "户主姓名",
    "联系电话",
    "人口数",
    "人员类别",
    "迁出日期",
]
HOUSEHOLDS: list[list[Any]] = [
    ["h10", "b1", "1", "201", "张桂兰", "13800000001", 1, "独居老人", None],
    ["h11", "b1", "1", "202", "李建国", "13800000002", 3, "党员中心户、退役军人", None],
    ["h12", "b2", "2", "301", "王秀英", 13800000003, 2, "空巢老人", "2024年3月5日"],
]
RESIDENT_HEADERS = ["户编号", "姓名", "身份证号", "出生日期", "联系电话", "人员类别"]
RESIDENTS: list[list[Any]] = [
    ["h10", "张桂兰", "370302194203150027", "1942.3.15", "13800000001", None],
    ["h11", "李建国", "370302195607080015", "1956/7/8", "13800000002", "志愿者"],
    [None, "李小明", "370302198811020013", datetime.date(1988, 11, 2), None, None],  # merged 户编号
]


def write_sheet(
    path: Path, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], merge_first: bool = False
) -> Path:
    """An XLSX with a merged title row, a blank row, the header and ``rows`` (a blank row after
    the first); ``merge_first`` merges the first column's cell over a row and the one below."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append([title])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(headers))
    sheet.append([])
    sheet.append(list(headers))
    for index, row in enumerate(rows):
        sheet.append(list(row))
        if index == 0:
            sheet.append([])
    if merge_first:
        last = sheet.max_row
        sheet.merge_cells(start_row=last - 1, start_column=1, end_row=last, end_column=1)
    workbook.save(path)
    return path


def households_sheet(path: Path, rows: Sequence[Sequence[Any]] = HOUSEHOLDS) -> Path:
    return write_sheet(path, "幸福社区住户台账（2024年）", HOUSEHOLD_HEADERS, rows)


def residents_sheet(path: Path, rows: Sequence[Sequence[Any]] = RESIDENTS) -> Path:
    return write_sheet(path, "幸福社区居民台账", RESIDENT_HEADERS, rows, merge_first=True)


if __name__ == "__main__":
    samples = Path(__file__).resolve().parents[2] / "docs" / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    households_sheet(samples / "households.xlsx")
    residents_sheet(samples / "residents.xlsx")
    print(f"wrote {samples}/households.xlsx and residents.xlsx")
