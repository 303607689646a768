"""``gridsync import FILE --collection C`` and ``gridsync export COLLECTION -o FILE``: the desk's
spreadsheets from the console, through the same importer and exporter as the pages, with a
progress bar (rich). The console acts as a district admin and is audited as such."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from server.access.accounts import AccountStore
from server.access.principals import Principal
from server.desk.exports import EXPORTABLE, Exporter, ExportFilter, audit_export
from server.desk.imports import Importer, ImportReport
from server.desk.mappings import load_mapping, save_mapping
from server.desk.service import Desk
from server.desk.spreadsheets import IMPORTABLE
from server.errors import GridsyncError
from server.inbox.service import ConflictInbox
from server.settings import Settings
from server.sync.store import SyncStore

__all__ = ["add_desk_commands"]

_ACTIONS = {"create": "新建", "change": "修改", "same": "无变化", "error": "错误"}
_STAGES = {"read": "读取并核对", "write": "写入"}


def _mapping(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
        raise SystemExit(f"{path}: a mapping is a JSON object of column name -> field name")
    return {str(k): v for k, v in loaded.items()}


def _print_report(console: Console, report: ImportReport, *, verbose: bool) -> None:
    for row in report.rows:
        if row.action == "error" or (verbose and row.action != "same"):
            where = f"第 {row.row} 行" if row.row else "文件"
            detail = row.message or "、".join(row.fields)
            console.print(f"{where} [{_ACTIONS[row.action]}] {row.record_id or ''} {detail}".rstrip())
    if report.unmapped:
        console.print(f"未使用的列：{'、'.join(report.unmapped)}")
    verb = "已导入" if report.applied and not report.errors else "试导入（未写入）"
    console.print(
        f"{verb}：新建 {report.created}，修改 {report.changed}，无变化 {report.unchanged}，"
        f"错误 {report.errors}，变更 {report.changes} 条"
    )
    for refused in report.refused:
        console.print(f"被拒绝：{refused}")


def _bars(progress: Progress) -> Callable[[str, int, int | None], None]:
    """The importer's progress as bars: one for reading (rows so far), one for writing (of all)."""
    bars: dict[str, TaskID] = {}

    def show(stage: str, done: int, total: int | None) -> None:
        if stage not in bars:
            bars[stage] = progress.add_task(_STAGES.get(stage, stage), total=total)
        progress.update(bars[stage], completed=done, total=total)

    return show


async def _import(engine: AsyncEngine, settings: Settings, args: argparse.Namespace, console: Console) -> int:
    desk = Desk(SyncStore(engine, settings), settings)
    path = Path(args.file)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    # The console owns its loop: reading the file in it blocks nothing else.
    with Progress(*columns, console=console, transient=True) as progress, path.open("rb") as data:  # noqa: ASYNC230
        mapping = _mapping(args.mapping)
        if mapping:
            # Kept as the office's: later imports of this collection reuse it.
            await save_mapping(engine, args.community, args.collection, mapping)
        else:
            mapping = await load_mapping(engine, args.community, args.collection)
        importer = Importer(
            desk, args.collection, community=args.community, mapping=mapping, progress=_bars(progress)
        )
        report = await (importer.dry_run(path, data) if args.dry_run else importer.apply(path, data))
    _print_report(console, report, verbose=args.verbose)
    await AccountStore(engine).audit(
        _console(),
        "import_dry_run" if args.dry_run else "import",
        args.collection,
        community_id=args.community,
        file=path.name,
        created=report.created,
        changed=report.changed,
        errors=report.errors,
        changes=report.changes,
    )
    return 1 if report.errors or report.refused else 0


async def _export(engine: AsyncEngine, settings: Settings, args: argparse.Namespace, console: Console) -> int:
    store = SyncStore(engine, settings)
    exporter = Exporter(store.collections, ConflictInbox(engine, store))
    where = ExportFilter(args.community, args.grid, args.building, args.status, args.tag)
    target = Path(args.output)
    kind = "csv" if target.suffix.lower() == ".csv" else "xlsx"
    with target.open("wb") as out:  # noqa: ASYNC230 - the console owns its loop
        rows = await exporter.write(_console(), args.collection, where, out, kind)
    await audit_export(AccountStore(engine), _console(), args.collection, where, rows)
    console.print(f"已导出 {rows} 行到 {target}")
    return 0


def _console() -> Principal:
    return Principal(user_id="console", user_name="gridsync CLI", role="district_admin")


def _runner(
    work: Callable[[AsyncEngine, Settings, argparse.Namespace, Console], Any],
    with_engine: Callable[[Settings, Callable[[AsyncEngine], Any]], Any],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        console = Console(stderr=False)
        settings = settings_of(args)
        try:
            code: int = asyncio.run(
                with_engine(settings, lambda engine: work(engine, settings, args, console))
            )
        except GridsyncError as error:
            print(f"{error.code}: {error.message}", file=sys.stderr)
            return 2
        return code

    return run


def add_desk_commands(
    commands: Any,
    with_database: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    with_engine: Callable[[Settings, Callable[[AsyncEngine], Any]], Any],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Register ``import`` and ``export`` on the ``gridsync`` parser."""
    imports = with_database(commands.add_parser("import", help="import a spreadsheet (XLSX or CSV)"))
    imports.add_argument("file")
    imports.add_argument("--collection", required=True, choices=IMPORTABLE)
    imports.add_argument("--community", help="only rows of this community")
    imports.add_argument(
        "--mapping", help="JSON file: column name -> field name (kept for the office; later imports reuse it)"
    )
    imports.add_argument("--dry-run", action="store_true", help="list what would change; write nothing")
    imports.add_argument("--verbose", action="store_true", help="list every created or changed row")
    imports.set_defaults(run=_runner(_import, with_engine, settings_of))

    exports = with_database(commands.add_parser("export", help="export a list to XLSX or CSV"))
    exports.add_argument("collection", choices=EXPORTABLE)
    exports.add_argument("-o", "--output", required=True, help="FILE.xlsx or FILE.csv")
    for name in ("community", "grid", "building", "status", "tag"):
        exports.add_argument(f"--{name}")
    exports.set_defaults(run=_runner(_export, with_engine, settings_of))
