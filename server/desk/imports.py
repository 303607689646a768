"""Importing the office's books: a dry run that says row by row what would be created, changed
or is wrong, then the same plan applied as ordinary changes.

The file is read as a stream and planned 500 rows at a time: each chunk's records are looked up
in one query and compared with the cells, so memory follows the chunk, not the file. A cell
equal to the stored value writes nothing (importing the same file twice changes nothing; one
changed cell is one change); a different cell is a ``set`` whose ``pred`` is the heads the
import read, so a phone's offline edit of the same field that arrives later is concurrent and
shows as a conflict, never overwritten. A blank cell leaves the stored value alone.

Apply reads the file once: each chunk's plan goes to a spool on disk (``imports_spool.py``) and
is pushed only once the whole file was read and no row is wrong, so nothing is half-imported
because of bad input. A record or an ID number on two rows of one file is wrong (the spool
remembers which row named each).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import msgspec
from sqlalchemy import select

from schemas.collections import CollectionSpec
from schemas.protocol import Change
from server.access.personal import reveal
from server.access.principals import Principal
from server.db.tables import records
from server.desk.imports_spool import Planned, Spool
from server.desk.service import Desk
from server.desk.spreadsheets import (
    HEADERS,
    CellError,
    SheetError,
    SheetRow,
    column_labels,
    parse_cell,
    read_rows,
)
from server.errors import GridsyncError
from server.registry.lists import ScopeFilter, scan
from server.registry.reports import elements
from sync.merge import RecordState, record_heads, scalar_value, state_codec

__all__ = ["ImportReport", "Importer", "Progress", "RowOutcome", "default_mapping"]

Action = Literal["create", "change", "same", "error"]
# Told as the import goes: the stage ("read": rows read and checked; "write": rows written), the
# rows done, and the rows in all when known.
Progress = Callable[[Literal["read", "write"], int, int | None], None]
_CHUNK = 500
_LISTED = 500  # rows listed in a report besides the wrong ones (all are counted)
_PARENT = {
    "grids": "community_id",
    "buildings": "grid_id",
    "households": "building_id",
    "residents": "household_id",
}
_PARENT_NAMES = {"community_id": "社区", "grid_id": "网格", "building_id": "楼栋", "household_id": "户"}
# How a row without an id names its record, for the message when two rows name the same one.
_NAMED_BY = {"households": "楼栋、单元、门牌号相同", "residents": "同一户、同名，或身份证号相同"}
_FILL_DOWN = {"residents": frozenset({"household_id"}), "households": frozenset({"building_id"})}


@dataclass(slots=True)
class RowOutcome:
    row: int
    record_id: str | None
    action: Action
    fields: list[str] = field(default_factory=list)
    message: str = ""


@dataclass(slots=True)
class ImportReport:
    collection: str
    applied: bool = False
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: int = 0
    changes: int = 0
    refused: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    rows: list[RowOutcome] = field(default_factory=list)

    def add(self, outcome: RowOutcome) -> None:
        if outcome.action == "create":
            self.created += 1
        elif outcome.action == "change":
            self.changed += 1
        elif outcome.action == "same":
            self.unchanged += 1
        else:
            self.errors += 1
        if len(self.rows) < _LISTED or outcome.action == "error":
            self.rows.append(outcome)


def default_mapping(spec: CollectionSpec) -> dict[str, str]:
    """Chinese headers, and each field's own name, mapped to fields."""
    return {**{name: name for name in spec.fields}, "id": "id", "编号": "id", **HEADERS.get(spec.name, {})}


def _chunks(rows: Iterator[SheetRow]) -> Iterator[list[SheetRow]]:
    chunk: list[SheetRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _derived_id(collection: str, values: Mapping[str, Any]) -> str | None:
    if collection == "households" and values.get("building_id") and values.get("door"):
        return f"{values['building_id']}-u{values.get('unit') or 1}-{values['door']}"
    if collection == "residents" and values.get("household_id") and values.get("name"):
        digest = hashlib.sha256(f"{values['household_id']}:{values['name']}".encode()).hexdigest()
        return f"res-{digest[:20]}"
    return None


class Importer:
    """Plans (``dry_run``) and applies (``apply``) one file into one collection."""

    def __init__(
        self,
        desk: Desk,
        collection: str,
        *,
        principal: Principal | None = None,
        community: str | None = None,
        mapping: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        if collection not in HEADERS:
            raise GridsyncError(
                400, "not_importable", f"{collection} cannot be imported; import {', '.join(HEADERS)}"
            )
        self.desk = desk
        self.spec = desk.collections[collection]
        self.principal = principal
        self.community = community
        self.mapping = {**default_mapping(self.spec), **(mapping or {})}
        self.progress: Progress = progress or (lambda stage, done, total: None)
        self._residents: dict[tuple[Any, Any], str] | None = None

    async def dry_run(self, path: Path, data: IO[bytes]) -> ImportReport:
        """What applying the file would do, row by row; writes nothing."""
        return await self._run(path, data, apply=False)

    async def apply(self, path: Path, data: IO[bytes]) -> ImportReport:
        """One pass over the file, each chunk checked and its plan spooled; the plan is written
        only when no row of the whole file is wrong."""
        return await self._run(path, data, apply=True)

    async def _run(self, path: Path, data: IO[bytes], *, apply: bool) -> ImportReport:
        report = ImportReport(self.spec.name)
        with Spool() as spool:
            read = 0
            try:
                report.unmapped, rows = read_rows(
                    path, data, self.mapping, _FILL_DOWN.get(self.spec.name, frozenset())
                )
                for chunk in _chunks(rows):
                    planned = await self._chunk(chunk, report, spool)
                    if apply and not report.errors:
                        spool.keep(planned)
                    read += len(chunk)
                    self.progress("read", read, None)
            except SheetError as error:
                report.errors += 1
                report.rows.append(RowOutcome(0, None, "error", message=str(error)))
            if apply and not report.errors:
                await self._write(spool, report)
        return report

    async def _write(self, spool: Spool, report: ImportReport) -> None:
        """Push the spooled plan, a chunk at a time, as ordinary changes."""
        report.applied = True
        written = 0
        self.progress("write", 0, spool.rows)
        for chunk in spool.kept():
            planned: list[Change] = []
            for record_id, to_write, seen in chunk:
                planned += self.desk.plan(self.principal, self.spec.name, record_id, to_write, seen)
            pushed = await self.desk.push(self.principal, planned)
            report.refused += [f"{r.id}: {r.message}" for r in pushed.refused]
            written += len(chunk)
            self.progress("write", written, spool.rows)

    async def _residents_index(self) -> dict[tuple[Any, Any], str]:
        """Existing residents by (household, name) and by ID number: a phone's resident is
        matched, not duplicated."""
        if self._residents is None:
            self._residents = {}
            where = ScopeFilter(self.community, principal=self.principal)
            async with self.desk.store.engine.connect() as connection:
                async for row in scan(connection, "residents", where):
                    household, name = scalar_value(row.state, "household_id"), scalar_value(row.state, "name")
                    self._residents[(household, name)] = row.record_id
                    id_number = reveal("residents", "id_number", scalar_value(row.state, "id_number"))
                    if id_number:
                        self._residents[("id", id_number)] = row.record_id
        return self._residents

    async def _parsed(self, row: SheetRow) -> tuple[str | None, dict[str, Any], list[str]]:
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, raw in row.values.items():
            if raw is None:
                continue
            if name == "id":
                values["id"] = str(raw).strip()
                continue
            try:
                values[name] = parse_cell(self.spec, name, raw)
            except CellError as error:
                label = next((h for h, f in self.mapping.items() if f == name and not h.isascii()), name)
                problems.append(f"「{label}」列：{error}")
        record_id = values.pop("id", None)
        if record_id is None and self.spec.name == "residents":
            index = await self._residents_index()
            record_id = index.get(("id", values.get("id_number"))) or index.get(
                (values.get("household_id"), values.get("name"))
            )
        record_id = record_id or _derived_id(self.spec.name, values)
        if record_id is None and not problems:
            problems.append("缺少编号列（或能确定这一行是哪条记录的列，如楼栋、单元、门牌号）")
        return record_id, values, problems

    async def _chunk(self, chunk: Sequence[SheetRow], report: ImportReport, spool: Spool) -> list[Planned]:
        """Judge a chunk's rows into ``report``; the plan of its rows that write something."""
        parsed = [(row, *await self._parsed(row)) for row in chunk]
        parent = _PARENT[self.spec.name]
        keys = {(self.spec.name, rid) for _, rid, _, _ in parsed if rid}
        wanted = self.spec.fields[parent].ref
        assert wanted is not None
        keys |= {(wanted, v[parent]) for _, _, v, _ in parsed if v.get(parent)}
        rows = await self._load(keys)
        twice = self._named_twice(spool, parsed)
        planned: list[Planned] = []
        for row, record_id, values, problems in parsed:
            problems += self._check_parent(values, parent, wanted, rows)
            problems += twice.get(row.number, [])
            if problems or record_id is None:
                report.add(RowOutcome(row.number, record_id, "error", message="；".join(problems)))
                continue
            state = rows.get((self.spec.name, record_id), (None, None))[0]
            to_write, seen = self._diff(values, state)
            changed = sorted(to_write)
            report.changes += self._count(to_write, state)
            if to_write:
                planned.append((record_id, to_write, seen))
            action: Action = "same" if not changed else "create" if state is None else "change"
            report.add(RowOutcome(row.number, record_id, action, changed))
        return planned

    def _named_twice(
        self, spool: Spool, parsed: Sequence[tuple[SheetRow, str | None, dict[str, Any], list[str]]]
    ) -> dict[int, list[str]]:
        """The rows naming a record, or an ID number, that an earlier row of the file named: wrong,
        with both rows' numbers (which of the two is meant is the clerk's to say)."""
        found: dict[int, list[str]] = {}
        by_id = spool.claim("id", [(rid, row.number) for row, rid, _, _ in parsed if rid is not None])
        for row, record_id, _, _ in parsed:
            if row.number in by_id:
                how = (
                    f"{column_labels(self.spec.name).get('id', '编号')}「{record_id}」相同"
                    if row.values.get("id") is not None
                    else _NAMED_BY.get(self.spec.name, f"编号「{record_id}」相同")
                )
                found[row.number] = [
                    f"第 {row.number} 行与第 {by_id[row.number]} 行是同一条记录（{how}）：每条记录只能占一行"
                ]
        numbers = [
            (v["id_number"], row.number)
            for row, _, v, _ in parsed
            if isinstance(v.get("id_number"), str) and row.number not in found
        ]
        for row_number, earlier in spool.claim("id_number", numbers).items():
            shown = next(n for n, r in numbers if r == row_number)[:6]
            found[row_number] = [
                f"第 {row_number} 行与第 {earlier} 行的身份证号「{shown}…」相同：一个身份证号只能属于一位居民"
            ]
        return found

    def _count(self, to_write: Mapping[str, Any], state: RecordState | None) -> int:
        """How many changes writing ``to_write`` takes (a set field: one per element added or removed)."""
        count = 0
        for name, value in to_write.items():
            if self.spec.fields[name].policy == "set":
                count += len(set(value) ^ (elements(state, name) if state is not None else set()))
            else:
                count += 1
        return count

    def _check_parent(
        self,
        values: Mapping[str, Any],
        parent: str,
        wanted: str,
        rows: Mapping[tuple[str, str], tuple[RecordState | None, str | None]],
    ) -> list[str]:
        target = values.get(parent)
        if target is None:
            return []
        found = rows.get((wanted, target))
        if found is None:
            return [f"{_PARENT_NAMES[parent]}「{target}」不存在，请先导入或核对编号"]
        community = found[1]
        if self.community is not None and community not in (None, self.community):
            return [f"{_PARENT_NAMES[parent]}「{target}」不属于社区 {self.community}"]
        return []

    async def _load(
        self, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[RecordState | None, str | None]]:
        """(state, community) of each existing record among ``keys``, in one query per collection;
        the state only of the imported collection's records (of a parent, that it exists)."""
        found: dict[tuple[str, str], tuple[RecordState | None, str | None]] = {}
        by_collection: dict[str, list[str]] = {}
        for collection, record_id in keys:
            by_collection.setdefault(collection, []).append(record_id)
        async with self.desk.store.engine.connect() as connection:
            for collection, ids in by_collection.items():
                own = collection == self.spec.name
                columns = [records.c.record_id, records.c.community_id, *([records.c.state] if own else [])]
                query = ScopeFilter(principal=self.principal).apply(
                    select(*columns).where(records.c.collection == collection, records.c.record_id.in_(ids))
                )
                for row in await connection.execute(query):
                    state = state_codec.decode(row.state) if own else None
                    found[(collection, row.record_id)] = (state, row.community_id)
        return found

    def _diff(
        self, values: Mapping[str, Any], state: RecordState | None
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The fields to write to make the record hold ``values``, and the heads read (``seen``)."""
        to_write: dict[str, Any] = {}
        seen: dict[str, list[str]] = {}
        heads = record_heads(state) if state is not None else []
        for name, value in values.items():
            if self.spec.fields[name].policy == "set":
                current = sorted(elements(state, name)) if state is not None else []
                if current != value:
                    to_write[name] = value
                    for head in heads:
                        if head.field == name:
                            seen.setdefault(f"{name}:{head.value}", []).append(head.id)
                continue
            # A stored ID number is sealed (server/access/personal.py): compare it opened.
            stored = reveal(self.spec.name, name, scalar_value(state, name)) if state is not None else None
            if state is not None and msgspec.to_builtins(stored) == value:
                continue
            to_write[name] = value
            seen[name] = [h.id for h in heads if h.field == name]
        return to_write, seen
