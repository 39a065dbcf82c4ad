"""The browser wallet keeps what it says true, on a whole node (`pybtc up`) in chromium.

- A payment request (amount and label) made in one wallet is a QR code and a `pybtc:` URI;
  pasted into another wallet's send form it fills recipient and amount and shows the label;
  sent, it arrives. A bad URI is refused with what is wrong, and fills nothing.
- "Next block" fills the fee the ledger's `GET /fees` names; the transaction sent with it is
  projected into the next block (`blocks_to_wait` 1).
- The Send card's and the faucet's messages follow their transaction: pending, then
  confirmed, never both. The faucet's "try again in N s" counts down and offers the button
  again. The history shows date, counterparty, fee and the running balance. A transaction
  replaced on the node is shown dropped, with why.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from pybtc import COIN, REGTEST, Transaction, format_amount
from services.wallet.keyfile import decrypt_key
from tests.upnode import UpNode

FAUCET_INTERVAL = 6


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    started = UpNode(
        tmp_path_factory.mktemp("up") / "data", PYBTC_FAUCET_INTERVAL=str(FAUCET_INTERVAL)
    )
    try:
        started.wait_ready()
        _mine(started)  # the faucet spends the node's key, which the miner pays
        yield started
    finally:
        started.stop()


def _mine(node: UpNode) -> dict[str, Any]:
    block = node.get("/mine", timeout=60)
    assert block["message"] == "new block found"
    return block


class Wallet:
    """One browser context with a new wallet open, and the requests it made."""

    def __init__(self, page: Page, node: UpNode) -> None:
        self.page = page
        self.requests: list[Request] = []
        page.on("request", lambda request: self.requests.append(request))
        page.goto(f"{node.wallet_url}/")
        page.fill("#create-pass", "a live passphrase")
        page.fill("#create-pass2", "a live passphrase")
        page.click("#create-btn")
        expect(page.locator("#account")).to_be_visible(timeout=20_000)
        self.address = page.locator("#address").inner_text()

    def funded(self, node: UpNode) -> Wallet:
        self.page.click("#faucet-btn")
        expect(self.page.locator("#faucet-msg")).to_contain_text("The faucet sent")
        _mine(node)
        expect(self.page.locator("#balance")).to_have_text("10.00000000", timeout=10_000)
        return self

    def row(self, txid: str) -> Any:
        return self.page.locator(f'#history tr[data-txid="{txid}"]')

    def broadcasts(self) -> list[Request]:
        return [r for r in self.requests if r.url.endswith("/api/broadcast")]


@pytest.fixture
def wallet(open_page: Callable[[], Page], node: UpNode) -> Callable[[], Wallet]:
    return lambda: Wallet(open_page(), node)


def test_a_payment_request_round_trip(wallet: Callable[[], Wallet], node: UpNode) -> None:
    alice = wallet()
    alice.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    for bad, message in [("abc", "an amount is digits"), ("0", "ask for more than zero")]:
        alice.page.fill("#request-amount", bad)
        alice.page.click("#request-btn")
        expect(alice.page.locator("#request-amount-msg")).to_contain_text(message)
        expect(alice.page.locator("#request-out")).to_be_hidden()
    alice.page.fill("#request-amount", "0.75")
    alice.page.fill("#request-label", "Lunch ☕ & tea")
    alice.page.click("#request-btn")
    uri = f"pybtc:{alice.address}?amount=0.75&label=Lunch%20%E2%98%95%20%26%20tea"
    expect(alice.page.locator("#request-uri")).to_have_text(uri)
    qr = alice.page.locator("#request-qr")
    expect(qr).to_have_attribute("src", re.compile(r"^/api/payment-request\.svg\?"))
    alice.page.wait_for_function("() => document.getElementById('request-qr').naturalWidth > 100")
    alice.page.click("#request-copy")
    assert alice.page.evaluate("() => navigator.clipboard.readText()") == uri
    alice.page.click("#copy-address")
    assert alice.page.evaluate("() => navigator.clipboard.readText()") == alice.address

    bob = wallet().funded(node)
    bob.page.fill("#send-to", uri)
    expect(bob.page.locator("#send-to")).to_have_value(alice.address)
    expect(bob.page.locator("#send-amount")).to_have_value("0.75000000")
    expect(bob.page.locator("#send-label")).to_have_text("Payment request: “Lunch ☕ & tea”")
    expect(bob.page.locator("#to-msg")).to_have_text("")
    bob.page.click("#send-review")
    expect(bob.page.locator("#confirm-label")).to_have_text("Lunch ☕ & tea")
    expect(bob.page.locator("#confirm-total")).to_have_text("0.75001000 pyBTC")
    bob.page.click("#confirm-send")
    txid = bob.page.locator("#sent-txid").inner_text()
    expect(alice.row(txid)).to_contain_text("Pending", timeout=10_000)
    expect(alice.page.locator("#unconfirmed")).to_have_text("0.75000000")
    expect(bob.page.locator("#send-label")).to_be_hidden()  # the request is used up
    _mine(node)
    expect(alice.row(txid).locator("td").first).to_contain_text("Confirmed", timeout=10_000)
    expect(alice.page.locator("#balance")).to_have_text("0.75000000")
    expect(alice.page.locator("#spendable")).to_have_text("0.75000000")
    # the history's columns: counterparty, amount, fee (paid by the sender only), balance after
    mine = alice.row(txid).locator("td")
    expect(mine.nth(2)).to_contain_text(f"from {bob.address[:8]}")
    expect(mine.nth(3)).to_have_text("+0.75000000")
    expect(mine.nth(4)).to_have_text("—")
    expect(mine.nth(5)).to_have_text("0.75000000")
    expect(mine.nth(1)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$"))
    theirs = bob.row(txid).locator("td")
    expect(theirs.nth(2)).to_contain_text(f"to {alice.address[:8]}", timeout=10_000)
    expect(theirs.nth(3)).to_have_text("−0.75001000")
    expect(theirs.nth(4)).to_have_text("0.00001000")
    expect(theirs.nth(5)).to_have_text("9.24999000")


BAD_URIS = [  # (what is pasted, what the message says); "{a}" is a good address
    ("pybtc:", "it names no address"),
    ("pybtc:P123?amount=1", "its address: an address has 34 characters"),
    ("pybtc:{a}?amount=abc", "its amount is not right: an amount is digits"),
    ("pybtc:{a}?amount=0", "its amount is zero"),
    ("pybtc:{a}?amount=1.000000001", "at most 8 decimal places"),
    ("pybtc:{a}?amount=1&amount=2", "it gives amount twice"),
    ("pybtc:{a}?req-expires=9", 'it requires "req-expires"'),
    ("pybtc:{a}?label=%E2%98", "its label is not percent-encoded right"),
    ("pybtc:{a}?label=" + "x" * 101, "longer than 100 characters"),
    ("pybtc:{a}?label=a%0Ab", "its label holds a control character"),
]


def test_a_bad_payment_request_fills_nothing(wallet: Callable[[], Wallet], node: UpNode) -> None:
    carol = wallet().funded(node)
    other = wallet().address
    typo = other[:-1] + ("2" if other[-1] != "2" else "3")
    for text, message in [*BAD_URIS, (f"pybtc:{typo}", "a character is mistyped")]:
        pasted = text.format(a=other)
        carol.page.fill("#send-to", pasted)
        expect(carol.page.locator("#to-msg")).to_contain_text("That payment request is not right")
        expect(carol.page.locator("#to-msg")).to_contain_text(message)
        expect(carol.page.locator("#send-to")).to_have_value(pasted)
        expect(carol.page.locator("#send-amount")).to_have_value("")
        expect(carol.page.locator("#send-label")).to_be_hidden()
        carol.page.click("#send-review")
        expect(carol.page.locator("#confirm-panel")).to_be_hidden()
    assert carol.broadcasts() == []


def test_next_block_fee_and_messages_that_follow_the_transaction(
    wallet: Callable[[], Wallet], node: UpNode, console_errors: list[str]
) -> None:
    dave = wallet()
    dave.page.click("#faucet-btn")
    expect(dave.page.locator("#faucet-status")).to_have_text(re.compile("^Pending"))
    # asked again too soon: the wait counts down, then the button is offered again
    dave.page.click("#faucet-btn")
    message = dave.page.locator("#faucet-wait")
    expect(message).to_contain_text(re.compile(r"try again in \d+ s"))
    expect(dave.page.locator("#faucet-btn")).to_be_disabled()
    first = int(re.findall(r"in (\d+) s", message.inner_text())[0])
    expect(message).to_contain_text(f"try again in {first - 1} s", timeout=3_000)
    expect(message).to_be_hidden(timeout=(FAUCET_INTERVAL + 5) * 1000)
    expect(dave.page.locator("#faucet-btn")).to_be_enabled()
    console_errors[:] = [e for e in console_errors if "status of 429" not in e]

    _mine(node)
    expect(dave.page.locator("#faucet-msg")).to_contain_text("Confirmed", timeout=10_000)
    expect(dave.page.locator("#faucet-msg")).not_to_contain_text("Pending")

    fees = node.get("/fees")
    expect(dave.page.locator("#fee-next")).to_contain_text(format_amount(fees["next_block"]))
    dave.page.fill("#send-fee", "0.5")
    dave.page.click("#fee-next")
    expect(dave.page.locator("#send-fee")).to_have_value(format_amount(fees["next_block"]))
    expect(dave.page.locator("#fee-next")).to_have_attribute("aria-pressed", "true")
    dave.page.fill("#send-to", wallet().address)
    dave.page.fill("#send-amount", "1")
    dave.page.click("#send-review")
    expect(dave.page.locator("#confirm-fee")).to_have_text(
        f"{format_amount(fees['next_block'])} pyBTC"
    )
    dave.page.click("#confirm-send")
    txid = dave.page.locator("#sent-txid").inner_text()
    assert node.get(f"/tx/{txid}")["blocks_to_wait"] == 1
    status = dave.page.locator("#sent-status")
    expect(status).to_contain_text("Pending")
    expect(status).to_contain_text("next block")
    _mine(node)
    expect(status).to_have_text(re.compile(r"^Confirmed in block \d+$"), timeout=10_000)
    height = node.get(f"/tx/{txid}")["height"]
    expect(status).to_have_text(f"Confirmed in block {height}")
    _mine(node)  # a later block changes nothing it says
    expect(dave.row(txid).locator("td").first).to_contain_text("2 confirmations", timeout=10_000)
    expect(status).to_have_text(f"Confirmed in block {height}")
    expect(dave.page.locator("#send-result")).not_to_contain_text("ending")


def test_a_replaced_transaction_is_shown_dropped_with_why(
    wallet: Callable[[], Wallet], node: UpNode
) -> None:
    """Erin's transfer is replaced on the node (the same nonce, a higher fee, signed with her
    key elsewhere): without a reload her Send card and history say it was dropped and why, and
    the replacement shows as pending with the fee it paid."""
    erin = wallet().funded(node)
    frank = wallet().address
    erin.page.fill("#send-to", frank)
    erin.page.fill("#send-amount", "2")
    erin.page.click("#send-review")
    erin.page.click("#confirm-send")
    first = erin.page.locator("#sent-txid").inner_text()
    expect(erin.row(first).locator("td").first).to_contain_text("Pending")
    stored = json.loads(erin.page.evaluate("() => localStorage.getItem('pybtc-wallet:regtest')"))
    key = decrypt_key(stored, "a live passphrase")
    replacement = Transaction.create(
        key,
        frank,
        2 * COIN,
        fee=5_000,
        nonce=0,
        timestamp=int(time.time()),
        network_id=REGTEST.network_id,
    )
    assert node.post("/transactions/new", replacement.to_dict())[0] == 201
    why = "Dropped: replaced by a transaction with the same nonce and a higher fee"
    expect(erin.page.locator("#sent-status")).to_have_text(why, timeout=10_000)
    expect(erin.row(first).locator("td").first).to_have_text(why)
    again = erin.row(replacement.txid).locator("td")
    expect(again.first).to_contain_text("Pending")
    expect(again.nth(4)).to_have_text("0.00005000")
    expect(erin.page.locator("#spendable")).to_have_text("7.99995000")
