"""The chart of docs/benchmarks.md: throughput against the raw limit and the peer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw"]


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(results["backends"])
    figure, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), squeeze=False)
    for axis, backend in zip(axes[0], backends, strict=True):
        found = results["backends"][backend]
        bars: list[tuple[str, float, str]] = []
        if "throughput" in found:
            tp = found["throughput"]
            bars.append(("push", tp["push_changes_per_s"]["median"], "tab:blue"))
            if "floor" in found:
                # The push's own statements on the bare driver: what storage alone allows.
                bars.append(("push's SQL\nalone", found["floor"]["floor_changes_per_s"]["median"], "silver"))
            bars += [
                ("raw\nexecutemany", tp["raw_executemany_rows_per_s"]["median"], "tab:gray"),
                ("pull", tp["pull_changes_per_s"]["median"], "tab:blue"),
                ("raw\nscan", tp["raw_scan_rows_per_s"]["median"], "tab:gray"),
            ]
        if "peer" in found:
            pr = found["peer"]
            bars += [
                ("client\nwrite", pr["gridsync_changes_per_s"]["median"], "tab:blue"),
                ("peer\n_bulk_docs", pr["peer_docs_per_s"]["median"], "tab:orange"),
                ("client\nfeed", pr["gridsync_feed_changes_per_s"]["median"], "tab:blue"),
                ("peer\n_changes", pr["peer_feed_rows_per_s"]["median"], "tab:orange"),
            ]
        labels = [b[0] for b in bars]
        values = [b[1] for b in bars]
        axis.bar(labels, values, color=[b[2] for b in bars])
        axis.set_yscale("log")
        axis.set_title(f"{backend}: items per second (log scale)")
        axis.tick_params(axis="x", labelsize=8)
        for x, value in enumerate(values):
            axis.text(x, value, f"{value / 1000:,.0f}k", ha="center", va="bottom", fontsize=8)
    figure.suptitle(
        "gridsync (blue) vs raw database (grey; silver: the push's own SQL replayed) and pouchdb-server (orange)",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
