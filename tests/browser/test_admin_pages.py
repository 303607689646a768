"""End to end in a real browser (Debian's Chromium driven by Playwright): two phones make
conflicts through the sync API of a real ``gridsync serve``, an admin signs in, finds them in the
inbox, keeps one side of one and writes a merged value for the other, and a third phone's pull
then holds what the admin chose. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from sync.client import Replica
from tests.browser.conftest import LiveServer, cli, shot

PASSWORD = "correct horse battery"
# Two households of the demo district, in community c1, grid c1-g1.
FIRST, SECOND = "c1-g1-b1-u1-101", "c1-g1-b1-u1-102"


@pytest.fixture
def server(demo_server: LiveServer) -> LiveServer:
    """The small demo district's server, with an admin who signs in with ``PASSWORD``."""
    cli(
        demo_server.database_url,
        "admin",
        "create",
        "--name",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    return demo_server


def _phone(server: LiveServer, name: str, user: str) -> Replica:
    enrolled = cli(
        server.database_url, "device", "enroll", "--name", name, "--user", user, "--role", "district_admin"
    )
    return Replica(server.tmp / f"{name}.db", name, token=enrolled["token"])


def _sign_in(page: Page, server: LiveServer, landing: str) -> None:
    page.goto(f"{server.base_url}/admin/login?next={landing}")
    page.fill("#name", "admin")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}{landing}")


def _make_conflicts(server: LiveServer) -> tuple[Replica, Replica]:
    """Wang and Li hold the district; both edit the same households offline."""
    wang = _phone(server, "wang-phone", "wang")
    li = _phone(server, "li-phone", "li")
    with httpx.Client(base_url=server.base_url) as http:
        wang.sync(http)
        wang.set("households", FIRST, "phone", "13800000001")
        wang.set("households", FIRST, "head_name", "Zhang Wei")
        wang.set("households", SECOND, "notes", "Lives alone; daughter visits on Sundays")
        wang.sync(http)
        li.sync(http)
        wang.set("households", FIRST, "phone", "13900000002")
        li.set("households", FIRST, "phone", "13700000003")
        wang.set("households", SECOND, "notes", "Lives alone; daughter visits on Sundays; gas stove checked")
        li.set("households", SECOND, "notes", "Lives alone; son visits on Sundays")
        wang.sync(http)
        li.sync(http)
    return wang, li


def test_admin_resolves_conflicts_in_the_browser_and_phones_pull_the_outcome(
    server: LiveServer, chromium: Browser
) -> None:
    _make_conflicts(server)
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()

    page.goto(f"{server.base_url}/admin/conflicts")
    expect(page).to_have_url(f"{server.base_url}/admin/login?next=%2Fadmin%2Fconflicts")
    page.fill("#name", "admin")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator("#sign-in-error")).to_be_visible()
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.base_url}/admin/conflicts")
    expect(page.locator("#total")).to_have_text("2")
    expect(page.locator("a.conflict-link")).to_have_count(2)
    expect(page.locator("aside")).to_contain_text("c1-g1")  # counts per grid
    shot(page, "inbox.png", full_page=True)

    # One click keeps Wang's phone number.
    page.click("a.conflict-link:has-text('c1-g1-b1-u1-101')")
    expect(page.locator("#status")).to_have_text("Open")
    wang_side = page.locator(".side[data-head]", has_text="13900000002")
    expect(wang_side.locator("mark")).to_have_text("900000002")
    expect(page.locator(".side[data-head]", has_text="13700000003").locator("mark")).to_have_text("700000003")
    expect(wang_side).to_contain_text("wang")
    expect(wang_side).to_contain_text("13800000001")  # the value both started from
    shot(page, "conflict.png", full_page=True)
    page.set_viewport_size({"width": 768, "height": 1024})  # a tablet, upright
    expect(wang_side.locator("button.keep")).to_be_visible()
    shot(page, "conflict-tablet.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    wang_side.locator("button.keep").click()
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Resolved")
    expect(page.locator("#record")).to_contain_text("13900000002")
    shot(page, "conflict-resolved.png", full_page=True)

    # The other one gets a merged value, in Chinese.
    page.goto(f"{server.base_url}/admin/conflicts")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_contain_text("冲突收件箱")
    expect(page.locator("#total")).to_have_text("1")
    shot(page, "inbox-zh.png", full_page=True)
    page.click("a.conflict-link:has-text('c1-g1-b1-u1-102')")
    merged = "Lives alone; son and daughter visit on Sundays; gas stove checked"
    page.fill("textarea[name='merged.notes']", merged)
    page.click("button.use-merged")
    expect(page.locator("#done")).to_contain_text("已处理")
    page.goto(f"{server.base_url}/admin/conflicts?status=resolved")
    expect(page.locator("a.conflict-link")).to_have_count(2)
    page.goto(f"{server.base_url}/admin/dashboard?lang=en")
    expect(page.locator("#coverage tbody tr")).not_to_have_count(0)
    shot(page, "dashboard.png", full_page=True)
    context.close()

    # A third phone that never saw any of it pulls the admin's choices.
    zhao = _phone(server, "zhao-phone", "zhao")
    with httpx.Client(base_url=server.base_url) as http:
        zhao.sync(http)
        audit_token = http.post("/v1/admin/login", json={"name": "admin", "password": PASSWORD}).json()[
            "token"
        ]
        audit = http.get(
            "/v1/admin/audit",
            params={"action": "conflict_resolve"},
            headers={"authorization": f"Bearer {audit_token}"},
        ).json()
    first = zhao.record("households", FIRST)
    second = zhao.record("households", SECOND)
    assert (first.fields["phone"], first.fields["head_name"], first.conflicts) == (
        "13900000002",
        "Zhang Wei",
        {},
    )
    assert (second.fields["notes"], second.conflicts) == (merged, {})
    assert [e["actor_name"] for e in audit["entries"]] == ["admin", "admin"]


def test_a_form_without_the_session_token_is_refused(server: LiveServer, chromium: Browser) -> None:
    _make_conflicts(server)
    context = chromium.new_context()
    page = context.new_page()
    _sign_in(page, server, "/admin/conflicts")
    page.click("a.conflict-link:has-text('c1-g1-b1-u1-101')")
    page.locator("#resolve-form input[name=csrf]").evaluate("input => { input.value = 'forged' }")
    page.locator(".side[data-head] button.keep").first.click()
    expect(page.locator("body")).to_contain_text("another site")
    page.goto(f"{server.base_url}/admin/conflicts")
    expect(page.locator("#total")).to_have_text("2")
    context.close()


def test_bulk_rule_is_previewed_then_applied_in_the_browser(server: LiveServer, chromium: Browser) -> None:
    wang = _phone(server, "wang-phone", "wang")
    li = _phone(server, "li-phone", "li")
    in_grid = ("c1-g2-b1-u1-101", "c1-g2-b1-u1-102", "c1-g2-b1-u1-201")
    elsewhere = "c1-g3-b1-u1-101"
    with httpx.Client(base_url=server.base_url) as http:
        wang.sync(http)
        li.sync(http)
        newest: dict[str, str] = {}
        for record in (*in_grid, elsewhere):
            both = [
                wang.set("households", record, "notes", f"wang: {record} gas checked"),
                li.set("households", record, "notes", f"li: {record} water checked"),
            ]
            newest[record] = max(both, key=lambda change: (change.hlc, change.id)).value
        wang.sync(http)
        li.sync(http)
    context = chromium.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    _sign_in(page, server, "/admin/bulk")
    # "Newest value wins for field notes in grid c1-g2."
    page.fill("input[name=field]", "notes")
    page.fill("input[name=grid]", "c1-g2")
    page.select_option("select[name=rule]", "newest")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#bulk-items tbody tr")).to_have_count(3)
    expect(page.locator("#bulk-items")).to_contain_text("planned")
    shot(page, "bulk-preview.png", full_page=True)
    page.click("#apply")
    expect(page.locator("#bulk-items")).to_contain_text("applied")
    expect(page.locator("#bulk-items")).not_to_contain_text("planned")
    page.goto(f"{server.base_url}/admin/dashboard")
    expect(page.locator("h1")).to_contain_text("Dashboard")
    context.close()
    with httpx.Client(base_url=server.base_url) as http:
        wang.sync(http)
    for record in in_grid:
        view = wang.record("households", record)
        assert (view.fields["notes"], view.conflicts) == (newest[record], {})
    assert "notes" in wang.record("households", elsewhere).conflicts
