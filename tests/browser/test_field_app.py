"""The field app at /app in a real browser, on a phone-sized screen, offline.

A grid worker enrols with a one-time code and the app bootstraps the grid; the network goes;
the app is reloaded and still opens (its service worker); the worker records a visit, a hazard
with a photo and a new phone number. Meanwhile another phone changes the same phone number. The
network comes back: the app syncs and shows the conflict with both values; an admin keeps the
worker's number in the inbox; the app shows it after its next sync (told by the live events),
and the visit, the hazard and its photo are on the server. Screenshots go to tests/artifacts/
(the docs' own are copied from there into docs/images/)."""

from __future__ import annotations

import hashlib

import httpx
from playwright.sync_api import Browser, Page, expect

from sync.client import Replica
from tests.browser.conftest import LiveServer, cli, shot

PASSWORD = "correct horse battery"
PHONE = {"width": 360, "height": 780}
# A household of the demo district, in community c1, grid c1-g1.
HOUSEHOLD = "c1-g1-b1-u1-101"
WORKERS_NUMBER = "13911112222"
OTHER_NUMBER = "13733334444"
VISIT_NOTES = "老人身体不错 提醒按时吃药"
HAZARD_DESCRIPTION = "厨房燃气软管老化"
REQUEST_TITLE = "厨房水管漏水"
SCOPE = ("--role", "grid_worker", "--community", "c1", "--grid", "c1-g1")


def _enrol_in_the_app(page: Page, server: LiveServer) -> None:
    issued = cli(
        server.database_url, "device", "enroll", "--name", "wang-phone", "--user", "wang", *SCOPE, "--code"
    )
    page.goto(f"{server.base_url}/app/")
    expect(page.locator("h1")).to_have_text("绑定设备")
    page.fill("#code", issued["code"])
    page.fill("#device-name", "王芳的手机")
    shot(page, "app-enrol.png")
    page.click("#enrol button[type=submit]")
    expect(page.locator("#household-count")).to_contain_text("户", timeout=20_000)
    expect(page.locator("#waiting")).to_have_text("待同步 0")
    # The service worker holds the shell once it controls the page.
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=10_000)


def _second_phone(server: LiveServer) -> Replica:
    enrolled = cli(server.database_url, "device", "enroll", "--name", "li-phone", "--user", "li", *SCOPE)
    return Replica(server.tmp / "li-phone.db", "li-phone", token=enrolled["token"])


def _admin_keeps(server: LiveServer, value: str) -> None:
    """An admin keeps one side of the household's phone conflict through the inbox API."""
    cli(server.database_url, "admin", "create", "--name", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        signed_in = http.post("/v1/admin/login", json={"name": "admin", "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        admin = {"authorization": f"Bearer {signed_in.json()['token']}"}
        inbox = http.get("/v1/admin/conflicts", headers=admin).json()["conflicts"]
        (conflict,) = [c for c in inbox if c["record_id"] == HOUSEHOLD]
        detail = http.get(f"/v1/admin/conflicts/{conflict['id']}", headers=admin).json()
        (phone,) = [f for f in detail["fields"] if f["field"] == "phone"]
        (kept,) = [head["change_id"] for head in phone["heads"] if head["value"] == value]
        resolution = {"seen_heads": detail["seen_heads"], "fields": {"phone": {"keep": kept}}}
        resolved = http.post(f"/v1/admin/conflicts/{conflict['id']}/resolve", json=resolution, headers=admin)
        assert resolved.status_code in (200, 201), resolved.text


def test_a_worker_records_offline_and_sees_the_conflict_and_its_resolution(
    demo_server: LiveServer, chromium: Browser
) -> None:
    server = demo_server
    context = chromium.new_context(viewport=PHONE, locale="zh-CN", device_scale_factor=2, has_touch=True)
    page = context.new_page()
    _enrol_in_the_app(page, server)
    page.fill("#search", "101")
    expect(page.locator(f'a.card[data-id="{HOUSEHOLD}"]')).to_be_visible()
    expect(page.locator("#view")).not_to_contain_text("null")  # nothing left empty shows as a word
    shot(page, "app-grid.png")
    page.click(f'a.card[data-id="{HOUSEHOLD}"]')
    expect(page.locator("#household")).to_be_visible()

    # No network: the app reloads from its service worker and its own database.
    context.set_offline(True)
    page.reload()
    expect(page.locator("#net")).to_have_attribute("data-state", "offline")
    expect(page.locator("#household")).to_be_visible()
    assert page.evaluate("navigator.serviceWorker.controller !== null")

    page.click("#record-visit")
    page.select_option("#purpose", "elderly-care")
    page.fill("#notes", VISIT_NOTES)
    page.check("#follow-up")
    shot(page, "app-visit.png")
    page.click("#save-visit")
    expect(page.locator("li.visit").first).to_contain_text(VISIT_NOTES)

    photo = page.screenshot()  # any real image will do
    page.click("#report-hazard")
    page.select_option("#category", "gas")
    page.select_option("#severity", "high")
    page.fill("#description", HAZARD_DESCRIPTION)
    page.set_input_files("#photos", files=[{"name": "hose.png", "mimeType": "image/png", "buffer": photo}])
    expect(page.locator("#photo-count")).to_have_text("已加 1 张照片")
    page.click("#save-hazard")
    expect(page.locator("li.hazard").first).to_contain_text("燃气")

    page.click("#edit-phone")
    page.fill("#input-phone", WORKERS_NUMBER)
    page.click("#save-phone")
    expect(page.locator("#value-phone")).to_have_text(WORKERS_NUMBER)
    expect(page.locator("#waiting")).to_have_text("待同步 3")  # the visit, the hazard, the household
    expect(page.locator("#uploads")).to_have_text("照片待传 1")
    shot(page, "app-offline.png")

    # Meanwhile another phone changes the same number.
    li = _second_phone(server)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        li.sync(http)
        li.set("households", HOUSEHOLD, "phone", OTHER_NUMBER)
        li.sync(http)

    context.set_offline(False)
    note = page.locator('.conflict-note[data-field="phone"]')
    expect(note).to_be_visible(timeout=15_000)
    expect(note).to_contain_text(WORKERS_NUMBER)
    expect(note).to_contain_text(OTHER_NUMBER)
    expect(page.locator("#waiting")).to_have_text("待同步 0")
    expect(page.locator("#net")).to_have_attribute("data-state", "online")
    shot(page, "app-conflict.png")

    # An admin keeps the worker's number in the inbox; the live events tell the app to pull.
    _admin_keeps(server, WORKERS_NUMBER)
    expect(note).to_have_count(0, timeout=10_000)
    expect(page.locator("#value-phone")).to_have_text(WORKERS_NUMBER)
    shot(page, "app-resolved.png")

    # A request, moved along the loop as far as a grid worker takes it; today's check-in list.
    page.click("#new-request")
    page.select_option("#category", "plumbing")
    page.fill("#title", REQUEST_TITLE)
    page.click("#save-request")
    expect(page.locator("#value-status")).to_have_text("已提交")
    expect(page.locator("#moves button")).to_have_text(["已派单", "已取消"])
    page.click('#moves button[data-status="dispatched"]')
    expect(page.locator("#value-status")).to_have_text("已派单")
    expect(page.locator("#moves button")).to_have_text(["已受理", "已取消"])
    page.click("#tabs a[href='#/checkins']")
    expect(page.locator("#no-signal")).to_contain_text("数据时间")
    expect(page.locator("#view")).not_to_contain_text("null")

    page.goto(f"{server.base_url}/app/#/me")
    page.click("#lang-en")
    expect(page.locator("#waiting")).to_have_text("0 to sync")
    shot(page, "app-me-en.png")

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        li.sync(http)
        assert li.record("households", HOUSEHOLD).fields["phone"] == WORKERS_NUMBER
        # The demo district has visits and hazards of its own: these are the app's.
        visits = [v for v in li.records("visits") if v.fields.get("notes") == VISIT_NOTES]
        assert [(v.fields["household_id"], v.fields["purpose"], v.fields["follow_up"]) for v in visits] == [
            (HOUSEHOLD, "elderly-care", True)
        ]
        assert visits[0].fields["worker"] == "wang"
        hazards = [h for h in li.records("hazards") if h.fields.get("description") == HAZARD_DESCRIPTION]
        assert [(h.fields["household_id"], h.fields["category"], h.fields["severity"]) for h in hazards] == [
            (HOUSEHOLD, "gas", "high")
        ]
        requests = [r for r in li.records("requests") if r.fields.get("title") == REQUEST_TITLE]
        assert [(r.fields["household_id"], r.fields["status"]) for r in requests] == [
            (HOUSEHOLD, "dispatched")
        ]
        (sha256,) = hazards[0].fields["photos"]
        assert sha256 == hashlib.sha256(photo).hexdigest()
        stored = http.get(f"/v1/attachments/{sha256}", headers={"authorization": f"Bearer {li.token}"})
        assert stored.status_code == 200
        assert stored.content == photo
    li.close()
    context.close()


def test_an_unlinked_phone_says_so_and_keeps_its_work_for_the_next_code(
    demo_server: LiveServer, chromium: Browser
) -> None:
    server = demo_server
    context = chromium.new_context(viewport=PHONE, locale="zh-CN")
    page = context.new_page()
    _enrol_in_the_app(page, server)
    device_id = page.evaluate("JSON.parse(localStorage.getItem('gridsync.device')).deviceId")
    cli(server.database_url, "device", "revoke", device_id)
    page.goto(f"{server.base_url}/app/#/h/{HOUSEHOLD}")
    page.click("#edit-notes")
    page.fill("#input-notes", "门铃坏了 请敲门")
    page.click("#save-notes")
    expect(page.locator("#unlinked")).to_be_visible(timeout=10_000)
    expect(page.locator("#waiting")).to_have_text("待同步 1")
    shot(page, "app-unlinked.png")

    page.click("#set-up-again")
    _enrol_in_the_app(page, server)  # a new code: the note waiting on the phone goes up with it
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        admin = cli(server.database_url, "device", "enroll", "--name", "check", "--user", "li", *SCOPE)
        reply = http.get(
            f"/v1/records/households/{HOUSEHOLD}", headers={"authorization": f"Bearer {admin['token']}"}
        )
        assert reply.json()["fields"]["notes"] == "门铃坏了 请敲门"
    context.close()


def test_the_app_shell_is_installable(demo_server: LiveServer) -> None:
    with httpx.Client(base_url=demo_server.base_url) as http:
        manifest = http.get("/app/manifest.webmanifest").json()
        assert manifest["start_url"] == "/app/"
        assert manifest["display"] == "standalone"
        sizes = {icon["sizes"] for icon in manifest["icons"] if icon["type"] == "image/png"}
        assert {"192x192", "512x512"} <= sizes
        for icon in manifest["icons"]:
            assert http.get(icon["src"]).status_code == 200
        worker = http.get("/app/sw.js")
        assert worker.headers["content-type"].startswith("text/javascript")
        assert "__SHELL__" not in worker.text
        for url in ("/app/", "/app/app.js", "/app/sdk/index.js", "/app/sdk/replica.js"):
            assert f'"{url}"' in worker.text
            assert http.get(url).status_code == 200, url
