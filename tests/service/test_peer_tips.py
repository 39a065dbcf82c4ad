"""`GET /nodes` shows each peer at the tip it last told, as soon as it tells it.

Three real ledgers on loopback that poll each other only once an hour (`sync_interval`): after
one of them mines a block and the others take it, every node lists every peer at the new tip,
with the time it learned it (`tip_at`), because the peers' answers to its announcement carry
their tips. A peer's block on the bus that is its tip counts too, and an answer naming a tip
that is not a header penalises the peer that sent it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from pybtc import REGTEST, Block
from pybtc.mining import mine_block
from services.common.bus import Bus
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode
from tests.service.stubpeers import StubPeer, build_chain

NO_POLL = 3_600.0
"""No health-check round in a test's lifetime: whatever a node knows, it was told."""
WAIT = 10.0
"""Seconds a tip may take to show (an announcement and its sync take well under one)."""


async def _json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


async def _peers(http: aiohttp.ClientSession, node: LedgerNode) -> dict[str, dict[str, Any]]:
    return {p["url"]: p for p in (await _json(http, f"{node.url}/nodes"))["peers"]}


async def _mine_on(http: aiohttp.ClientSession, node: LedgerNode) -> Block:
    template = await _json(http, f"{node.url}/mining/template?address={test_key(0).address}")
    block = mine_block(Block.from_dict(template["block"]))
    assert block is not None
    async with http.post(f"{node.url}/mining/submit", json=block.to_dict()) as resp:
        assert resp.status == 201, await resp.text()
    return block


async def test_every_node_shows_its_peers_at_the_tip_they_took(tmp_path: Path) -> None:
    nodes = [await LedgerNode(tmp_path / name, sync_interval=NO_POLL).start() for name in "abc"]
    a, b, c = nodes
    try:
        async with aiohttp.ClientSession() as http:
            for peer in (b, c):  # A tells B of C: a full mesh once registrations settle
                async with http.post(f"{a.url}/nodes/register", json={"nodes": peer.url}) as resp:
                    assert resp.status == 201, await resp.text()

            async def meshed() -> bool:
                return [len(await _peers(http, n)) for n in nodes] == [2, 2, 2]

            await _until(meshed, "each node has the two others as peers")
            for round_ in range(3):
                learned_after = int(time.time())
                block = await _mine_on(http, nodes[round_ % 3])

                async def all_current(block: Block = block) -> bool:
                    for node in nodes:
                        if (await _json(http, f"{node.url}/status"))["tip"] != block.hash:
                            return False
                        for peer in (await _peers(http, node)).values():
                            if (peer["tip"], peer["height"]) != (block.hash, block.index):
                                return False
                    return True

                await _until(all_current, f"every node lists every peer at block {block.index}")
                for node in nodes:
                    for peer in (await _peers(http, node)).values():
                        assert peer["tip_at"] >= learned_after, peer
    finally:
        for node in nodes:
            await node.stop()


async def test_a_peers_tip_block_on_the_bus_is_its_tip(tmp_path: Path, redis_url: str) -> None:
    chain = build_chain(2)
    stub = await StubPeer(chain).start()  # quiet: at genesis until armed
    a = await LedgerNode(tmp_path / "a", redis_url, sync_interval=NO_POLL).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{a.url}/nodes/register", json={"nodes": stub.url}) as resp:
                assert resp.status == 201, await resp.text()
            peer = (await _peers(http, a))[stub.url]
            assert (peer["tip"], peer["height"]) == (REGTEST.genesis.hash, 1)
            assert isinstance(peer["tip_at"], int)  # what its handshake said

            async def settled() -> bool:  # the handshake, then the sync that follows it
                return stub.count("GET", "/status") >= 2

            await _until(settled, "the sync after the registration asked the stub's status")
            await asyncio.sleep(0.2)
            stub.arm()
            block = chain[-1]
            async with Bus(redis_url, REGTEST.name, "stub/ledger") as bus:
                await bus.publish(
                    "block",
                    {
                        "hash": block.hash,
                        "height": block.index,
                        "previous_hash": block.previous_hash,
                        "is_tip": True,
                        "url": stub.url,
                    },
                )

                async def shown() -> bool:
                    peer = (await _peers(http, a))[stub.url]
                    return (peer["tip"], peer["height"]) == (block.hash, block.index)

                await _until(shown, "the stub listed at the tip it announced on the bus")
            await _until(
                lambda: _tip_is(http, a, block.hash), "the ledger took the block it fetched"
            )
    finally:
        await a.stop()
        await stub.stop()


async def _tip_is(http: aiohttp.ClientSession, node: LedgerNode, tip: str) -> bool:
    return bool((await _json(http, f"{node.url}/status"))["tip"] == tip)


class BadTipPeer(StubPeer):
    """Answers an announcement with a "tip" that is no header."""

    async def _resolve(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        return web.json_response(
            {"message": "Our chain is authoritative", "chain": [{"index": 2, "hash": "zz"}]}
        )


async def test_an_announcement_answered_with_a_bad_tip_penalises_the_peer(
    tmp_path: Path,
) -> None:
    stub = await BadTipPeer().start()
    a = await LedgerNode(tmp_path / "a", sync_interval=NO_POLL).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{a.url}/nodes/register", json={"nodes": stub.url}) as resp:
                assert resp.status == 201, await resp.text()
            await _mine_on(http, a)

            async def dropped() -> bool:
                return stub.url not in await _peers(http, a)

            await _until(dropped, "the peer that answered a bad tip is dropped")
            gone = (await _json(http, f"{a.url}/nodes"))["dropped"]
            assert [(d["url"], d["reason"]) for d in gone] == [(stub.url, "peer-bad-chain")]
            assert stub.count("GET", "/nodes/resolve") == 1
    finally:
        await a.stop()
        await stub.stop()
