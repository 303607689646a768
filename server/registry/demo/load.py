"""Loading the demo district: through the store's batched push as the replica ``demo``, never
over HTTP and never around the rules; and the ``gridsync demo`` command."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text

from schemas.protocol import Change
from server.registry.demo.plan import DemoPlan
from server.registry.demo.writer import DEMO_REPLICA
from server.sync.store import SyncStore

__all__ = ["DemoLoad", "demo_command", "load_demo"]


@dataclass(frozen=True, slots=True)
class DemoLoad:
    changes: int
    rejected: list[tuple[str, str]]
    seconds: float


async def load_demo(
    store: SyncStore,
    changes: Sequence[Change],
    *,
    batch: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> DemoLoad:
    """Push ``changes`` through the store's batched push as the demo replica."""
    started = time.perf_counter()
    rejected: list[tuple[str, str]] = []
    analyzed = 0
    for begin in range(0, len(changes), batch):
        chunk = changes[begin : begin + batch]
        outcome = await store.writer.push(None, DEMO_REPLICA, chunk)
        rejected += [(r.id or "", r.code or "") for r in outcome.results if r.status == "rejected"]
        loaded = begin + len(chunk)
        if store.engine.dialect.name == "postgresql" and loaded >= 2 * analyzed:
            # A bulk load outruns autovacuum: without fresh statistics PostgreSQL keeps planning
            # the id lookups of a push for an empty table (sequential scans), and slows down.
            # Each time the log has doubled is enough.
            async with store.engine.begin() as connection:
                await connection.execute(text("ANALYZE changes, records"))
            analyzed = loaded
        if progress is not None:
            progress(len(chunk))
    return DemoLoad(len(changes), rejected, time.perf_counter() - started)


async def demo_command(store: SyncStore, plan: DemoPlan, *, if_empty: bool) -> int:
    """``gridsync demo``: load the district into an empty database, with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if await store.change_count():
        if if_empty:
            console.print("the database already holds changes: demo not loaded")
            return 0
        console.print("[red]the demo loads only into an empty database[/red] (use a new --database-url)")
        return 1
    started = time.perf_counter()
    from server.registry.demo import demo_changes

    changes = demo_changes(plan)
    console.print(f"generated {len(changes):,} changes in {time.perf_counter() - started:.1f} s")
    columns = (
        TextColumn("loading the demo district"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("demo", total=len(changes))
        loaded = await load_demo(store, changes, progress=lambda n: bar.advance(task, n))
    if loaded.rejected:
        console.print(
            f"[red]{len(loaded.rejected)} changes were rejected[/red], first: {loaded.rejected[:3]}"
        )
        return 1
    console.print(
        f"loaded {loaded.changes:,} changes ({plan.households:,} households, seed {plan.seed}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0
