"""The browser tooling itself: chromium opens a real ledger's pages; the fixtures catch errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.browser.browserutil import StaticSite, screenshot
from tests.service.ledgerutil import LedgerNode


def test_ledger_pages_render_in_chromium(page: Page, ledger: LedgerNode) -> None:
    resp = page.goto(f"{ledger.url}/status")
    assert resp is not None
    assert resp.status == 200
    shown = page.locator("pre")  # chromium's JSON view: the body as text, plus a pretty-print box
    expect(shown).to_contain_text('"network": "regtest"')
    status = json.loads(shown.inner_text())
    assert status["network"] == "regtest"
    assert status["tip"] == status["genesis"]  # a fresh ledger: nothing mined yet
    path = screenshot(page, "smoke-ledger-status")
    assert path.stat().st_size > 1_000

    # The ledger answers `Content-Type: application/yaml`, which chromium does not render: a
    # browser user gets the spec as a downloaded file. (Served as text/yaml it would be shown
    # inline; then this becomes a goto plus a check of the page's text, as for /status.)
    with (
        page.expect_download() as download_info,
        pytest.raises(PlaywrightError, match="Download is starting"),
    ):
        page.goto(f"{ledger.url}/openapi.yaml")
    download = download_info.value
    assert download.suggested_filename == "openapi.yaml"
    spec = Path(download.path()).read_text()
    assert spec.startswith("openapi: 3.1.0")
    assert "/transactions/new:" in spec


NO_ICON = '<link rel="icon" href="data:,">'


def test_console_errors_are_collected(page: Page, console_errors: list[str]) -> None:
    # Each page names an empty icon: the site closes right after goto, and chromium's own fetch
    # of /favicon.ico for a page without one could then end in a connection-reset console error.
    html = """<!doctype html><title>errors</title>NO_ICON<h1>Provoked errors</h1>
    <script>console.error("provoked console error"); console.log("only a log");</script>
    <script>setTimeout(() => { throw new Error("provoked uncaught error"); }, 0);</script>
    """.replace("NO_ICON", NO_ICON)
    with StaticSite({"/": html}) as site, page.expect_event("pageerror"):
        page.goto(f"{site.url}/")  # the console.error arrives before goto returns
    assert any("provoked console error" in e for e in console_errors), console_errors
    assert any("provoked uncaught error" in e for e in console_errors), console_errors
    assert not any("only a log" in e for e in console_errors), console_errors
    console_errors.clear()  # seen and checked: the teardown must not fail this test


def test_a_clean_page_reports_no_errors(page: Page, console_errors: list[str]) -> None:
    with StaticSite({"/": f"<!doctype html><title>ok</title>{NO_ICON}<p>fine</p>"}) as site:
        page.goto(f"{site.url}/")
        assert page.locator("p").inner_text() == "fine"
    assert console_errors == []
