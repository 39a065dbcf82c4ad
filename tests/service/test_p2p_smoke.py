"""Two ledgers that know each other only by URL converge through register and announcements."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from pybtc import Block
from pybtc.mining import mine_block
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode


async def _json(session: aiohttp.ClientSession, url: str) -> dict:  # type: ignore[type-arg]
    async with session.get(url) as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def test_register_then_blocks_reach_the_peer(tmp_path: Path) -> None:
    a = await LedgerNode(tmp_path / "a").start()
    b = await LedgerNode(tmp_path / "b").start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{a.url}/nodes/register", json={"nodes": b.url}) as resp:
                body = await resp.json()
                assert resp.status == 201, body
                assert body["added"] == [b.url]
            for _ in range(50):  # B registers back in the background
                if (await _json(http, f"{b.url}/nodes"))["peers"]:
                    break
                await asyncio.sleep(0.1)
            assert [p["url"] for p in (await _json(http, f"{b.url}/nodes"))["peers"]] == [a.url]
            for _ in range(3):
                template = await _json(
                    http, f"{a.url}/mining/template?address={test_key(0).address}"
                )
                block = mine_block(Block.from_dict(template["block"]))
                assert block is not None
                async with http.post(f"{a.url}/mining/submit", json=block.to_dict()) as resp:
                    assert resp.status == 201
            for _ in range(100):
                if (await _json(http, f"{b.url}/status"))["height"] == 4:
                    break
                await asyncio.sleep(0.1)
            sa, sb = await _json(http, f"{a.url}/status"), await _json(http, f"{b.url}/status")
            assert sb["tip"] == sa["tip"], (sa, sb)
    finally:
        await a.stop()
        await b.stop()


async def test_a_node_never_registers_itself(tmp_path: Path) -> None:
    a = await LedgerNode(tmp_path / "a").start()
    try:
        async with aiohttp.ClientSession() as http:
            for alias in (a.url, f"localhost:{a.port}", f"http://127.0.0.1:{a.port}/"):
                async with http.post(f"{a.url}/nodes/register", json={"nodes": alias}) as resp:
                    body = await resp.json()
                    assert resp.status == 400, body
                    assert body["reason"] == "self"
            assert (await _json(http, f"{a.url}/nodes"))["peers"] == []
    finally:
        await a.stop()


async def test_a_configured_peer_that_was_down_at_start_is_registered_later(
    tmp_path: Path,
) -> None:
    """PYBTC_PEERS is tried again at every periodic sync until the peer answers."""
    b = LedgerNode(tmp_path / "b")  # not started yet: down when A starts
    a = await LedgerNode(tmp_path / "a", peers=b.url, sync_interval=0.3).start()
    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(0.5)
            assert (await _json(http, f"{a.url}/nodes"))["peers"] == []
            await b.start()
            for _ in range(100):
                if (await _json(http, f"{a.url}/nodes"))["peers"]:
                    break
                await asyncio.sleep(0.1)
            assert [p["url"] for p in (await _json(http, f"{a.url}/nodes"))["peers"]] == [b.url]
    finally:
        await a.stop()
        await b.stop()
