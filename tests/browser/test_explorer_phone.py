"""Every explorer page fits a phone (390 px) and a desktop (1280 px) without sideways scrolling,
with real data: a real regtest ledger with a reorg behind it, confirmed, pending and refused
transactions, and a registered peer. Screenshots of each page at both widths land in
artifacts/screenshots/ as explorer-<page>-<width>.png.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from pybtc import COIN, Block
from tests.browser.browserutil import LoopThread, http_json, mine, screenshot, transfer
from tests.chainutil import branch, child_block, test_key
from tests.service.ledgerutil import LedgerNode

WIDTHS = {390: 844, 1280: 800}
# The chart labels that reach past their drawing (the SVG's viewBox), as drawn.
CLIPPED_LABELS = """() => Array.from(document.querySelectorAll("figure.chart svg")).flatMap(svg => {
    const box = svg.viewBox.baseVal;
    return Array.from(svg.querySelectorAll("text")).map(t => [t.textContent, t.getBBox()])
        .filter(([, b]) => b.x < box.x || b.y < box.y || b.x + b.width > box.x + box.width
                           || b.y + b.height > box.y + box.height)
        .map(([text]) => text);
})"""


@dataclass
class World:
    pages: dict[str, str]  # name -> path


@pytest.fixture
def world(ledger: LedgerNode, server_loop: LoopThread) -> Iterator[World]:
    url = ledger.url
    blocks = [mine(url) for _ in range(4)]
    # A rival branch from height 4 outgrows the tip: one reorg, one stale block to draw.
    parent = Block.from_dict(http_json("GET", f"{url}/blocks/{blocks[-2].hash}")[1]["block"])
    rival = [child_block(parent.header, miner=test_key(5).address)]
    rival += branch(rival[0].header, 1, miner=test_key(5).address)
    for block in rival:
        status, body = http_json("POST", f"{url}/mining/submit", block.to_dict())
        assert status == 201, body
    status, body, confirmed = transfer(url, test_key(0), test_key(1).address, 5 * COIN)
    assert status == 201, body
    with_txs = mine(url)
    for _ in range(3):
        mine(url)
    pending = [
        transfer(url, test_key(0), test_key(1).address, COIN, fee=1_000 + i * 500)[2]
        for i in range(4)
    ]
    status, body, _ = transfer(url, test_key(1), test_key(2).address, COIN // 2, fee=3_000)
    assert status == 201, body
    status, body, refused = transfer(url, test_key(3), test_key(2).address, COIN)
    assert status == 400, body  # key 3 has nothing
    other = server_loop.run(LedgerNode(ledger.settings.data_dir.parent / "peer").start())
    try:
        status, body = http_json("POST", f"{url}/nodes/register", {"nodes": [other.url]})
        assert status == 201, body
        yield World(
            {
                "dashboard": "/",
                "blocks": "/blocks",
                "block": f"/block/{with_txs.hash}",
                "tx-pending": f"/tx/{pending[0].txid}",
                "tx-confirmed": f"/tx/{confirmed.txid}",
                "tx-refused": f"/tx/{refused.txid}",
                "address": f"/address/{test_key(1).address}",
                "mempool": "/mempool",
                "network": "/network",
                "forks": "/forks",
                "charts": "/charts",
                "search-error": "/search?q=no-such-thing",
            }
        )
    finally:
        server_loop.run(other.stop())


def test_every_page_fits_a_phone_and_a_desktop(
    page: Page, world: World, explorer: str, console_errors: list[str]
) -> None:
    too_wide = []
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        for name, path in world.pages.items():
            page.goto(f"{explorer}{path}")
            expect(page.locator("#live-state")).to_have_text("live updates: on")
            scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
            if scroll_width > width:
                too_wide.append(f"{name} at {width}: {scroll_width} px")
            if name in ("dashboard", "charts"):
                clipped = page.evaluate(CLIPPED_LABELS)
                assert clipped == [], (name, width, clipped)
            header = page.evaluate("() => document.querySelector('header.top').offsetWidth")
            assert header == width, (name, width, header)  # the band spans the screen
            screenshot(page, f"explorer-{name}-{width}")
    assert too_wide == []
    # the search error page is a 404, which chromium logs once per load: expected here
    assert len(console_errors) == len(WIDTHS), console_errors
    assert all("404" in e for e in console_errors), console_errors
    console_errors.clear()


def test_the_pages_say_what_users_look_for(page: Page, world: World, explorer: str) -> None:
    """Units, the projected blocks, a refused id's page, the API link, the tree's tip."""
    page.goto(f"{explorer}/mempool")
    expect(page.locator("#projected-blocks .tile").first).to_contain_text("Next block")
    expect(page.locator("#projected-blocks .tile").first).to_contain_text("5 txs")
    refused = page.locator("#rejections tbody tr").first
    expect(refused).to_contain_text("insufficient-funds")
    refused.locator("a").click()
    expect(page.locator("h1")).to_have_text("Refused transaction")
    expect(page.locator("#tx-refusals")).to_contain_text("insufficient-funds")
    page.goto(f"{explorer}{world.pages['tx-pending']}")
    expect(page.locator("#tx-status")).to_contain_text("in the next block")
    expect(page.locator("main")).to_contain_text("1.00000000 pyBTC")
    page.goto(f"{explorer}{world.pages['block']}")
    facts = page.locator("#block-facts")
    for label in ("Time", "Miner", "Transactions", "Fee total", "Size"):
        expect(facts).to_contain_text(label)
    expect(facts).to_contain_text(test_key(0).address)
    api = page.locator("footer a", has_text="API document")
    with urllib.request.urlopen(str(api.get_attribute("href")), timeout=10) as resp:
        assert b"openapi:" in resp.read()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{explorer}/forks")
    tip = page.locator("svg rect.tip")
    expect(tip).to_be_in_viewport()
