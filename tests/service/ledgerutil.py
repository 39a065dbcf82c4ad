"""Helpers for ledger service tests: build the real app, mine real blocks through its API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pybtc import REGTEST, Block, PrivateKey, Transaction
from pybtc.mining import mine_block
from services.common.settings import Settings


def ledger_settings(data_dir: Path, redis_url: str = "", **changes: Any) -> Settings:
    """Regtest settings for a ledger whose database lives in `data_dir`. Its miner is nowhere
    (port 1, closed) unless given: GET /mine must not find another test's or a user's miner on
    the default port."""
    changes.setdefault("miner_url", "http://127.0.0.1:1")
    return Settings(network="regtest", data_dir=data_dir, redis_url=redis_url, **changes)


def lone_miner_settings(data_dir: Path, **changes: Any) -> Settings:
    """Regtest settings for an on-demand miner with one worker whose ledger is nowhere (a
    closed loopback port): nothing it is asked for can be mined."""
    return Settings(
        network="regtest",
        data_dir=data_dir,
        ledger_url=f"http://127.0.0.1:{free_port()}",
        miner_workers=1,
        miner_mode="on-demand",
        **changes,
    )


async def mine(client: TestClient, address: str, count: int = 1) -> list[Block]:
    """Ask the ledger for a template, solve it (regtest PoW), submit it; `count` times."""
    blocks = []
    for _ in range(count):
        resp = await client.get("/mining/template", params={"address": address})
        assert resp.status == 200, await resp.text()
        template = Block.from_dict((await resp.json())["block"])
        block = mine_block(template)
        assert block is not None
        resp = await client.post("/mining/submit", json=block.to_dict())
        assert resp.status == 201, await resp.text()
        blocks.append(block)
    return blocks


async def send(
    client: TestClient,
    key: PrivateKey,
    recipient: str,
    amount: int,
    *,
    fee: int = 1_000,
    nonce: int | None = None,
    timestamp: int = 0,
) -> tuple[int, dict[str, Any], Transaction]:
    """Sign a transfer (next nonce from the ledger unless given) and POST it."""
    if nonce is None:
        info = await (await client.get(f"/address/{key.address}")).json()
        nonce = info["next_nonce"]
    tx = Transaction.create(
        key,
        recipient,
        amount,
        fee=fee,
        nonce=nonce,
        timestamp=timestamp,
        network_id=REGTEST.network_id,
    )
    resp = await client.post("/transactions/new", json=tx.to_dict())
    return resp.status, await resp.json(), tx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LedgerNode:
    """A real ledger app served on a real loopback port, so other ledgers can reach it."""

    def __init__(self, data_dir: Path, redis_url: str = "", **changes: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = ledger_settings(
            data_dir, redis_url, ledger_port=self.port, public_url=self.url, **changes
        )
        self.runner: Any = None

    async def start(self) -> LedgerNode:
        from aiohttp import web

        from services.node.app import create_app

        self.runner = web.AppRunner(create_app(self.settings))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def sync_rival(http: Any, base: str, branch: list[Block]) -> None:
    """Hand the ledger at `base` a rival branch the way one reaches a node: a peer (a stub
    serving the ledger's own chain up to the fork, then `branch`) announces its tip with
    `/nodes/resolve`, and the ledger syncs from it. A weaker branch's blocks POSTed to
    /mining/submit one by one would not be stored (409 `low-work`)."""
    from tests.service.stubpeers import StubPeer

    fork = branch[0].index - 1
    async with http.get(f"{base}/chain", params={"limit": str(fork)}) as resp:
        ours = [Block.from_dict(b) for b in (await resp.json())["chain"]]
    stub = await StubPeer([*ours, *branch], armed=True).start()
    try:
        async with http.post(f"{base}/nodes/resolve", json={"miner_node": stub.url}) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
            assert "peer_error" not in answer, answer
    finally:
        await stub.stop()
