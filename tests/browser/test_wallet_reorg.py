"""A reorg seen from the wallet: the watch-only page of the payee, open in chromium, shows its
confirmed payment turn "Re-queued after a reorg" and then confirmed again, by itself; and
`pybtc wallet history` says it was re-queued and why. A real ledger and a real Redis, the
wallet app on a real loopback port in front of them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pybtc import COIN, Block
from services.common.settings import Settings
from services.wallet.app import create_app
from tests.browser.browserutil import LoopThread, http_json, mine, serving, transfer
from tests.chainutil import branch, test_key
from tests.service.ledgerutil import LedgerNode, free_port
from tests.upnode import PYBTC

PAYER = test_key(0)
PAYEE = test_key(1)
LIVE_MS = 15_000


@pytest.fixture
def wallet_url(
    server_loop: LoopThread, ledger: LedgerNode, tmp_path: Path, redis_url: str
) -> Iterator[str]:
    """The wallet app on a real loopback port, reading `ledger`; its URL."""
    port = free_port()
    settings = Settings(
        network="regtest",
        data_dir=tmp_path / "wallet",
        redis_url=redis_url,
        ledger_url=ledger.url,
        public_url=ledger.url,
        wallet_port=port,
    )
    with serving(server_loop, create_app(settings), port) as url:
        yield url


def _cli_history(ledger: LedgerNode) -> list[str]:
    done = subprocess.run(
        [PYBTC, "wallet", "history", PAYEE.address, "--network", "regtest", "--node", ledger.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_a_reorg_re_queues_a_payment_in_place(
    page: Page, ledger: LedgerNode, wallet_url: str
) -> None:
    mine(ledger.url)
    status, body, tx = transfer(ledger.url, PAYER, PAYEE.address, COIN)
    assert status == 201, body
    confirming = mine(ledger.url)
    page.goto(f"{wallet_url}/address/{PAYEE.address}")
    expect(page.locator("#live-state")).to_have_text("live updates: on")
    page.evaluate("() => { window.__same_page = true; }")
    row = page.locator(f'#history tr[data-txid="{tx.txid}"] td')
    expect(row.first).to_have_text("Confirmed · 1 confirmation")
    expect(page.locator("#balance")).to_have_text("1.00000000")

    parent = Block.from_dict(
        http_json("GET", f"{ledger.url}/blocks/{confirming.previous_hash}")[1]["block"]
    )
    for block in branch(parent.header, 2, miner=test_key(5).address):  # it never saw tx
        status, body = http_json("POST", f"{ledger.url}/mining/submit", block.to_dict())
        assert status == 201, body
    expect(row.first).to_have_text(
        "Re-queued after a reorg · Pending · position 1 in the mempool · next block",
        timeout=LIVE_MS,
    )
    expect(page.locator("#balance")).to_have_text("0.00000000")
    expect(page.locator("#unconfirmed")).to_have_text("1.00000000")
    expect(page.locator("#spendable")).to_have_text("0.00000000")
    lines = _cli_history(ledger)
    [at] = [n for n, line in enumerate(lines) if line.endswith(tx.txid)]
    assert lines[at].startswith("re-queued ")
    assert "its block left the best chain in a reorg" in lines[at + 1]

    mine(ledger.url)
    expect(row.first).to_have_text("Confirmed · 1 confirmation", timeout=LIVE_MS)
    expect(page.locator("#balance")).to_have_text("1.00000000")
    assert page.evaluate("() => window.__same_page === true"), "the page was reloaded"
