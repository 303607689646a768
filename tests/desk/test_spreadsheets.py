"""Import and export of the office's books on both backends: a dry run first, then the same plan
applied as ordinary changes; the same file twice changes nothing, one changed cell makes one
change, a cell against a phone's offline edit becomes a conflict; bad files are refused whole;
exports read back with openpyxl hold the list, masked as the exporter must see it, and audited."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import func, select

from server.access.accounts import AccountStore
from server.access.principals import Principal, UserScope
from server.db.engine import create_engine
from server.db.tables import changes
from server.desk.exports import Exporter, ExportFilter
from server.desk.imports import Importer, ImportReport
from server.desk.service import Desk
from server.inbox.service import ConflictInbox
from server.settings import Settings
from server.sync.store import SyncStore
from sync.client import Replica
from tests.desk.sheets import HOUSEHOLDS, RESIDENTS, households_sheet, residents_sheet
from tests.domain.district import Client, build, view

ADMIN = Principal(
    user_id="u-admin", user_name="office", role="community_admin", scope=UserScope(communities=("c1", "c2"))
)


async def _import(
    settings: Settings, path: Path, collection: str, *, apply: bool
) -> tuple[ImportReport, int]:
    engine = create_engine(settings.database_url)
    try:
        desk = Desk(SyncStore(engine, settings), settings)
        importer = Importer(desk, collection, principal=ADMIN)
        with path.open("rb") as data:
            report = await (importer.apply(path, data) if apply else importer.dry_run(path, data))
        async with engine.connect() as connection:
            logged = (await connection.execute(select(func.count()).select_from(changes))).scalar_one()
    finally:
        await engine.dispose()
    return report, logged


def run(settings: Settings, path: Path, collection: str, *, apply: bool) -> tuple[ImportReport, int]:
    return asyncio.run(_import(settings, path, collection, apply=apply))


def test_dry_run_then_apply_then_nothing_twice(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    sheet = households_sheet(tmp_path / "households.xlsx")
    preview, before = run(settings, sheet, "households", apply=False)
    assert [(r.row, r.record_id, r.action) for r in preview.rows] == [
        (4, "h10", "create"),
        (6, "h11", "create"),
        (7, "h12", "create"),
    ]
    assert (preview.errors, preview.applied) == (0, False)
    applied, after = run(settings, sheet, "households", apply=True)
    assert after - before == applied.changes == preview.changes > 0
    h12 = view(client, "households", "h12")["fields"]
    assert (h12["phone"], h12["moved_out_on"], h12["tags"], h12["door"]) == (
        "13800000003",
        "2024-03-05",
        ["empty-nest"],
        "301",
    )
    assert view(client, "households", "h11")["fields"]["tags"] == ["central-household", "veteran"]
    again, logged = run(settings, sheet, "households", apply=True)
    assert (again.created, again.changed, again.unchanged, logged) == (0, 0, 3, after), again.rows
    edited = [list(row) for row in HOUSEHOLDS]
    edited[1][5] = "13900000009"
    one, logged_one = run(
        settings, households_sheet(tmp_path / "edited.xlsx", edited), "households", apply=True
    )
    assert (one.changed, one.changes, logged_one - after) == (1, 1, 1)
    assert [r.fields for r in one.rows if r.action == "change"] == [["phone"]]


def test_residents_fill_merged_households_and_match_on_reimport(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    run(settings, households_sheet(tmp_path / "households.xlsx"), "households", apply=True)
    sheet = residents_sheet(tmp_path / "residents.xlsx")
    applied, logged = run(settings, sheet, "residents", apply=True)
    assert (applied.created, applied.errors) == (3, 0), applied.rows
    son = next(r.record_id for r in applied.rows if r.row == 7)
    fields = view(client, "residents", son)["fields"]
    assert (fields["household_id"], fields["birth_year"], fields["name"]) == ("h11", 1988, "李小明")
    again, logged_again = run(settings, sheet, "residents", apply=True)
    assert (again.unchanged, logged_again) == (3, logged)


def test_a_cell_against_a_phones_offline_edit_is_a_conflict(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    office = phone("office")
    build(office, client)
    run(settings, households_sheet(tmp_path / "households.xlsx"), "households", apply=True)
    worker = phone("worker")
    worker.sync(client)
    worker.set("households", "h10", "phone", "13700000000")  # offline
    edited = [list(row) for row in HOUSEHOLDS]
    edited[0][5] = "13600000000"
    run(settings, households_sheet(tmp_path / "edited.xlsx", edited), "households", apply=True)
    assert worker.sync(client).rejected == []
    record = view(client, "households", "h10")
    assert sorted(head["value"] for head in record["conflicts"]["phone"]) == ["13600000000", "13700000000"]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.xlsx"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    locked = tmp_path / "locked.xlsx"
    locked.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    no_header = tmp_path / "no-header.csv"
    no_header.write_text("甲,乙,丙\n1,2,3\n", encoding="utf-8")
    rows = [list(row) for row in HOUSEHOLDS]
    rows[0][6] = "三口人"
    rows[2][1] = "b99"
    wrong = households_sheet(tmp_path / "wrong.xlsx", rows)
    people = [list(row) for row in RESIDENTS]
    people[1][2] = "370302195607080016"
    bad_id = residents_sheet(tmp_path / "bad-id.xlsx", people)
    return {
        "corrupt": (corrupt, "已损坏"),
        "locked": (locked, "密码"),
        "no_header": (no_header, "没有找到表头"),
        "wrong": (wrong, "人口数"),
        "unknown_building": (wrong, "楼栋「b99」不存在"),
        "bad_id": (bad_id, "校验位"),
    }


def test_bad_files_are_refused_whole(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    run(settings, households_sheet(tmp_path / "households.xlsx"), "households", apply=True)
    for name, (path, message) in _bad_files(tmp_path).items():
        collection = "residents" if name == "bad_id" else "households"
        _, before = run(settings, path, collection, apply=False)
        applied, after = run(settings, path, collection, apply=True)
        messages = " ".join(r.message for r in applied.rows if r.action == "error")
        assert message in messages, (name, messages)
        assert applied.errors > 0, name
        assert after == before, name
        assert "370302195607080016" not in messages  # an ID number is never echoed whole


async def _export(
    settings: Settings, principal: Principal, collection: str, kind: str, where: ExportFilter
) -> bytes:
    engine = create_engine(settings.database_url)
    try:
        store = SyncStore(engine, settings)
        out = io.BytesIO()
        await Exporter(store.collections, ConflictInbox(engine, store)).write(
            principal, collection, where, out, kind
        )
        await AccountStore(engine).audit(principal, "export", collection)
    finally:
        await engine.dispose()
    return out.getvalue()


def _xlsx(data: bytes) -> list[list[Any]]:
    book = load_workbook(io.BytesIO(data), read_only=True)
    return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]


def test_export_round_trips_and_masks(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    run(settings, households_sheet(tmp_path / "households.xlsx"), "households", apply=True)
    run(settings, residents_sheet(tmp_path / "residents.xlsx"), "residents", apply=True)
    rows = _xlsx(asyncio.run(_export(settings, ADMIN, "households", "xlsx", ExportFilter(tag="empty-nest"))))
    header = rows[0]
    assert header[:4] == ["户编号", "地址", "户主", "联系电话"]
    assert [row[0] for row in rows[1:]] == ["h12"]
    exported = tmp_path / "exported.xlsx"
    exported.write_bytes(
        asyncio.run(_export(settings, ADMIN, "households", "xlsx", ExportFilter(community="c1")))
    )
    again, _ = run(settings, exported, "households", apply=False)
    assert (again.errors, again.created, again.changed) == (0, 0, 0), again.rows
    worker = Principal(user_id="w", user_name="w", role="grid_worker", scope=UserScope(grids=("g1",)))
    text = asyncio.run(_export(settings, worker, "residents", "csv", ExportFilter())).decode("utf-8-sig")
    assert "身份证号" in text.splitlines()[0]
    assert "370302194203150027" not in text
    assert "张桂兰" in text
    whole = asyncio.run(_export(settings, ADMIN, "residents", "csv", ExportFilter())).decode("utf-8-sig")
    assert "370302194203150027" in whole
