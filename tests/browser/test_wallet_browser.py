"""The browser wallet of a whole node (`pybtc up`: Redis, ledger, miner, explorer, wallet) in
Debian's chromium, used as people use it.

Two browser contexts are two people. Their wallets are made in the page (WebCrypto Ed25519,
PBKDF2 + AES-GCM), funded by the faucet (the node's own key; blocks come from the node's miner
through `GET /mine`), and send to each other; every request the pages make is recorded, and
none may carry a passphrase or a private key. A backup is exported, storage cleared, the backup
imported; every bad input of the send form is refused with its message and sends nothing; a
page without WebCrypto (not a secure context) falls back to the bundled tweetnacl; a transfer
signed by `pybtc wallet` shows up in a browser wallet. Screenshots: artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from pybtc import REGTEST, Transaction
from pybtc.validation import validate_transaction
from services.wallet.keyfile import decrypt_key
from tests.browser.browserutil import screenshot
from tests.upnode import PYBTC, UpNode

STORE = "pybtc-wallet:regtest"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    started = UpNode(tmp_path_factory.mktemp("up") / "data", PYBTC_FAUCET_INTERVAL="1")
    try:
        started.wait_ready()
        _mine(started)  # the faucet spends the node's key, which the miner pays
        yield started
    finally:
        started.stop()


def _mine(node: UpNode) -> None:
    assert node.get("/mine", timeout=60)["message"] == "new block found"


class Person:
    """One browser context with the wallet open, and every request it made."""

    def __init__(self, page: Page, node: UpNode, passphrase: str, wallet_url: str = "") -> None:
        self.page = page
        self.node = node
        self.passphrase = passphrase
        self.requests: list[Request] = []
        self.stored: dict[str, Any] = {}
        page.on("request", lambda request: self.requests.append(request))
        page.goto(f"{wallet_url or node.wallet_url}/")

    def create(self) -> str:
        self.page.fill("#create-pass", self.passphrase)
        self.page.fill("#create-pass2", self.passphrase)
        self.page.click("#create-btn")
        expect(self.page.locator("#account")).to_be_visible(timeout=20_000)
        self.stored = self.wallet_file()
        return self.address

    @property
    def address(self) -> str:
        return self.page.locator("#address").inner_text()

    def wallet_file(self) -> dict[str, Any]:
        return json.loads(self.page.evaluate(f"() => localStorage.getItem('{STORE}')"))

    def secrets(self) -> list[str]:
        """What must never leave the page: the passphrase and the key in every encoding."""
        seed = decrypt_key(self.stored, self.passphrase).seed
        return [
            self.passphrase,
            seed.hex(),
            base64.urlsafe_b64encode(seed).decode().rstrip("="),
            base64.b64encode(seed).decode().rstrip("="),
        ]

    def faucet(self) -> None:
        self.page.click("#faucet-btn")
        expect(self.page.locator("#faucet-msg")).to_contain_text("The faucet sent")

    def fill_send(self, to: str, amount: str, fee: str | None = None) -> None:
        self.page.fill("#send-to", to)
        self.page.fill("#send-amount", amount)
        if fee is not None:
            self.page.fill("#send-fee", fee)
        self.page.click("#send-review")

    def row(self, txid: str) -> Any:
        return self.page.locator(f'#history tr[data-txid="{txid}"] td').first

    def assert_no_secret_sent(self) -> None:
        secrets = self.secrets()
        assert self.requests, "no request recorded"
        for request in self.requests:
            seen = " ".join(
                [request.url, request.post_data or "", json.dumps(request.all_headers())]
            )
            for secret in secrets:
                assert secret not in seen, f"a secret went out in {request.method} {request.url}"


@pytest.fixture
def person(open_page: Callable[[], Page], node: UpNode) -> Callable[[str], Person]:
    return lambda passphrase: Person(open_page(), node, passphrase)


def _broadcasts(someone: Person) -> list[Request]:
    return [r for r in someone.requests if r.url.endswith("/api/broadcast")]


def _miner_address(node: UpNode) -> str:
    """Some valid address other than the test's wallets: who the tip's coinbase paid."""
    tip = node.get("/status")["tip"]
    return str(node.get(f"/blocks/{tip}")["block"]["transactions"][0]["recipient"])


def _mempool_count(node: UpNode) -> int:
    return int(node.get("/status")["mempool_size"])


def test_two_wallets_send_pending_then_confirmed(
    person: Callable[[str], Person], node: UpNode
) -> None:
    alice = person("alice's long passphrase")
    screenshot(alice.page, "wallet-open")
    alice.create()
    alice.faucet()
    _mine(node)
    expect(alice.page.locator("#balance")).to_have_text("10.00000000", timeout=10_000)

    bob = person("bob's other passphrase ☃")
    bob_address = bob.create()
    alice.fill_send(bob_address, "2.5")
    expect(alice.page.locator("#confirm-panel")).to_be_visible()
    expect(alice.page.locator("#confirm-total")).to_have_text("2.50001000 pyBTC")
    screenshot(alice.page, "wallet-send-confirm")
    alice.page.click("#confirm-send")
    txid = alice.page.locator("#sent-txid").inner_text()
    assert len(txid) == 64
    expect(alice.row(txid)).to_contain_text("Pending · position 1 in the mempool")
    expect(bob.row(txid)).to_contain_text("Pending", timeout=10_000)  # pushed, no reload
    expect(bob.page.locator("#unconfirmed")).to_have_text("2.50000000")
    screenshot(alice.page, "wallet-sent-pending")

    _mine(node)
    expect(alice.row(txid)).to_contain_text("Confirmed · 1 confirmation", timeout=10_000)
    expect(bob.row(txid)).to_contain_text("Confirmed · 1 confirmation", timeout=10_000)
    expect(bob.page.locator("#balance")).to_have_text("2.50000000")
    expect(alice.page.locator("#balance")).to_have_text("7.49999000")
    screenshot(bob.page, "wallet-received")

    view = node.get(f"/tx/{txid}")  # the browser's signature, checked by Python
    tx = Transaction.from_dict(view["transaction"])
    validate_transaction(tx, REGTEST)
    assert (tx.sender, tx.recipient, tx.amount) == (alice.address, bob_address, 250_000_000)

    alice.page.click(f'#history tr[data-txid="{txid}"] a.txid')  # to the explorer
    expect(alice.page.locator("p.status")).to_contain_text("Confirmed in block")

    alice.assert_no_secret_sent()
    bob.assert_no_secret_sent()


def test_export_clear_import_unlock(
    person: Callable[[str], Person], node: UpNode, tmp_path: Path
) -> None:
    carol = person("carol's passphrase")
    address = carol.create()
    carol.faucet()
    _mine(node)
    expect(carol.page.locator("#balance")).to_have_text("10.00000000", timeout=10_000)
    with carol.page.expect_download() as download:
        carol.page.click("#export-btn")
    backup = tmp_path / "backup.json"
    download.value.save_as(backup)
    assert decrypt_key(json.loads(backup.read_text()), carol.passphrase).address == address

    carol.page.evaluate("() => localStorage.clear()")
    carol.page.reload()
    expect(carol.page.locator("#setup")).to_be_visible()
    carol.page.set_input_files("#import-file", str(backup))
    carol.page.fill("#import-pass", "not carol's passphrase")
    carol.page.click("#import-btn")
    expect(carol.page.locator("#import-msg")).to_have_text(
        "wrong passphrase, or the file was changed"
    )
    carol.page.fill("#import-pass", carol.passphrase)
    carol.page.click("#import-btn")
    expect(carol.page.locator("#address")).to_have_text(address, timeout=20_000)
    expect(carol.page.locator("#balance")).to_have_text("10.00000000")

    carol.page.reload()  # locked again: the key lived only in the page
    expect(carol.page.locator("#unlock")).to_be_visible()
    expect(carol.page.locator("#locked-address")).to_have_text(address)
    carol.page.fill("#unlock-pass", "wrong")
    carol.page.click("#unlock-btn")
    expect(carol.page.locator("#unlock-msg")).to_have_text(
        "wrong passphrase, or the file was changed", timeout=20_000
    )
    screenshot(carol.page, "wallet-unlock-refused")
    carol.page.fill("#unlock-pass", carol.passphrase)
    carol.page.click("#unlock-btn")
    expect(carol.page.locator("#balance")).to_have_text("10.00000000", timeout=20_000)
    carol.assert_no_secret_sent()


BAD_SENDS = [  # (to, amount, fee, field, message); "{self}", "{typo}" and "{other}" filled in
    ("{other}", "0", None, "#amount-msg", "Amount: send more than zero."),
    ("{other}", "-1", None, "#amount-msg", "Amount: "),
    ("{other}", "0.000000001", None, "#amount-msg", "decimal"),
    ("{other}", "1e3", None, "#amount-msg", "Amount: "),
    ("{other}", "abc", None, "#amount-msg", "Amount: "),
    ("{other}", "1000", None, "#amount-msg", "more than you can spend"),
    ("{other}", "9.99999999", None, "#amount-msg", "more than you can spend"),
    ("{other}", "1", "0.00000001", "#fee-msg", "at least 0.00001000"),
    ("{other}", "1", "-0.1", "#fee-msg", "Fee: "),
    ("{typo}", "1", None, "#to-msg", "a character is mistyped"),
    ("P123", "1", None, "#to-msg", "an address has 34 characters"),
    ("{self}", "1", None, "#to-msg", "your own address"),
    ("", "1", None, "#to-msg", "Enter the address"),
]


def test_every_bad_input_is_refused_and_sends_nothing(
    person: Callable[[str], Person], node: UpNode
) -> None:
    dave = person("dave's passphrase")
    me = dave.create()
    dave.faucet()
    _mine(node)
    expect(dave.page.locator("#balance")).to_have_text("10.00000000", timeout=10_000)
    other = _miner_address(node)
    typo = other[:-1] + ("2" if other[-1] != "2" else "3")
    before = _mempool_count(node)
    for to, amount, fee, field, message in BAD_SENDS:
        target = to.format(self=me, typo=typo, other=other)
        dave.fill_send(target, amount, fee if fee is not None else "0.00001")
        expect(dave.page.locator(field)).to_contain_text(message)
        expect(dave.page.locator("#confirm-panel")).to_be_hidden()
        if message == "a character is mistyped":
            screenshot(dave.page, "wallet-send-refused")
    assert _broadcasts(dave) == []
    assert _mempool_count(node) == before
    dave.assert_no_secret_sent()


def test_without_webcrypto_the_bundled_library_signs(
    person: Callable[[str], Person], node: UpNode
) -> None:
    """A plain-HTTP page on another host has no crypto.subtle; simulate that before any script
    runs: keys and signatures come from tweetnacl, addresses and txids from the server."""
    erin = person("unused")
    erin.page.add_init_script("Object.defineProperty(crypto, 'subtle', {value: undefined})")
    erin.page.reload()
    expect(erin.page.locator("#mode-banner")).to_contain_text("not a secure context")
    expect(erin.page.locator("#import-form")).to_be_hidden()
    erin.page.fill("#create-pass", "tab only")
    erin.page.fill("#create-pass2", "tab only")
    erin.page.click("#create-btn")
    expect(erin.page.locator("#account")).to_be_visible()
    address = erin.address
    assert address.startswith("P")
    expect(erin.page.locator("#export-btn")).to_be_hidden()
    erin.faucet()
    _mine(node)
    expect(erin.page.locator("#balance")).to_have_text("10.00000000", timeout=10_000)
    erin.fill_send(_miner_address(node), "1")
    erin.page.click("#confirm-send")
    txid = erin.page.locator("#sent-txid").inner_text()
    tx = Transaction.from_dict(node.get(f"/tx/{txid}")["transaction"])
    validate_transaction(tx, REGTEST)
    assert tx.sender == address
    screenshot(erin.page, "wallet-fallback")
    assert erin.page.evaluate(f"() => localStorage.getItem('{STORE}')") is None


def test_a_cli_transfer_shows_in_the_browser_and_watch_only_view(
    person: Callable[[str], Person], node: UpNode, tmp_path: Path
) -> None:
    frank = person("frank's passphrase")
    address = frank.create()
    env = dict(
        os.environ,
        PYBTC_WALLET_FILE=str(tmp_path / "cli-wallet.json"),
        PYBTC_WALLET_PASSPHRASE="the cli's passphrase",
        PYBTC_LEDGER_URL=node.url,
        PYBTC_WALLET_URL=node.wallet_url,
        PYBTC_NETWORK="regtest",
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [PYBTC, "wallet", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    cli("new")
    cli("faucet")
    _mine(node)
    out = cli("send", address, "1.25", "--yes")
    txid = next(word for word in out.split() if len(word) == 64)
    expect(frank.row(txid)).to_contain_text("Pending", timeout=10_000)
    expect(frank.page.locator("#unconfirmed")).to_have_text("1.25000000")

    watcher = person("unused")
    watcher.page.fill("#watch-form input", address)
    watcher.page.click("#watch-form button")
    expect(watcher.page.locator("#address")).to_have_text(address)
    expect(watcher.row(txid)).to_contain_text("Pending")
    _mine(node)
    expect(watcher.row(txid)).to_contain_text("Confirmed", timeout=10_000)  # live
    expect(watcher.page.locator("#balance")).to_have_text("1.25000000")
    screenshot(watcher.page, "wallet-watch-only")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    """`pybtc up --nodes 3`: three whole nodes on one shared Redis, registered with node 1."""
    started = UpNode(tmp_path_factory.mktemp("up3") / "data", nodes=3)
    try:
        started.wait_ready(timeout=120)
        yield started
    finally:
        started.stop()


def test_a_wallet_on_node_1_pays_a_wallet_on_node_3(
    open_page: Callable[[], Page], network: UpNode
) -> None:
    """The README's `pybtc up --nodes 3`: a browser wallet on node 1 pays one on node 3; every
    node's explorer shows the block that confirms it."""
    assert network.get("/mine", timeout=60)["message"] == "new block found"  # node 1's faucet
    gina = Person(open_page(), network, "gina's passphrase", network.wallet_url_of(1))
    gina.create()
    gina.faucet()
    assert network.get("/mine", port=network.port + 1, timeout=60)  # node 2 mines it
    expect(gina.page.locator("#balance")).to_have_text("10.00000000", timeout=15_000)

    hal = Person(open_page(), network, "hal's passphrase", network.wallet_url_of(3))
    hal_address = hal.create()
    gina.fill_send(hal_address, "4")
    gina.page.click("#confirm-send")
    txid = gina.page.locator("#sent-txid").inner_text()
    expect(hal.row(txid)).to_contain_text("Pending", timeout=15_000)  # gossiped to node 3
    mined = network.get("/mine", port=network.port + 2, timeout=60)  # node 3 mines it
    expect(hal.row(txid)).to_contain_text("Confirmed", timeout=15_000)
    expect(gina.row(txid)).to_contain_text("Confirmed", timeout=15_000)
    expect(hal.page.locator("#balance")).to_have_text("4.00000000")
    screenshot(hal.page, "wallet-node3-received")
    explorer = open_page()
    for node in (1, 2, 3):
        explorer.goto(f"{network.explorer_url_of(node)}/")
        expect(explorer.locator("#stat-height")).to_have_text(str(mined["index"]), timeout=15_000)
    gina.assert_no_secret_sent()
    hal.assert_no_secret_sent()
