"""Cells read the way Chinese offices write them: dates, yes/no, tags, ID check characters."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest

from schemas.collections import COLLECTIONS
from server.desk.imports import default_mapping
from server.desk.spreadsheets import CellError, SheetError, id_number_valid, parse_cell, parse_day, read_rows

HOUSEHOLDS = COLLECTIONS["households"]


@pytest.mark.parametrize(
    "text",
    [
        "2024年3月5日",
        "2024.3.5",
        "2024/3/5",
        "2024-03-05",
        " 2024 年 03 月 05 日 ",
        datetime.date(2024, 3, 5),
    ],
)
def test_the_usual_chinese_dates(text: object) -> None:
    assert parse_day(text) == datetime.date(2024, 3, 5)


@pytest.mark.parametrize("text", ["2024年2月30日", "三月五日", "5/3/2024"])
def test_a_wrong_date_is_a_clerks_message(text: str) -> None:
    with pytest.raises(CellError, match="日期"):
        parse_day(text)


def test_id_numbers_are_checked_by_gb_11643() -> None:
    assert id_number_valid("11010519491231002X")
    assert id_number_valid("370302194203150027")
    assert not id_number_valid("370302194203150028")
    assert not id_number_valid("37030219420315002")


def test_cells_take_their_fields_type() -> None:
    assert parse_cell(HOUSEHOLDS, "moved_out", "是") is True
    assert parse_cell(HOUSEHOLDS, "moved_out", "否") is False
    assert parse_cell(HOUSEHOLDS, "members_count", 3.0) == 3
    assert parse_cell(HOUSEHOLDS, "members_count", "4") == 4
    assert parse_cell(HOUSEHOLDS, "phone", 13800000001) == "13800000001"
    # A full-width comma, as a Chinese keyboard types it, separates like a comma.
    assert parse_cell(HOUSEHOLDS, "tags", "独居老人、退役军人\uff0cveteran") == ["elderly-alone", "veteran"]
    assert parse_cell(HOUSEHOLDS, "moved_out_on", "2024.3.5") == "2024-03-05"
    with pytest.raises(CellError):
        parse_cell(HOUSEHOLDS, "members_count", "三口人")


def test_a_gb18030_csv_with_title_rows_and_blank_rows() -> None:
    text = "幸福社区住户台账\n\n户编号,地址,户主\nh1,1号楼101,张三\n,,\nh2,1号楼102,李四\n"
    unmapped, rows = read_rows(Path("x.csv"), io.BytesIO(text.encode("gb18030")), default_mapping(HOUSEHOLDS))
    assert unmapped == []
    assert [(r.number, r.values["id"], r.values["head_name"]) for r in rows] == [
        (4, "h1", "张三"),
        (6, "h2", "李四"),
    ]


def test_a_file_without_a_header_says_so() -> None:
    with pytest.raises(SheetError, match="表头"):
        read_rows(Path("x.csv"), io.BytesIO(b"a,b\n1,2\n"), default_mapping(HOUSEHOLDS))
