"""Loading the demo district: through the store's batched push as the replica ``demo``, never
over HTTP and never around the rules; and the ``gridsync demo`` command."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from schemas.protocol import Change
from server.registry.demo.plan import DemoPlan
from server.registry.demo.writer import DEMO_REPLICA
from server.sync.store import SyncStore

__all__ = ["DemoLoad", "demo_command", "load_demo", "without_cycle_collection"]


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused: generating and loading the district make a few hundred
    thousand objects that all live on (the changes, the merged states), and each full collection
    walked them all again with nothing to free, a fifth of the load's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class DemoLoad:
    changes: int
    rejected: list[tuple[str, str]]
    seconds: float


async def load_demo(
    store: SyncStore,
    changes: Sequence[Change],
    *,
    batch: int = 30_000,
    progress: Callable[[int], None] | None = None,
) -> DemoLoad:
    """Push ``changes`` through the store's batched push as the demo replica."""
    with without_cycle_collection():
        return await _load(store, changes, batch, progress)


async def _load(
    store: SyncStore, changes: Sequence[Change], batch: int, progress: Callable[[int], None] | None
) -> DemoLoad:
    started = time.perf_counter()
    rejected: list[tuple[str, str]] = []
    for begin in range(0, len(changes), batch):
        chunk = changes[begin : begin + batch]
        outcome = await store.writer.push(None, DEMO_REPLICA, chunk)
        rejected += [(r.id or "", r.code or "") for r in outcome.results if r.status == "rejected"]
        if progress is not None:
            progress(len(chunk))
    if store.writer.upkeep is not None:
        # The writer's own upkeep (PostgreSQL's statistics each time the log doubled, SQLite's
        # WAL checkpoints) ran beside the pushes: the district is served with it done.
        await store.writer.upkeep.idle()
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
    generated = time.perf_counter() - started
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
        f"in {time.perf_counter() - started:.1f} s: generated in {generated:.1f} s, pushed in "
        f"{loaded.seconds:.1f} s ({loaded.changes / max(loaded.seconds, 1e-3):,.0f} changes/s)"
    )
    return 0
