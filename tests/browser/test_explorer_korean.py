"""The explorer for a Korean browser (real chromium with locale ko-KR, so its own
Accept-Language): the dashboard, a block page and a tx page read in Korean with
`<html lang="ko">`, the live ages stay Korean once the page's script refreshes them, every page
fits a phone (390 px), and the switch on the page goes to English and back. Screenshots land
in artifacts/screenshots/ as explorer-ko-<page>-<width>.png."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from pybtc import COIN
from tests.browser.browserutil import DEFAULT_TIMEOUT_MS, mine, screenshot, transfer
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode

WIDTHS = {390: 844, 1280: 800}
KOREAN_AGE = re.compile(r"\d+(초|분|시간|일) (전|후)|방금")


@pytest.fixture
def korean(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page in a ko-KR browser context, and the console errors it saw (none allowed)."""
    context: BrowserContext = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="ko-KR"
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(e.message))
    try:
        yield page, errors
    finally:
        context.close()


def test_a_korean_browser_reads_the_explorer_in_korean(
    korean: tuple[Page, list[str]], ledger: LedgerNode, explorer: str
) -> None:
    page, errors = korean
    url = ledger.url
    for _ in range(2):
        mine(url)
    status, body, sent = transfer(url, test_key(0), test_key(1).address, 3 * COIN)
    assert status == 201, body
    block = mine(url)
    pages = {"dashboard": "/", "block": f"/block/{block.hash}", "tx": f"/tx/{sent.txid}"}
    too_wide = []
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            page.goto(f"{explorer}{path}")
            expect(page.locator("html")).to_have_attribute("lang", "ko")
            expect(page.locator("#live-state")).to_have_text("실시간 갱신: 켜짐")
            expect(page.locator("header nav")).to_contain_text("개요")
            scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
            if scroll_width > width:
                too_wide.append(f"{name} at {width}: {scroll_width} px")
            screenshot(page, f"explorer-ko-{name}-{width}")
    assert too_wide == []
    page.goto(f"{explorer}/")
    expect(page.locator("h2").first).to_have_text("최근 블록")
    ages = page.locator("#latest-blocks time.ago")
    expect(ages.first).to_have_text(KOREAN_AGE)  # after live.js refreshed it, still Korean
    page.goto(f"{explorer}{pages['block']}")
    expect(page.locator("h1")).to_have_text(f"블록 {block.index}")
    expect(page.locator("#block-facts")).to_contain_text("머클 루트")
    page.goto(f"{explorer}{pages['tx']}")
    expect(page.locator("h1")).to_have_text("거래")
    expect(page.locator("#tx-status")).to_contain_text("1회 확정")
    expect(page.locator("main")).to_contain_text("300,000,000 기본 단위")
    # The switch: English for this browser from now on, on the same page, and back.
    page.locator("#lang-switch a", has_text="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_url(f"{explorer}{pages['tx']}")
    expect(page.locator("h1")).to_have_text("Transaction")
    page.goto(f"{explorer}/blocks")
    expect(page.locator("h1")).to_contain_text("Blocks")
    page.locator("#lang-switch a", has_text="한국어").click()
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page).to_have_url(f"{explorer}/blocks")
    assert errors == []
