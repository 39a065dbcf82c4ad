"""The explorer in Debian's chromium, against a real ledger and a real Redis.

Every page opens without console errors (the fixture fails the test otherwise), search finds a
block by height and by hash, a transaction and an address, and a mistyped address or markup in
the search box is explained as text. (A whole node with its miner: test_explorer_node.py.)
Screenshots of every page: test_explorer_phone.py.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from playwright.sync_api import Page, expect

from pybtc import COIN, REGTEST, Block, Transaction
from pybtc.mining import mine_block
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode


def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _mine(ledger: LedgerNode) -> Block:
    template = _http("GET", f"{ledger.url}/mining/template?address={test_key(0).address}")
    block = mine_block(Block.from_dict(template["block"]))
    assert block is not None
    _http("POST", f"{ledger.url}/mining/submit", block.to_dict())
    return block


def test_pages_and_search(page: Page, ledger: LedgerNode, explorer: str) -> None:
    blocks = [_mine(ledger) for _ in range(3)]
    tx = Transaction.create(
        test_key(0),
        test_key(1).address,
        3 * COIN,
        fee=2_000,
        nonce=0,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    _http("POST", f"{ledger.url}/transactions/new", tx.to_dict())

    page.goto(f"{explorer}/")
    expect(page.locator("#stat-height")).to_have_text("4")
    expect(page.locator("#live-state")).to_have_text("live updates: on")

    def search(query: str) -> None:
        page.fill("input[name=q]", query)
        page.click("form.search button")

    search("2")
    expect(page.locator("h1")).to_have_text("Block 2")
    search(blocks[-1].hash)
    expect(page.locator("h1")).to_have_text("Block 4")
    search(tx.txid)
    expect(page.locator("p.status")).to_contain_text("Pending")
    search(test_key(1).address)
    expect(page.locator("#address-text")).to_have_text(test_key(1).address)
    for path in ("/blocks", "/mempool", "/network", "/forks"):
        page.goto(f"{explorer}{path}")
        expect(page.locator("h1")).to_be_visible()


def test_a_mistyped_address_is_explained_and_markup_stays_text(
    page: Page, explorer: str, console_errors: list[str]
) -> None:
    good = test_key(0).address
    page.goto(f"{explorer}/")
    page.fill("input[name=q]", good[:-1] + ("a" if good[-1] != "a" else "b"))
    page.click("form.search button")
    expect(page.locator("main")).to_contain_text("checksum does not match")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.fill("input[name=q]", '"><img src=x onerror=alert(1)><script>alert(2)</script>')
    page.click("form.search button")
    expect(page.locator("main")).to_contain_text("Search takes")
    assert dialogs == []
    # the two error pages were answered 400 and 404, which chromium logs: expected here
    assert len(console_errors) == 2, console_errors
    assert all("/search?q=" in e for e in console_errors), console_errors
    console_errors.clear()
