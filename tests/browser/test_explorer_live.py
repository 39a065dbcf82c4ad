"""Every explorer page that shows chain or mempool state updates in place, in chromium, from the
one /events stream (the network page by polling too), against a real ledger and a real Redis.

Each test opens a page, leaves a marker on `window` (a reload or navigation would lose it),
changes the chain or the mempool through the ledger's API, and waits for the page to show it.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from pybtc import COIN, REGTEST, Block, Transaction
from tests.browser.browserutil import LoopThread, http_json, mine, transfer
from tests.chainutil import branch, child_block, test_key
from tests.service.ledgerutil import LedgerNode

PAYER = test_key(0)
PAYEE = test_key(1)
LIVE_MS = 15_000  # an event, the 300 ms debounce and a page fetch: well within this


def _open(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#live-state")).to_have_text("live updates: on")
    page.evaluate("() => { window.__same_page = true; }")


def _same_page(page: Page) -> None:
    assert page.evaluate("() => window.__same_page === true"), "the page was reloaded"


def test_a_transaction_page_turns_confirmed_by_itself(
    page: Page, ledger: LedgerNode, explorer: str
) -> None:
    mine(ledger.url)
    status, body, tx = transfer(ledger.url, PAYER, PAYEE.address, 2 * COIN)
    assert status == 201, body
    _open(page, f"{explorer}/tx/{tx.txid}")
    expect(page.locator("#tx-status")).to_contain_text("Pending · position 1")
    block = mine(ledger.url)
    status_line = page.locator("#tx-status")
    expect(status_line).to_contain_text("Confirmed in block 3", timeout=LIVE_MS)
    expect(status_line).to_contain_text("1 confirmation")
    mine(ledger.url)
    expect(status_line).to_contain_text("2 confirmations", timeout=LIVE_MS)
    expect(page.locator(f'#tx-status a[href="/block/{block.hash}"]')).to_have_count(1)
    _same_page(page)


def test_the_mempool_page_fills_and_drains(page: Page, ledger: LedgerNode, explorer: str) -> None:
    mine(ledger.url)
    _open(page, f"{explorer}/mempool")
    expect(page.locator("#mempool-empty")).to_be_visible()
    sent = [transfer(ledger.url, PAYER, PAYEE.address, COIN)[2] for _ in range(3)]
    rows = page.locator("#mempool-txs tbody tr")
    expect(rows).to_have_count(3, timeout=LIVE_MS)
    for tx in sent:
        expect(page.locator(f'#mempool-txs a[href="/tx/{tx.txid}"]')).to_have_count(1)
    expect(page.locator("h1")).to_contain_text("3 pending")
    mine(ledger.url)
    expect(page.locator("#mempool-empty")).to_be_visible(timeout=LIVE_MS)
    expect(page.locator("h1")).to_contain_text("0 pending")
    _same_page(page)


def test_the_blocks_list_gains_a_row(page: Page, ledger: LedgerNode, explorer: str) -> None:
    mine(ledger.url)
    _open(page, f"{explorer}/blocks")
    rows = page.locator("#blocks tbody tr")
    expect(rows).to_have_count(2)  # genesis and one
    block = mine(ledger.url)
    expect(rows).to_have_count(3, timeout=LIVE_MS)
    expect(rows.first).to_contain_text(block.hash[:24])
    expect(page.locator("h1")).to_contain_text("height 3")
    _same_page(page)


def test_an_address_page_balance_and_history_move(
    page: Page, ledger: LedgerNode, explorer: str
) -> None:
    mine(ledger.url)
    _open(page, f"{explorer}/address/{PAYEE.address}")
    expect(page.locator("#address-balance")).to_have_text("0.00000000 pyBTC")
    status, body, _ = transfer(ledger.url, PAYER, PAYEE.address, 3 * COIN)
    assert status == 201, body
    expect(page.locator("#address-pending-balance")).to_have_text(
        "3.00000000 pyBTC", timeout=LIVE_MS
    )
    expect(page.locator("#address-balance")).to_have_text("0.00000000 pyBTC")
    history = page.locator("#address-history tbody tr")
    expect(history.first).to_contain_text("pending")
    mine(ledger.url)
    expect(page.locator("#address-balance")).to_have_text("3.00000000 pyBTC", timeout=LIVE_MS)
    expect(history.first).to_contain_text("block 3")
    expect(history.first).to_contain_text("+3.00000000 pyBTC")
    _same_page(page)


def test_every_dashboard_figure_moves(page: Page, ledger: LedgerNode, explorer: str) -> None:
    for _ in range(3):
        mine(ledger.url)
    _open(page, f"{explorer}/")
    expect(page.locator("#stat-height")).to_have_text("4")
    expect(page.locator("#stat-mempool")).to_have_text("0")
    points = page.locator("figure.chart polyline.series").first.get_attribute("points")
    status, body, tx = transfer(ledger.url, PAYER, PAYEE.address, COIN)
    assert status == 201, body
    expect(page.locator("#stat-mempool")).to_have_text("1", timeout=LIVE_MS)
    expect(page.locator(f'#latest-txs a[href="/tx/{tx.txid}"]')).to_have_count(1)
    block = mine(ledger.url)
    expect(page.locator("#stat-height")).to_have_text("5", timeout=LIVE_MS)
    expect(page.locator("#stat-mempool")).to_have_text("0")
    expect(page.locator("main")).to_contain_text("The mempool is empty.")
    expect(page.locator("#latest-blocks tbody tr").first).to_contain_text(block.hash[:16])
    expect(page.locator("#tip-line")).to_contain_text(block.hash[:24])
    assert page.locator("figure.chart polyline.series").first.get_attribute("points") != points
    _same_page(page)


def test_the_network_page_polls_for_peers(
    page: Page, ledger: LedgerNode, explorer: str, server_loop: LoopThread
) -> None:
    """A peer's registration sends no event: the page finds it by polling (every 5 s)."""
    _open(page, f"{explorer}/network")
    expect(page.locator("main")).to_contain_text("No peers registered")
    other = LedgerNode(ledger.settings.data_dir.parent / "other")
    loop = server_loop
    loop.run(other.start())
    try:
        status, body = http_json("POST", f"{ledger.url}/nodes/register", {"nodes": [other.url]})
        assert status == 201, body
        assert body["added"], body
        expect(page.locator("#network-peers")).to_contain_text(other.url, timeout=LIVE_MS)
        _same_page(page)
    finally:
        loop.run(other.stop())


def test_relative_ages_stay_fresh(page: Page, ledger: LedgerNode, explorer: str) -> None:
    """A block's age counts up without any event, its exact time on hover."""
    mine(ledger.url)
    _open(page, f"{explorer}/blocks")
    age = page.locator("#blocks tbody tr").first.locator("time.ago")
    expect(age).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    first = age.inner_text()
    expect(age).not_to_have_text(first, timeout=LIVE_MS)
    expect(age).to_have_text(re.compile(r"^\d+ s ago$"))
    _same_page(page)


def test_a_transaction_page_shows_a_reorg_in_place(
    page: Page, ledger: LedgerNode, explorer: str
) -> None:
    """Confirmed, then re-queued by a reorg (with what happened), then confirmed again; a text
    selection in the page's details survives the updates."""
    mine(ledger.url)
    status, body, tx = transfer(ledger.url, PAYER, PAYEE.address, COIN)
    assert status == 201, body
    confirming = mine(ledger.url)
    _open(page, f"{explorer}/tx/{tx.txid}")
    expect(page.locator("#tx-status")).to_contain_text("Confirmed in block 3")
    page.locator("td.mono", has_text=tx.txid).first.select_text()
    parent = Block.from_dict(
        http_json("GET", f"{ledger.url}/blocks/{confirming.previous_hash}")[1]["block"]
    )
    for block in branch(parent.header, 2, miner=test_key(5).address):  # it never saw tx
        status, body = http_json("POST", f"{ledger.url}/mining/submit", block.to_dict())
        assert status == 201, body
    expect(page.locator("#tx-status")).to_contain_text("Re-queued after a reorg", timeout=LIVE_MS)
    expect(page.locator("#tx-status")).to_contain_text("Pending")
    expect(page.locator("#tx-fate")).to_contain_text("put it back in the mempool")
    assert tx.txid in page.evaluate("() => String(window.getSelection())")
    mine(ledger.url)
    expect(page.locator("#tx-status")).to_contain_text("Confirmed in block 5", timeout=LIVE_MS)
    expect(page.locator("#tx-fate")).to_contain_text("confirmed again since")
    _same_page(page)


def test_copy_buttons_copy(page: Page, ledger: LedgerNode, explorer: str) -> None:
    block = mine(ledger.url)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=explorer)
    page.goto(f"{explorer}/block/{block.hash}")
    button = page.locator(f'button.copy[data-copy="{block.hash}"]')
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == block.hash
    expect(button).to_have_text("Copy")


def test_a_pending_transaction_page_says_dropped_and_why(
    page: Page, ledger: LedgerNode, explorer: str
) -> None:
    """A block from elsewhere spends the same nonce: the open page turns to Dropped, with why."""
    mine(ledger.url)
    status, body, tx = transfer(ledger.url, PAYER, PAYEE.address, COIN)
    assert status == 201, body
    _open(page, f"{explorer}/tx/{tx.txid}")
    expect(page.locator("#tx-status")).to_contain_text("Pending")
    double = Transaction.create(
        PAYER,
        test_key(2).address,
        COIN,
        fee=1_000,
        nonce=tx.nonce,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    tip = Block.from_dict(http_json("GET", f"{ledger.url}/blocks/height/2")[1]["block"])
    rival = child_block(tip.header, [double], miner=test_key(5).address)
    status, body = http_json("POST", f"{ledger.url}/mining/submit", rival.to_dict())
    assert status == 201, body
    expect(page.locator("#tx-status")).to_contain_text("Dropped", timeout=LIVE_MS)
    expect(page.locator("#tx-status")).to_contain_text("same nonce is in the best chain")
    expect(page.locator("#tx-fate")).to_contain_text("its sender can sign it again")
    _same_page(page)
