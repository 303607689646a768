"""The community office's day at the desk, in a real browser (Debian's Chromium) against a real
``gridsync serve``: a clerk imports a spreadsheet (preview, then apply), dispatches a new request
to a company with a due date and creates a visit task; a grid worker's phone (the reference
client) pulls the task and records the visit that answers it, and the desk shows it closed; the
exported XLSX holds what the page shows. Screenshots go to docs/images/ for docs/desk.md."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
from openpyxl import load_workbook
from playwright.sync_api import Browser, Page, expect

from sync.client import Replica
from tests.browser.conftest import LiveServer, cli
from tests.desk.sheets import HOUSEHOLDS, households_sheet

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
HOUSEHOLD = "c1-g1-b1-u1-101"
OFFICE_PASSWORD = "correct horse battery"


def _shot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=False)


def _sign_in(page: Page, server: LiveServer) -> None:
    cli(
        server.database_url,
        "admin",
        "create",
        "--name",
        "office",
        "--password-stdin",
        stdin=OFFICE_PASSWORD + "\n",
    )
    page.goto(f"{server.base_url}/admin/login?next=/admin/households&lang=zh")
    page.fill("#name", "office")
    page.fill("#password", OFFICE_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}/admin/households")


def _import(page: Page, server: LiveServer) -> None:
    rows = [[f"c1-g1-imp-{i}", "c1-g1-b1", *row[2:]] for i, row in enumerate(HOUSEHOLDS)]
    sheet = households_sheet(server.tmp / "住户台账.xlsx", rows)
    page.goto(f"{server.base_url}/admin/import")
    page.set_input_files("input[name=file]", str(sheet))
    page.click("#upload button[type=submit]")
    expect(page.locator("#rows tr.row-create")).to_have_count(3)
    _shot(page, "desk-import-preview.png")
    page.click("#apply button[type=submit]")
    expect(page.locator("#report h2")).to_have_text("已导入。")
    page.goto(f"{server.base_url}/admin/households?q=张桂兰")
    expect(page.locator("#households tbody tr")).to_have_count(1)


def _dispatch(page: Page, server: LiveServer) -> str:
    page.goto(f"{server.base_url}/admin/requests?status=submitted&community=c1")
    form = page.locator("form.move-dispatched").first
    row_id = form.locator("xpath=ancestor::tr").get_attribute("id")
    assert row_id is not None
    form.locator("input[name=dispatched_to]").fill("旭赢物业")
    form.locator("input[name=due_date]").fill("2030-01-15")
    form.locator("input[name=supervisor]").fill("党员王")
    _shot(page, "desk-requests.png")
    form.locator("button[type=submit]").click()
    expect(page.locator("#saved")).to_be_visible()
    request_id = row_id.removeprefix("request-")
    page.goto(f"{server.base_url}/admin/requests/{request_id}")
    expect(page.locator("#steps li.done")).to_have_count(2)
    _shot(page, "desk-request-steps.png")
    return request_id


def _task(page: Page, server: LiveServer, worker_id: str) -> str:
    page.goto(f"{server.base_url}/admin/tasks")
    page.select_option("#new-task select[name=kind]", "visit")
    page.fill("#new-task input[name=assignee]", worker_id)
    page.fill("#new-task input[name=household_id]", HOUSEHOLD)
    page.fill("#new-task input[name=reason]", "回访独居老人")
    page.click("#new-task button[type=submit]")
    row = page.locator("#tasks tr", has_text="回访独居老人")
    expect(row.locator(".status")).to_have_text("open")
    row_id = row.get_attribute("id")
    assert row_id is not None
    return row_id.removeprefix("task-")


def _enrol_worker(server: LiveServer, name: str) -> dict[str, str]:
    """A device of the grid worker "worker" (grid c1-g1), enrolled from the command line."""
    return cli(
        server.database_url,
        "device",
        "enroll",
        "--name",
        name,
        "--user",
        "worker",
        "--role",
        "grid_worker",
        "--grid",
        "c1-g1",
    )


def _worker_visits(server: LiveServer, task_id: str) -> None:
    enrolled = _enrol_worker(server, "worker-phone")
    phone = Replica(server.tmp / "worker.db", "worker-phone", token=enrolled["token"])
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        phone.sync(http)
        task = phone.record("tasks", task_id)
        assert task is not None
        assert task.fields["household_id"] == HOUSEHOLD
        visit = "visit-answering-task"
        for name, value in {
            "household_id": HOUSEHOLD,
            "worker": enrolled["user_id"],
            "visited_at": "2026-12-06T10:00:00+08:00",
            "purpose": "elderly-care",
            "task_id": task_id,
        }.items():
            phone.set("visits", visit, name, value)
        assert phone.sync(http).rejected == []
    phone.close()


def _export_matches_page(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.base_url}/admin/households?tag=elderly-alone&community=c1")
    shown = sorted(page.locator("#households tbody tr td:first-child").all_inner_texts())
    assert shown
    _shot(page, "desk-households.png")
    with page.expect_download() as download:
        page.click("#export-xlsx")
    data = Path(download.value.path()).read_bytes()
    rows = list(load_workbook(io.BytesIO(data), read_only=True).worksheets[0].iter_rows(values_only=True))
    assert rows[0][0] == "户编号"
    assert sorted(str(row[0]) for row in rows[1:]) == shown


def test_a_day_at_the_desk(demo_server: LiveServer, chromium: Browser) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    _sign_in(page, demo_server)
    _import(page, demo_server)
    _dispatch(page, demo_server)
    worker = _enrol_worker(demo_server, "worker-laptop")
    task_id = _task(page, demo_server, worker["user_id"])
    _worker_visits(demo_server, task_id)
    page.goto(f"{demo_server.base_url}/admin/tasks?assignee={worker['user_id']}")
    row = page.locator(f"#task-{task_id}")
    expect(row.locator(".status")).to_have_text("done")
    expect(row).to_contain_text("visit-answering-task")
    _shot(page, "desk-tasks.png")
    page.goto(f"{demo_server.base_url}/admin/households/{HOUSEHOLD}")
    expect(page.locator("#members td.id-number").first).to_contain_text("**********")
    _shot(page, "desk-household.png")
    page.goto(f"{demo_server.base_url}/admin/hazards?community=c1")
    expect(page.locator("#hazards")).to_be_visible()
    _shot(page, "desk-hazards.png")
    _export_matches_page(page, demo_server)
    assert re.match(r"^[0-9a-f-]+$", worker["user_id"])
