"""The ledger announces what it accepts on the real Redis bus, and survives a Redis restart.

A second Bus (another origin, as another service of the node would be) subscribes on the same
Redis; the ledger's transactions, blocks, tip changes and reorgs must each arrive as a message.
Then Redis is stopped and started again on the same port: the ledger keeps accepting while it
is away (health "degraded"), reconnects by itself, and its announcements flow again.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pybtc import COIN
from services.common.bus import Bus, Envelope, Kind, Subscription
from services.common.embedded_redis import EmbeddedRedis
from services.node.app import create_app
from tests.chainutil import branch, test_key
from tests.service.ledgerutil import ledger_settings, mine, send


async def _next(sub: Subscription, kind: Kind, seconds: float = 5.0) -> Envelope:
    async def wait() -> Envelope:
        async for envelope in sub:
            if envelope.type == kind:
                return envelope
        raise AssertionError("subscription ended")

    return await asyncio.wait_for(wait(), seconds)


async def test_every_acceptance_is_announced(ledger_client: TestClient, redis_url: str) -> None:
    miner, alice = test_key(0), test_key(1)
    async with (
        Bus(redis_url, "regtest", "test-listener") as listener,
        listener.subscribe() as sub,
    ):
        blocks = await mine(ledger_client, miner.address, 2)
        announced = await _next(sub, Kind.BLOCK)
        assert announced.data["hash"] == blocks[0].hash
        assert announced.data["url"].startswith("http://")
        tip = await _next(sub, Kind.TIP)
        assert tip.data["hash"] == blocks[0].hash
        assert announced.origin.endswith("/ledger")

        status, _, tx = await send(ledger_client, miner, alice.address, COIN)
        assert status == 201
        tx_msg = await _next(sub, Kind.TX)
        assert tx_msg.data["txid"] == tx.txid
        assert tx_msg.data["tx"] == tx.to_dict()

        # a competing branch from block 2 that is longer: a reorg is announced
        rival = branch(blocks[0].header, 3, miner=test_key(5).address)
        for block in rival:
            resp = await ledger_client.post("/mining/submit", json=block.to_dict())
            assert resp.status == 201, await resp.text()
        reorg = await _next(sub, Kind.REORG)
        assert reorg.data["new_tip"] == rival[1].hash  # height 4 beats the old tip at 3
        assert reorg.data["depth"] == 1
        assert reorg.data["disconnected"] == [blocks[1].hash]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_ledger_survives_a_redis_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    port = _free_port()
    redis = EmbeddedRedis(port=port, data_dir=tmp_path / "redis", password="restart").start()
    try:
        client = await aiohttp_client(create_app(ledger_settings(tmp_path, redis.url)))
        miner = test_key(0)
        await mine(client, miner.address, 2)
        assert (await (await client.get("/healthz")).json())["status"] == "ok"

        redis.stop()
        # Redis is away: the ledger still accepts, and says it is degraded
        status, body, _ = await send(client, miner, test_key(1).address, COIN)
        assert status == 201, body
        await mine(client, miner.address)
        health = await _wait_health(client, "degraded")
        assert health["checks"]["redis"]["ok"] is False

        redis = EmbeddedRedis(port=port, data_dir=tmp_path / "redis", password="restart").start()
        await _wait_health(client, "ok", seconds=15)
        async with (
            Bus(redis.url, "regtest", "test-listener") as listener,
            listener.subscribe(Kind.BLOCK) as sub,
        ):
            block = (await mine(client, miner.address))[0]
            assert (await _next(sub, Kind.BLOCK)).data["hash"] == block.hash
    finally:
        redis.stop()


async def _wait_health(client: TestClient, status: str, seconds: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        health: dict[str, Any] = await (await client.get("/healthz")).json()
        if health["status"] == status:
            return health
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"health stayed {health}")
        await asyncio.sleep(0.1)
