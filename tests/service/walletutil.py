"""Helpers for wallet service tests: a real regtest ledger on a real port, the wallet app in
front of it sharing its data dir (so the faucet spends the node key that blocks were mined
to), POSTs that carry the CSRF token, and a snapshot of what a refusal must leave alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST, Block, PrivateKey, Transaction
from pybtc.mining import mine_block
from services.common.node_key import load_or_create_node_key
from services.common.settings import Settings
from services.wallet.app import create_app
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode, free_port

SENDER, ALICE, BOB = test_key(0), test_key(1), test_key(2)
SUBSIDY = REGTEST.subsidy(2)
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "pybtc_csrf"


@dataclass
class Wallet:
    """The wallet app (`client`) in front of a real ledger (`node`, reached directly by `http`)."""

    client: TestClient
    settings: Settings
    http: aiohttp.ClientSession
    node: LedgerNode | None

    @property
    def ledger_url(self) -> str:
        return self.settings.ledger_internal_url

    @property
    def faucet_key(self) -> PrivateKey:
        """The node key the faucet spends (made on first use, like the services do)."""
        return load_or_create_node_key(self.settings)

    # -- the ledger, directly --------------------------------------------------------------------

    async def ledger(self, path: str) -> Any:
        async with self.http.get(self.ledger_url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def ledger_status(self, path: str) -> int:
        async with self.http.get(self.ledger_url + path) as resp:
            return resp.status

    async def submit(self, tx: Transaction) -> None:
        """Hand the ledger a transaction directly (not through the wallet)."""
        async with self.http.post(self.ledger_url + "/transactions/new", json=tx.to_dict()) as r:
            assert r.status == 201, await r.text()

    async def mine(self, address: str, count: int = 1) -> list[Block]:
        """Template from the ledger, regtest proof of work here, submit; `count` times."""
        blocks = []
        for _ in range(count):
            template = await self.ledger(f"/mining/template?address={address}")
            block = mine_block(Block.from_dict(template["block"]))
            assert block is not None
            async with self.http.post(
                self.ledger_url + "/mining/submit", json=block.to_dict()
            ) as resp:
                assert resp.status == 201, await resp.text()
            blocks.append(block)
        return blocks

    async def snapshot(self) -> dict[str, Any]:
        """What a refusal must leave alone: tip, mempool, rejections, the test accounts."""
        status = await self.ledger("/status")
        pool = await self.ledger("/mempool")
        rejections = await self.ledger("/rejections")
        accounts = {}
        for address in (self.faucet_key.address, SENDER.address, ALICE.address, BOB.address):
            accounts[address] = await self.ledger(f"/address/{address}")
        return {
            "tip": status["tip"],
            "mempool_size": status["mempool_size"],
            "mempool": [tx["txid"] for tx in pool["transactions"]],
            "rejections": len(rejections["rejections"]),
            "accounts": accounts,
        }

    # -- the wallet ------------------------------------------------------------------------------

    async def token(self) -> str:
        """A CSRF token from GET /api/csrf (its cookie stays in the client's jar)."""
        resp = await self.client.get("/api/csrf")
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["token"]
        assert isinstance(token, str)
        return token

    async def post(
        self,
        path: str,
        body: bytes | Any,
        *,
        token: str | None = None,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        """POST `body` (bytes as they are, anything else as JSON text) as application/json
        with `token` in the CSRF header (default: the session's own; `csrf=False`: no header)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"}
        if csrf:
            sent[CSRF_HEADER] = await self.token() if token is None else token
        return await self.client.post(path, data=raw, headers=sent | (headers or {}))

    async def refused(
        self,
        path: str,
        body: bytes | Any,
        status: int,
        reason: str,
        *,
        reached_ledger: bool = False,
        **kw: Any,
    ) -> dict[str, Any]:
        """POST `body`; assert the refusal and that nothing moved. The ledger logs the
        transactions it refuses, so `reached_ledger` says whether one more rejection is due."""
        before = await self.snapshot()
        answer = await assert_refusal(await self.post(path, body, **kw), status, reason)
        after = await self.snapshot()
        assert after["rejections"] == before["rejections"] + reached_ledger
        assert {**after, "rejections": 0} == {**before, "rejections": 0}
        return answer


def transfer(
    key: PrivateKey = SENDER,
    recipient: str = ALICE.address,
    amount: int = COIN,
    *,
    fee: int = 1_000,
    nonce: int = 0,
    network_id: str = REGTEST.network_id,
) -> Transaction:
    """A signed transfer (timestamp 0, like the ledger tests)."""
    return Transaction.create(
        key, recipient, amount, fee=fee, nonce=nonce, timestamp=0, network_id=network_id
    )


async def assert_refusal(resp: ClientResponse, status: int, reason: str) -> dict[str, Any]:
    """A 4xx/5xx with a JSON `{"error": <text>, "reason": <the expected code>}`."""
    text = await resp.text()
    assert resp.content_type == "application/json", text
    body = json.loads(text)
    assert isinstance(body, dict), text
    assert (resp.status, body.get("reason")) == (status, reason), text
    assert set(body) == {"error", "reason"}, text
    assert isinstance(body["error"], str)
    assert body["error"]
    return body


def mistype(address: str) -> str:
    """`address` with one character changed to another Base58 character (a checksum error)."""
    return address[:17] + ("2" if address[17] != "2" else "3") + address[18:]


async def get_page(wallet: Wallet, path: str, status: int = 200) -> str:
    """GET an HTML page (or an HTML refusal) with the security headers and no traceback."""
    resp = await wallet.client.get(path)
    text = await resp.text()
    assert resp.status == status, text[:500]
    assert resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "Traceback" not in text
    return text


def wallet_settings(data_dir: Path, redis_url: str, ledger_url: str, **changes: Any) -> Settings:
    return Settings(
        network="regtest",
        data_dir=data_dir,
        redis_url=redis_url,
        ledger_url=ledger_url,
        public_url=ledger_url,  # the same origin as the ledger, so its announcements are ours
        **changes,
    )


@asynccontextmanager
async def open_wallet(
    aiohttp_client: Any,
    data_dir: Path,
    redis_url: str,
    *,
    ledger: bool = True,
    ledger_changes: dict[str, Any] | None = None,
    **changes: Any,
) -> AsyncIterator[Wallet]:
    """A ledger (unless `ledger` is False: then nothing listens at the ledger URL) and the
    wallet app with the same data dir; `changes` go to the wallet's Settings, `ledger_changes`
    to the ledger's."""
    node = None
    if ledger:
        node = await LedgerNode(data_dir, redis_url, **(ledger_changes or {})).start()
    url = node.url if node is not None else f"http://127.0.0.1:{free_port()}"
    settings = wallet_settings(data_dir, redis_url, url, **changes)
    client = await aiohttp_client(create_app(settings))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            yield Wallet(client, settings, http, node)
    finally:
        if node is not None:
            await node.stop()


@asynccontextmanager
async def funded_wallet(
    aiohttp_client: Any, tmp_path: Path, redis_url: str, **changes: Any
) -> AsyncIterator[Wallet]:
    """`open_wallet` where the faucet key holds two block rewards and the sender two more;
    `changes` go to the wallet's Settings."""
    async with open_wallet(aiohttp_client, tmp_path / "node", redis_url, **changes) as wallet:
        await wallet.mine(wallet.faucet_key.address, 2)
        await wallet.mine(SENDER.address, 2)
        yield wallet
