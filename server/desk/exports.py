"""Any list of the desk out to XLSX (openpyxl, write-only: rows go straight to the file) or CSV
(UTF-8 with a byte order mark, which Excel opens as Chinese), with Chinese headers, filtered as
on the page. ID numbers are masked unless the exporter may read them whole; the caller audits
every export (``audit_export``).
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from schemas.collections import CollectionSpec
from server.access.accounts import AccountStore
from server.access.policy import mask_fields
from server.access.principals import Principal
from server.desk.spreadsheets import column_labels
from server.errors import GridsyncError
from server.inbox.service import ConflictFilter, ConflictInbox
from server.registry.lists import ScopeFilter, scan
from server.registry.reports import elements
from sync.merge import field_values

__all__ = ["EXPORTABLE", "ExportFilter", "Exporter", "audit_export", "export_name", "headers"]

EXPORTABLE = (
    "households",
    "residents",
    "buildings",
    "grids",
    "visits",
    "hazards",
    "requests",
    "checkins",
    "points",
    "tasks",
    "conflicts",
)
# Chinese column names of fields no import reads.
_LABELS: dict[str, str] = {
    "worker": "走访人",
    "visited_at": "走访时间",
    "purpose": "事由",
    "follow_up": "需回访",
    "request_ids": "诉求",
    "area": "具体位置",
    "category": "类别",
    "severity": "严重程度",
    "status": "状态",
    "description": "描述",
    "reported_by": "报告人",
    "reported_at": "报告时间",
    "photos": "照片",
    "fixed_by": "整改人",
    "fixed_at": "整改时间",
    "verified_by": "核验人",
    "verified_at": "核验时间",
    "resident_id": "居民编号",
    "title": "诉求标题",
    "submitted_at": "居民点单（提交时间）",
    "dispatched_to": "社区派单（派往单位）",
    "handler": "物业领单（承办人）",
    "supervisor": "党员督单（督办党员）",
    "due_date": "办理时限",
    "done_at": "办结时间",
    "satisfaction": "群众评单（满意度）",
    "comment": "评价意见",
    "day": "日期",
    "signal": "窗帘信号",
    "checked_by": "查看人",
    "checked_at": "查看时间",
    "kind": "类型",
    "points": "积分",
    "reason": "事由",
    "at": "时间",
    "recorded_by": "登记人",
    "assignee": "责任人",
    "outcome": "结果",
    "answered_by": "办结依据",
    "source": "来源",
    "hazard_id": "隐患编号",
    "request_id": "诉求编号",
    "task_id": "任务编号",
    "household_id": "户编号",
    "building_id": "楼栋编号",
    "grid_id": "网格编号",
    "community_id": "社区编号",
    "name": "名称",
    "code": "代码",
    "leaders": "楼栋长",
    "villages": "原村",
    "address": "地址",
    "office_phone": "办公电话",
    "notes": "备注",
}
_CONFLICT_COLUMNS = (
    ("id", "冲突编号"),
    ("collection", "数据集"),
    ("record_id", "记录编号"),
    ("kinds", "类型"),
    ("fields", "字段"),
    ("status", "状态"),
    ("community_id", "社区"),
    ("grid_id", "网格"),
)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    community: str | None = None
    grid: str | None = None
    building: str | None = None
    status: str | None = None
    tag: str | None = None


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple | set | frozenset):
        return "、".join(sorted(map(str, value)))
    if isinstance(value, bool):
        return "是" if value else "否"
    return value


def headers(spec: CollectionSpec) -> list[tuple[str, str]]:
    """(field, Chinese column name) of every column of a collection's export, the id first."""
    imported = column_labels(spec.name)
    return [("id", imported.get("id", "编号"))] + [
        (name, imported.get(name) or _LABELS.get(name, name)) for name in spec.fields
    ]


class Exporter:
    def __init__(self, collections: Mapping[str, CollectionSpec], inbox: ConflictInbox) -> None:
        self.collections = collections
        self.inbox = inbox
        self.engine = inbox.store.engine

    def columns(self, collection: str) -> list[tuple[str, str]]:
        if collection == "conflicts":
            return list(_CONFLICT_COLUMNS)
        if collection not in EXPORTABLE:
            raise GridsyncError(
                400, "not_exportable", f"{collection} cannot be exported; choose {', '.join(EXPORTABLE)}"
            )
        return headers(self.collections[collection])

    async def rows(
        self, principal: Principal, collection: str, where: ExportFilter
    ) -> AsyncIterator[list[Any]]:
        """The rows of the list as the page filters it, masked for ``principal``."""
        columns = [name for name, _ in self.columns(collection)]
        if collection == "conflicts":
            async for row in self._conflicts(principal, where):
                yield row
            return
        spec = self.collections[collection]
        scope = ScopeFilter(where.community, where.grid, where.building, principal=principal)
        async with self.engine.connect() as connection:
            async for found in scan(connection, collection, scope):
                values = field_values(found.state, spec)
                if where.status is not None and values.get("status") != where.status:
                    continue
                if where.tag is not None and where.tag not in elements(found.state, "tags"):
                    continue
                values = mask_fields(principal, self.collections, collection, values)
                values["id"] = found.record_id
                yield [_cell(values.get(name)) for name in columns]

    async def _conflicts(self, principal: Principal, where: ExportFilter) -> AsyncIterator[list[Any]]:
        cursor: str | None = None
        search = ConflictFilter(community=where.community, grid=where.grid)
        while True:
            page = await self.inbox.search(principal, search, cursor, 500)
            for item in page.conflicts:
                yield [_cell(getattr(item, name, None)) for name, _ in _CONFLICT_COLUMNS]
            if not page.cursor or not page.conflicts:
                return
            cursor = page.cursor

    async def write(
        self, principal: Principal, collection: str, where: ExportFilter, target: IO[bytes], kind: str
    ) -> int:
        """Write the list to ``target`` as ``xlsx`` or ``csv``; returns the rows written."""
        labels = [label for _, label in self.columns(collection)]
        rows = self.rows(principal, collection, where)
        if kind == "csv":
            return await _write_csv(target, labels, rows)
        return await _write_xlsx(target, collection, labels, rows)


async def _write_csv(target: IO[bytes], labels: list[str], rows: AsyncIterator[list[Any]]) -> int:
    text = io.TextIOWrapper(target, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(labels)
    count = 0
    async for row in rows:
        writer.writerow(row)
        count += 1
    text.flush()
    text.detach()
    return count


async def _write_xlsx(
    target: IO[bytes], collection: str, labels: list[str], rows: AsyncIterator[list[Any]]
) -> int:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=collection[:31])
    sheet.append(labels)
    count = 0
    async for row in rows:
        sheet.append(row)
        count += 1
    workbook.save(target)
    return count


async def audit_export(
    accounts: AccountStore,
    principal: Principal,
    collection: str,
    where: ExportFilter,
    rows: int,
    address: str | None = None,
) -> None:
    await accounts.audit(
        principal,
        "export",
        collection,
        address=address,
        community_id=where.community,
        filters={k: v for k, v in vars_of(where).items() if v is not None},
        records=rows,
        at=datetime.datetime.now(datetime.UTC).isoformat(),
    )


def vars_of(where: ExportFilter) -> dict[str, Any]:
    return {name: getattr(where, name) for name in ("community", "grid", "building", "status", "tag")}


def export_name(collection: str, kind: str) -> Path:
    return Path(f"{collection}-{datetime.date.today().isoformat()}.{kind}")
