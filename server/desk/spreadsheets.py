"""Spreadsheets as offices keep them: rows read from XLSX (openpyxl, read-only, streamed) or CSV,
the header found under any title rows, columns mapped to fields by their Chinese (or English)
names, cells turned into typed values a clerk's way (dates as 2024年3月5日, 2024.3.5 or
2024/3/5; 是/否; tags in Chinese), ID numbers checked by their GB 11643 check character.

Nothing here touches the database: ``server/desk/imports.py`` plans and applies the changes.
"""

from __future__ import annotations

import csv
import datetime
import io
import operator
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from schemas.collections import CollectionSpec, FieldSpec

__all__ = [
    "HEADERS",
    "IMPORTABLE",
    "CellError",
    "SheetError",
    "SheetRow",
    "column_labels",
    "id_number_valid",
    "parse_cell",
    "parse_day",
    "read_rows",
]

# Column names offices use, per collection: header -> field ("id" is the record id).
HEADERS: dict[str, dict[str, str]] = {
    "grids": {
        "网格编号": "id",
        "网格名称": "name",
        "所属社区": "community_id",
        "社区编号": "community_id",
        "网格代码": "code",
        "党支部": "party_branch",
        "网格员": "workers",
        "备注": "notes",
    },
    "buildings": {
        "楼栋编号": "id",
        "楼栋名称": "name",
        "楼栋": "name",
        "所属网格": "grid_id",
        "网格编号": "grid_id",
        "楼栋代码": "code",
        "层数": "floors",
        "单元数": "units_count",
        "备注": "notes",
    },
    "households": {
        "户编号": "id",
        "地址": "address",
        "住址": "address",
        "户主": "head_name",
        "户主姓名": "head_name",
        "联系电话": "phone",
        "电话": "phone",
        "人口数": "members_count",
        "家庭人口": "members_count",
        "标签": "tags",
        "人员类别": "tags",
        "楼栋编号": "building_id",
        "所属楼栋": "building_id",
        "单元": "unit",
        "门牌号": "door",
        "房号": "door",
        "是否迁出": "moved_out",
        "迁出日期": "moved_out_on",
        "备注": "notes",
    },
    "residents": {
        "居民编号": "id",
        "户编号": "household_id",
        "所属户": "household_id",
        "姓名": "name",
        "身份证号": "id_number",
        "身份证号码": "id_number",
        "出生年份": "birth_year",
        "出生日期": "birth_year",
        "联系电话": "phone",
        "电话": "phone",
        "标签": "tags",
        "人员类别": "tags",
        "特长": "skills",
        "备注": "notes",
    },
}
IMPORTABLE = tuple(HEADERS)
# Tags as offices write them.
TAG_NAMES: dict[str, str] = {
    "独居老人": "elderly-alone",
    "空巢老人": "empty-nest",
    "空巢": "empty-nest",
    "党员中心户": "central-household",
    "党员户": "party-member-household",
    "退役军人": "veteran",
    "残疾": "disability",
    "残疾人": "disability",
    "五保户": "five-guarantee",
    "低保": "low-income",
    "六岁以下儿童": "child-under-6",
    "志愿者": "volunteer",
    "楼栋长": "building-leader",
    "技能人才": "skilled",
}
_YES = {"是", "yes", "true", "y", "1", "√", "已迁出"}
_NO = {"否", "no", "false", "n", "0", "", "未迁出"}
_DAY = re.compile(r"^\s*(\d{4})\s*[年./-]\s*(\d{1,2})\s*[月./-]\s*(\d{1,2})\s*日?\s*\Z")
_SPLIT = re.compile(r"[,，、;；\s]+")
_HEADER_ROWS = 20
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]\Z")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


class SheetError(Exception):
    """The file as a whole cannot be read: a message for the clerk."""


class CellError(ValueError):
    """One cell cannot be taken: a message for the clerk (the caller adds row and column)."""


@dataclass(slots=True)
class SheetRow:
    number: int  # as the spreadsheet numbers it (1 = first row of the sheet)
    values: dict[str, Any]  # field -> raw cell (None when blank)


def column_labels(collection: str) -> dict[str, str]:
    """field -> the first Chinese header naming it (used as the export's column names)."""
    labels: dict[str, str] = {}
    for header, name in HEADERS.get(collection, {}).items():
        labels.setdefault(name, header)
    return labels


def id_number_valid(value: str) -> bool:
    """Whether an 18-character ID number's last character is its GB 11643 check character."""
    if _ID_NUMBER.match(value) is None:
        return False
    total = sum(map(operator.mul, map(int, value[:17]), _WEIGHTS))
    return "10X98765432"[total % 11] == value[17]


def parse_day(raw: Any) -> datetime.date:
    if isinstance(raw, datetime.datetime):
        return raw.date()
    if isinstance(raw, datetime.date):
        return raw
    text = str(raw).strip()
    found = _DAY.match(text)
    if found is None:
        raise CellError(f"「{text}」不是日期（例如 2024年3月5日、2024.3.5 或 2024/3/5）")
    try:
        return datetime.date(*(int(part) for part in found.groups()))
    except ValueError:
        raise CellError(f"「{text}」不是存在的日期") from None


def _text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, datetime.datetime | datetime.date):
        return raw.isoformat()
    return str(raw).strip()


def _typed(field: FieldSpec, raw: Any) -> Any:
    kind = field.type if field.policy == "scalar" else None
    if field.name == "id_number":
        text = _text(raw).upper()
        if not id_number_valid(text):
            raise CellError(f"身份证号「{text[:6]}…」校验位不对，请核对")
        return text
    if field.name == "birth_year" and not isinstance(raw, int | float):
        return parse_day(raw).year if not re.fullmatch(r"\s*\d{4}\s*", str(raw)) else int(str(raw))
    if kind is datetime.date:
        return parse_day(raw).isoformat()
    if kind is bool:
        text = _text(raw).lower()
        if text in _YES or text in _NO:
            return text in _YES
        raise CellError(f"「{text}」应为 是 或 否")
    return _text(raw)


def parse_cell(spec: CollectionSpec, name: str, raw: Any) -> Any:
    """A cell as the field's value (a set field: a sorted list), checked against its type."""
    field = spec.fields[name]
    if field.policy == "set":
        parts = [p for p in _SPLIT.split(_text(raw)) if p]
        if name == "tags":
            parts = [TAG_NAMES.get(p, p) for p in parts]
        elements = sorted(set(parts))
        for element in elements:
            _checked(field, field.type, element)
        return elements
    value = _typed(field, raw)
    # As the wire carries it (a date as YYYY-MM-DD), so it compares with stored values.
    return msgspec.to_builtins(_checked(field, field.type, value))


def _checked(field: FieldSpec, kind: Any, value: Any) -> Any:
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError:
        pass
    if isinstance(value, str):
        stripped = value.strip()
        try:
            return msgspec.convert(int(float(stripped)), kind)
        except (ValueError, msgspec.ValidationError):
            pass
    choices = f"（可选：{'、'.join(map(str, field.choices))}）" if field.choices else ""
    raise CellError(f"「{value}」不是有效的{field.description or field.name}{choices}")


def _open_rows(path: Path, data: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    head = data.read(8)
    data.seek(0)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        # An OLE2 container: an encrypted (password-protected) XLSX, or an old .xls.
        raise SheetError("文件有密码保护或是旧版 .xls 格式：请去掉密码并另存为 .xlsx 或 .csv")
    if head.startswith(b"PK"):
        yield from _xlsx_rows(data)
        return
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raise SheetError("文件已损坏，无法按 Excel 表格读取")
    yield from _csv_rows(data)


def _xlsx_rows(data: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(data, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise SheetError(f"文件已损坏，无法按 Excel 表格读取（{type(error).__name__}）") from None
    try:
        sheet = workbook.worksheets[0]
        yield from sheet.iter_rows(values_only=True)
    finally:
        workbook.close()


def _csv_rows(data: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    raw = data.read()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise SheetError("无法识别文件的文字编码：请另存为 UTF-8 的 CSV 或 .xlsx")
    if "\x00" in text:
        raise SheetError("文件已损坏或不是表格")
    for row in csv.reader(io.StringIO(text)):
        yield tuple(row)


def _header(
    rows: Iterator[tuple[Any, ...]], mapping: Mapping[str, str]
) -> tuple[int, dict[int, str], list[str]]:
    """(row number of the header, column index -> field, headers not mapped)."""
    for number, row in enumerate(rows, start=1):
        names = [_text(cell).replace(" ", "") if cell is not None else "" for cell in row]
        columns = {i: mapping[name] for i, name in enumerate(names) if name in mapping}
        if len(set(columns.values())) >= 2:
            unmapped = [name for i, name in enumerate(names) if name and i not in columns]
            return number, columns, unmapped
        if number >= _HEADER_ROWS:
            break
    known = "、".join(list(mapping)[:8])
    raise SheetError(f"前 {_HEADER_ROWS} 行里没有找到表头：表头应包含如 {known} 等列名")


def read_rows(
    path: Path,
    data: IO[bytes],
    mapping: Mapping[str, str],
    fill_down: frozenset[str] = frozenset(),
) -> tuple[list[str], Iterator[SheetRow]]:
    """(headers not mapped, the data rows). Blank rows are skipped; a blank cell of a
    ``fill_down`` field takes the value above it (a merged cell spanning several rows)."""
    rows = _open_rows(path, data)
    number, columns, unmapped = _header(rows, mapping)

    def data_rows() -> Iterator[SheetRow]:
        above: dict[str, Any] = {}
        for offset, row in enumerate(rows, start=number + 1):
            values = {
                name: (None if cell is None or (isinstance(cell, str) and not cell.strip()) else cell)
                for i, cell in enumerate(row)
                if (name := columns.get(i)) is not None
            }
            if all(v is None for v in values.values()):
                continue
            for name in fill_down:
                if values.get(name) is None and name in above:
                    values[name] = above[name]
                elif values.get(name) is not None:
                    above[name] = values[name]
            yield SheetRow(offset, values)

    return unmapped, data_rows()
