"""`pybtc up --nodes 3`: three whole nodes from one command, as the README promises.

Each run is the real console script on regtest with its own data dir and ports. The nodes must
find each other (nodes 2 and 3 register with node 1, which passes them on), mine on one and
converge on every one, and a wallet on node 1 must pay a wallet on node 3: the faucet of node
1's wallet service funds a key, the transfer is broadcast through node 3's wallet service, and
every ledger agrees on the balances. With `--bus per-node` each node has its own Redis, so the
same story runs on HTTP gossip alone. SIGTERM stops everything, leaving no process behind.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from pybtc import REGTEST, Transaction
from tests.chainutil import test_key
from tests.upnode import UpNode

NODES = 3
CONVERGE_TIMEOUT = 60.0


@pytest.fixture(params=["shared", "per-node"])
def network(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UpNode]:
    started = UpNode(tmp_path / "data", nodes=NODES, bus=request.param)
    try:
        started.wait_ready(timeout=120)
        yield started
    finally:
        assert started.stop() == 0, "".join(started.lines[-30:])
        assert f"{NODES} nodes stopped" in "".join(started.lines)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def _tips(network: UpNode) -> list[tuple[int, str]]:
    return [
        (status["height"], status["tip"])
        for status in (_get(f"{network.ledger_url(k)}/status") for k in range(1, NODES + 1))
    ]


def _wait_for(network: UpNode, what: str, check: Any) -> None:
    """Until `check()` is true; fail listing every node's tip."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {CONVERGE_TIMEOUT:.0f}s; tips: {_tips(network)}")
        time.sleep(0.2)


def _same_tip(network: UpNode, height: int) -> bool:
    tips = _tips(network)
    return len(set(tips)) == 1 and tips[0][0] == height


class WalletService:
    """A node's wallet service over HTTP, with its CSRF cookie and token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with self.opener.open(f"{url}/api/csrf", timeout=10) as resp:
            self.token = json.loads(resp.read())["token"]

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "X-CSRF-Token": self.token},
        )
        with self.opener.open(request, timeout=30) as resp:
            assert resp.status == 201
            return json.loads(resp.read())


def test_three_nodes_converge_and_a_wallet_on_node_1_pays_one_on_node_3(
    network: UpNode,
) -> None:
    for k in range(1, NODES + 1):
        peers = {p["url"] for p in _get(f"{network.ledger_url(k)}/nodes")["peers"]}
        others = {network.ledger_url(j) for j in range(1, NODES + 1) if j != k}
        assert peers == others, f"node{k} knows {peers}"

    mined = _get(f"{network.ledger_url(1)}/mine")  # pays node 1's key, which its faucet spends
    _wait_for(network, "block 2 everywhere", lambda: _same_tip(network, mined["index"]))

    payer, payee = test_key(1), test_key(3)
    paid = WalletService(network.wallet_url_of(1)).post("/api/faucet", {"address": payer.address})
    for k in range(1, NODES + 1):  # the faucet's transaction reaches every mempool
        _wait_for(
            network,
            f"the faucet's transaction in node{k}'s mempool",
            lambda k=k: _get(f"{network.ledger_url(k)}/tx/{paid['txid']}")["status"] == "pending",
        )
    mined = _get(f"{network.ledger_url(2)}/mine")
    _wait_for(network, "the faucet's block everywhere", lambda: _same_tip(network, mined["index"]))

    transfer = Transaction.create(
        payer,
        payee.address,
        paid["amount"] // 2,
        fee=1_000,
        nonce=0,
        timestamp=int(time.time()),
        network_id=REGTEST.network_id,
    )
    sent = WalletService(network.wallet_url_of(3)).post("/api/broadcast", transfer.to_dict())
    assert sent["txid"] == transfer.txid
    mined = _get(f"{network.ledger_url(3)}/mine")
    _wait_for(
        network, "the transfer's block everywhere", lambda: _same_tip(network, mined["index"])
    )
    for k in range(1, NODES + 1):
        view = _get(f"{network.ledger_url(k)}/tx/{transfer.txid}")
        assert (view["status"], view["height"]) == ("confirmed", mined["index"])
        assert _get(f"{network.ledger_url(k)}/address/{payee.address}")["balance"] == (
            paid["amount"] // 2
        )
        assert _get(f"{network.ledger_url(k)}/address/{payer.address}")["balance"] == (
            paid["amount"] - paid["amount"] // 2 - 1_000
        )
    for k in range(1, NODES + 1):  # every explorer shows the same tip
        with urllib.request.urlopen(f"{network.explorer_url_of(k)}/", timeout=10) as resp:
            assert mined["hash"][:24] in resp.read().decode()
