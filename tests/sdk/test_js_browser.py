"""The JS SDK as a browser runs it: imported from its source files with no build step, on
Chromium's own IndexedDB, gzipping its push bodies with CompressionStream, against a real
server; a reload keeps what was made offline."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.factories import photo

CHROMIUM = "/usr/bin/chromium"
SDK = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"
PAGE = """<!doctype html><meta charset="utf-8">
<script type="importmap">{"imports": {"@gridsync/client": "/sdk/index.js"}}</script>
<script type="module">
  import * as gridsync from "@gridsync/client";
  window.gridsync = gridsync;
  window.ready = true;
</script>"""
OPEN = """async ([token]) => {
  const { Replica, IndexedDBStore } = window.gridsync;
  window.phone = await Replica.open({ url: location.origin, token, replicaId: "browser-a",
                                      store: new IndexedDBStore("browser-a") });
  return window.phone.status();
}"""


@pytest.fixture
def token(enroll: Callable[[str], str]) -> str:
    # Enrolled before Playwright starts: its sync API holds an event loop in this thread.
    return enroll("browser-a")


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield launched
        launched.close()


def _serve_sdk(page: Page, pushes: list[dict[str, str]]) -> None:
    """The page and the SDK's files come from the repository, under the server's origin; every
    other request goes to the server."""

    def sdk(route: Route) -> None:
        name = route.request.url.split("/sdk/", 1)[1]
        route.fulfill(body=(SDK / name).read_text(encoding="utf-8"), content_type="text/javascript")

    def exchange(route: Route) -> None:
        pushes.append(route.request.headers)
        route.continue_()

    page.route("**/sdk-test.html", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
    page.route("**/sdk/*.js", sdk)
    page.route("**/v1/sync/exchange*", exchange)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sdk_runs_in_chromium_on_indexeddb_against_the_server(
    server_url: str, token: str, browser: Browser
) -> None:
    page = browser.new_page()
    pushes: list[dict[str, str]] = []
    _serve_sdk(page, pushes)
    page.goto(f"{server_url}/sdk-test.html")
    page.wait_for_function("window.ready === true")
    page.evaluate(OPEN, [token])
    jpeg = photo("JPEG", place=None)
    page.evaluate(
        """async (jpeg) => {
      for (let n = 0; n < 12; n++) await window.phone.set("households", `h-${n}`, "notes", "x".repeat(120));
      await window.phone.add("households", "h-0", "tags", "elderly-alone");
      const bytes = Uint8Array.from(atob(jpeg), (c) => c.charCodeAt(0));
      const photo = new Blob([bytes], { type: "image/jpeg" });
      await window.phone.add("hazards", "z-1", "photos", await window.phone.upload(photo));
      await window.phone.set("hazards", "z-1", "household_id", "h-0");
    }""",
        base64.b64encode(jpeg).decode(),
    )

    page.reload()  # offline edits survive: they are in IndexedDB
    page.wait_for_function("window.ready === true")
    status = page.evaluate(OPEN, [token])
    assert (status["pending"], status["uploads"]) == (15, 1)
    report = page.evaluate("() => window.phone.sync()")
    assert (report["pushed"], report["rejected"], report["uploaded"]) == (15, [], 1)
    assert any(headers.get("content-encoding") == "gzip" for headers in pushes)

    held = page.evaluate("() => window.phone.get('households', 'h-0')")
    served = httpx.get(
        f"{server_url}/v1/records/households/h-0", headers={"authorization": f"Bearer {token}"}
    )
    assert held == served.json()
    assert held["fields"]["tags"] == ["elderly-alone"]
    assert page.evaluate("() => window.phone.status()")["pending"] == 0
    hazard = page.evaluate("() => window.phone.get('hazards', 'z-1')")
    (name,) = hazard["fields"]["photos"]
    assert name == hashlib.sha256(jpeg).hexdigest()
    stored = httpx.get(f"{server_url}/v1/attachments/{name}", headers={"authorization": f"Bearer {token}"})
    assert (stored.status_code, stored.content) == (200, jpeg)
    assert stored.headers["content-type"] == "image/jpeg"
