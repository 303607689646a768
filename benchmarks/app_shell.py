"""The field app's shell: the bytes a phone downloads before the app is usable, online and then
offline, gzipped. That is every file the first visit to /app/ loads, plus every file its service
worker keeps for offline use (the list the server gives it), plus the service worker itself.
Each file is counted gzipped at level 6 (what a compressing proxy in front of gridsync sends).

``python -m benchmarks.app_shell`` prints the figure and writes benchmarks/results/app_shell.json;
``python -m benchmarks`` includes it (scenario ``app_shell``)."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks import harness

__all__ = ["TARGET_KB", "app_shell"]

TARGET_KB = 200
CHROMIUM = "/usr/bin/chromium"
RESULTS = Path(__file__).resolve().parent / "results" / "app_shell.json"


def _first_visit(base_url: str) -> set[str]:
    """The /app paths a fresh phone-sized Chromium loads until the service worker controls it."""
    from playwright.sync_api import sync_playwright

    loaded: set[str] = set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        context = browser.new_context(viewport={"width": 360, "height": 780})
        context.on("response", lambda response: loaded.add(urlsplit(response.url).path))
        page = context.new_page()
        page.goto(f"{base_url}/app/")
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30_000)
        browser.close()
    return {path for path in loaded if path.startswith("/app")}


def _measure(base_url: str) -> dict[str, Any]:
    from server.pages.field_app import shell_files

    shell, version = shell_files()
    paths = sorted(_first_visit(base_url) | set(shell) | {"/app/sw.js"})
    sizes: dict[str, tuple[int, int]] = {}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for path in paths:
            reply = http.get(path)
            reply.raise_for_status()
            sizes[path] = (len(reply.content), len(gzip.compress(reply.content, compresslevel=6)))
    gzipped = sum(packed for _, packed in sizes.values())
    return {
        "files": len(sizes),
        "bytes": sum(raw for raw, _ in sizes.values()),
        "gzip_bytes": gzipped,
        "gzip_kb": round(gzipped / 1024, 1),
        "target_kb": TARGET_KB,
        "version": version,
        "paths": sorted(sizes),
        "largest": [
            {"path": path, "bytes": raw, "gzip_bytes": packed}
            for path, (raw, packed) in sorted(sizes.items(), key=lambda item: -item[1][1])[:6]
        ],
    }


async def app_shell(workdir: Path) -> dict[str, Any]:
    """The figure, measured against a real ``gridsync serve`` (on a fresh SQLite database)."""
    async with harness.fresh_database("sqlite", workdir, "shell") as database:
        with harness.serve(database, workdir) as server:
            return await asyncio.to_thread(_measure, server.base_url)


def main() -> int:
    with harness.workdir() as workdir:
        found = asyncio.run(app_shell(workdir))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
    met = found["gzip_kb"] < TARGET_KB
    print(
        f"app shell to first use: {found['gzip_kb']} KB gzipped (target < {TARGET_KB} KB): {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
