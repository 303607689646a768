"""The desk's pages over HTTP on both backends: search and a household's file (ID numbers masked
until shown, and showing them audited), a field edited as an ordinary change that meets a
phone's concurrent edit as a conflict, dispatch offering only legal moves, a task made on the
desk, an import previewed then applied, and an export."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from pathlib import Path

from openpyxl import load_workbook

from server.access.accounts import AccountStore
from server.db.engine import create_engine
from server.desk.tasks import rule_task_id
from server.settings import Settings
from sync.client import Replica
from tests.desk.sheets import households_sheet, write_sheet
from tests.domain.district import Client, build, view, write
from tests.factories import create_user, photo, sign_in


def _admin(client: Client, settings: Settings) -> str:
    create_user(settings, "office", "community_admin", ("c1",))
    token = sign_in(client, "office")
    client.cookies.set("gridsync_session", token)
    page = client.get("/admin/tasks")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


async def _actions(settings: Settings) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        return [entry.action for entry in await AccountStore(engine).audit_entries()]
    finally:
        await engine.dispose()


def test_household_file_masks_edits_and_conflicts(
    client: Client, settings: Settings, phone: Callable[[str], Replica]
) -> None:
    office = phone("office")
    build(office, client)
    csrf = _admin(client, settings)
    found = client.get("/admin/households", params={"q": "B1 U1"})
    assert "h1" in found.text
    assert "h3" not in found.text
    file = client.get("/admin/households/h1")
    assert "Wang Fang" in file.text
    assert "110101195001011234" not in file.text
    assert "id_numbers_shown" not in asyncio.run(_actions(settings))
    shown = client.get("/admin/households/h1", params={"reveal": "1"})
    assert "110101195001011234" in shown.text
    assert "id_numbers_shown" in asyncio.run(_actions(settings))
    seen = dict(re.findall(r'name="seen\.(\w+)" value="([^"]*)"', file.text))
    office.set("households", "h1", "phone", "13700000000")  # a phone's edit the page did not see
    assert office.sync(client).rejected == []
    form = {"csrf": csrf, "field": "phone", "value": "13600000000"} | {
        f"seen.{k}": v for k, v in seen.items()
    }
    saved = client.post("/admin/households/h1", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    heads = view(client, "households", "h1")["conflicts"]["phone"]
    assert sorted(h["value"] for h in heads) == ["13600000000", "13700000000"]
    refused = client.post(
        "/admin/households/h1", data={"field": "phone", "value": "1"}, follow_redirects=False
    )
    assert refused.status_code == 403  # no CSRF token


def test_dispatch_offers_legal_moves_and_writes_the_loop(
    client: Client, settings: Settings, phone: Callable[[str], Replica]
) -> None:
    office = phone("office")
    build(office, client)
    write(office, "requests", "q1", {"household_id": "h1", "title": "漏水", "status": "submitted"})
    write(office, "requests", "q2", {"household_id": "h1", "title": "路灯", "status": "submitted"})
    office.set("requests", "q2", "status", "dispatched")
    assert office.sync(client).rejected == []
    csrf = _admin(client, settings)
    page = client.get("/admin/requests").text
    row = page[page.index('id="request-q1"') :]
    row = row[: row.index("</tr>")]
    assert "move-dispatched" in row
    assert "move-cancelled" in row
    assert "move-reopened" not in row
    seen = dict(re.findall(r'name="seen\.(\w+)" value="([^"]*)"', row))
    form = {
        "csrf": csrf,
        "move": "dispatched",
        "dispatched_to": "旭赢物业",
        "due_date": "2026-12-10",
        "supervisor": "p-1",
    }
    moved = client.post(
        "/admin/requests/q1", data=form | {f"seen.{k}": v for k, v in seen.items()}, follow_redirects=False
    )
    assert moved.status_code == 303, moved.text
    fields = view(client, "requests", "q1")["fields"]
    assert (fields["status"], fields["dispatched_to"], fields["due_date"]) == (
        "dispatched",
        "旭赢物业",
        "2026-12-10",
    )
    steps = client.get("/admin/requests/q1").text
    assert "office" in steps  # who dispatched it
    illegal = client.post("/admin/requests/q1", data={"csrf": csrf, "move": "rated"}, follow_redirects=False)
    assert illegal.status_code == 400


def test_task_import_and_export_from_the_pages(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    csrf = _admin(client, settings)
    made = client.post(
        "/admin/tasks",
        data={
            "csrf": csrf,
            "kind": "visit",
            "assignee": "w-1",
            "due_date": "2026-12-01",
            "household_id": "h1",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    assert "w-1" in client.get("/admin/tasks", params={"assignee": "w-1"}).text
    sheet = households_sheet(tmp_path / "households.xlsx").read_bytes()
    files = {"file": ("households.xlsx", sheet, "application/octet-stream")}
    preview = client.post("/admin/import", data={"csrf": csrf, "collection": "households"}, files=files)
    assert preview.status_code == 200, preview.text
    assert preview.text.count('class="row-create"') == 3
    assert client.get("/v1/records/households/h10").status_code == 404
    token = re.search(r'name="token" value="([0-9a-f]+)"', preview.text)
    assert token is not None
    applied = client.post(
        "/admin/import/apply",
        data={"csrf": csrf, "token": token.group(1), "suffix": ".xlsx", "collection": "households"},
    )
    assert applied.status_code == 200, applied.text
    assert view(client, "households", "h10")["fields"]["head_name"] == "张桂兰"
    exported = client.get("/admin/export/households", params={"tag": "empty-nest"})
    assert exported.status_code == 200
    rows = list(
        load_workbook(io.BytesIO(exported.content), read_only=True).worksheets[0].iter_rows(values_only=True)
    )
    assert [row[0] for row in rows[1:]] == ["h12"]
    assert "export" in asyncio.run(_actions(settings))


def test_hazard_desk_fixes_assigns_and_verifies_with_a_photo(
    client: Client, settings: Settings, phone: Callable[[str], Replica]
) -> None:
    office = phone("office")
    build(office, client)
    write(
        office,
        "hazards",
        "z1",
        {"grid_id": "g1", "category": "fire", "severity": "critical", "status": "open"},
    )
    write(
        office, "hazards", "z2", {"grid_id": "g1", "category": "other", "severity": "low", "status": "open"}
    )
    assert office.sync(client).rejected == []
    csrf = _admin(client, settings)
    page = client.get("/admin/hazards").text
    assert page.index('id="hazard-z1"') < page.index('id="hazard-z2"')  # most severe first
    assigned = client.post(
        "/admin/hazards/z2",
        data={"csrf": csrf, "action": "assign", "assignee": "w-2", "due_date": "2026-12-20"},
        follow_redirects=False,
    )
    assert assigned.status_code == 303, assigned.text
    recheck = [
        t for t in client.get("/v1/records/tasks").json()["records"] if t["fields"].get("hazard_id") == "z2"
    ]
    assert [(t["fields"]["assignee"], t["fields"]["grid_id"]) for t in recheck] == [("w-2", "g1")]
    fixed = client.post("/admin/hazards/z1", data={"csrf": csrf, "action": "fixed"}, follow_redirects=False)
    assert fixed.status_code == 303, fixed.text
    assert view(client, "hazards", "z1")["fields"]["status"] == "fixed"
    fixed_at = view(client, "hazards", "z1")["fields"]["fixed_at"]
    made = rule_task_id("hazard-fixed", f"z1:{fixed_at}")
    assert f'id="task-{made}"' in client.get("/admin/tasks").text  # the rule made the re-check
    no_photo = client.post(
        "/admin/hazards/z1", data={"csrf": csrf, "action": "verify"}, follow_redirects=False
    )
    assert no_photo.status_code == 400
    after = photo("PNG", place=None)
    verified = client.post(
        "/admin/hazards/z1",
        data={"csrf": csrf, "action": "verify"},
        files={"photo": ("after.png", after, "image/png")},
        follow_redirects=False,
    )
    assert verified.status_code == 303, verified.text
    fields = view(client, "hazards", "z1")["fields"]
    assert fields["status"] == "verified"
    assert len(fields["photos"]) == 1
    assert client.get(f"/v1/attachments/{fields['photos'][0]}").content == after
    tasks = client.get("/admin/tasks").text
    row = tasks[tasks.index(f'id="task-{made}"') :]
    assert '<td class="status">done</td>' in row[: row.index("</tr>")]


def test_an_offices_column_mapping_is_kept(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    csrf = _admin(client, settings)
    headers = ["户号", "楼", "户主名"]
    sheet = write_sheet(
        tmp_path / "own.xlsx", "台账", headers, [["h20", "b1", "赵六"], ["h21", "b1", "钱七"]]
    )
    files = {"file": ("own.xlsx", sheet.read_bytes(), "application/octet-stream")}
    without = client.post(
        "/admin/import", data={"csrf": csrf, "collection": "households", "community": "c1"}, files=files
    )
    assert "没有找到表头" in without.text
    mapping = '{"户号": "id", "楼": "building_id", "户主名": "head_name"}'
    form = {"csrf": csrf, "collection": "households", "community": "c1", "mapping": mapping}
    mapped = client.post("/admin/import", data=form, files=files)
    assert mapped.text.count('class="row-create"') == 2, mapped.text[mapped.text.find('id="report"') :][:1500]
    again = client.post("/admin/import", data=form | {"mapping": ""}, files=files)
    assert again.text.count('class="row-create"') == 2, again.text[again.text.find('id="report"') :][:1500]
    shown = client.get("/admin/import", params={"collection": "households", "community": "c1"})
    assert "户主名" in shown.text


def test_the_import_pages_indicator_is_a_script_the_policy_lets_run(
    client: Client, settings: Settings, phone: Callable[[str], Replica], tmp_path: Path
) -> None:
    build(phone("office"), client)
    csrf = _admin(client, settings)
    sheet = households_sheet(tmp_path / "households.xlsx")
    files = {"file": ("households.xlsx", sheet.read_bytes(), "application/octet-stream")}
    preview = client.post(
        "/admin/import", data={"csrf": csrf, "collection": "households", "community": "c1"}, files=files
    )
    assert "script-src 'self'" in preview.headers["content-security-policy"]
    # No inline script (the policy would refuse it); both forms show a bar while they are sent.
    assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", preview.text)
    for form in ("upload", "apply"):
        found = re.search(rf'<form [^>]*id="{form}"[^>]*data-working>(.*?)</form>', preview.text, re.S)
        assert found is not None, form
        assert "<progress" in found.group(1), form
    script = client.get("/static/desk-import.js")
    assert script.status_code == 200
    assert "form[data-working]" in script.text
    assert '<script src="/static/desk-import.js"></script>' in preview.text
