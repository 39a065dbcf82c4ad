"""The explorer of a whole node (`pybtc up`: embedded Redis, ledger, miner, explorer) in chromium.

Blocks come from the node's own miner (the tutorial's `GET /mine`, paying test key 0 through
PYBTC_MINER_ADDRESS); a reorg is forced by handing the ledger a heavier branch built here.
Checks: a mined block appears on the open dashboard without a reload; the reorg shows on the
forks page with the transaction it dropped, and that transaction's page says so; a refused
transaction with markup in it is shown as text; the charts draw. Screenshots land in
artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from pybtc import COIN, REGTEST, Block, Transaction
from tests.browser.browserutil import screenshot
from tests.chainutil import branch, child_block, test_key
from tests.upnode import UpNode

MINER = test_key(0)
HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    started = UpNode(tmp_path_factory.mktemp("up") / "data", PYBTC_MINER_ADDRESS=MINER.address)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def _mine(node: UpNode) -> Any:
    """One block from the node's miner, the tutorial's way."""
    block = node.get("/mine", timeout=60)
    assert block["message"] == "new block found", block
    return block


def _transfer(node: UpNode, recipient: str, amount: int, nonce: int | None = None) -> Transaction:
    if nonce is None:
        nonce = node.get(f"/address/{MINER.address}")["next_nonce"]
    return Transaction.create(
        MINER,
        recipient,
        amount,
        fee=1_000,
        nonce=nonce,
        timestamp=0,
        network_id=REGTEST.network_id,
    )


def test_a_block_from_the_miner_appears_without_a_reload(page: Page, node: UpNode) -> None:
    _mine(node)
    page.goto(f"{node.explorer_url}/")
    expect(page.locator("#live-state")).to_have_text("live updates: on")
    height = int(page.locator("#stat-height").inner_text())
    marker = page.evaluate("() => (window.__loaded = Date.now())")
    mined = _mine(node)
    assert mined["index"] == height + 1
    expect(page.locator("#stat-height")).to_have_text(str(height + 1), timeout=10_000)
    expect(page.locator("#latest-blocks tbody tr").first).to_contain_text(str(mined["hash"])[:16])
    assert page.evaluate("() => window.__loaded") == marker  # the same page: no reload


def test_a_forced_reorg_shows_on_the_forks_page(page: Page, node: UpNode) -> None:
    _mine(node)
    paid = _transfer(node, test_key(1).address, 3 * COIN)
    status, body = node.post("/transactions/new", paid.to_dict())
    assert status == 201, body
    confirmed = _mine(node)
    assert paid.txid in [t["txid"] for t in confirmed["transactions"]]

    # A rival miner never saw `paid`: its branch spends the same nonce elsewhere, and is longer.
    parent = Block.from_dict(node.get(f"/blocks/{confirmed['previous_hash']}")["block"]).header
    double = _transfer(node, test_key(2).address, COIN, nonce=paid.nonce)
    rival = [child_block(parent, [double], miner=test_key(5).address)]
    rival += branch(rival[0].header, 1, miner=test_key(5).address)
    for block in rival:
        status, body = node.post("/mining/submit", block.to_dict())
        assert status == 201, body
    assert node.get("/status")["tip"] == rival[-1].hash

    page.goto(f"{node.explorer_url}/forks")
    reorg = page.locator("#reorgs tbody tr").first
    expect(reorg).to_contain_text(str(confirmed["hash"])[:12])  # the old tip
    expect(reorg).to_contain_text(rival[-1].hash[:12])  # the new tip
    dropped_link = reorg.locator(f'a[href="/tx/{paid.txid}"]')
    expect(dropped_link).to_be_visible()
    expect(page.locator(f'svg a[href="/block/{confirmed["hash"]}"] rect.stale')).to_have_count(1)
    screenshot(page, "explorer-forks")

    dropped_link.click()
    expect(page.locator("#tx-status")).to_contain_text("Dropped")
    expect(page.locator("#tx-fate")).to_contain_text("The reorg of")
    screenshot(page, "explorer-transaction-dropped")


def test_a_refused_transaction_with_markup_is_shown_as_text(page: Page, node: UpNode) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    hostile = _transfer(node, test_key(1).address, COIN).to_dict()
    hostile |= {"recipient": HOSTILE, "txid": HOSTILE[:40]}
    status, body = node.post("/transactions/new", hostile)
    assert (status, body["reason"]) == (400, "bad-address")
    page.goto(f"{node.explorer_url}/mempool")
    refused = page.locator("#rejections tbody tr").first
    expect(refused).to_contain_text(HOSTILE[:40])  # the claimed txid, as text
    expect(refused).to_contain_text("bad-address")
    assert page.locator("main img, main script").count() == 0
    assert dialogs == []


def test_charts_draw_difficulty_and_block_time(page: Page, node: UpNode) -> None:
    for _ in range(3):
        _mine(node)
    page.goto(f"{node.explorer_url}/")
    expect(page.locator("figure.chart polyline.series")).to_have_count(2)
    screenshot(page, "explorer-dashboard-node")
    page.goto(f"{node.explorer_url}/charts?blocks=50")
    expect(page.locator("figure.chart polyline.series")).to_have_count(2)
    expect(page.locator("figure.chart").first).to_contain_text("Difficulty")
    screenshot(page, "explorer-charts")
