"""The explorer against a real ledger (on a real port) and a real Redis: every page renders
from the ledger's indexes, search finds heights, hashes, txids and addresses, refusals are
readable pages, chain data is escaped, and announcements reach open pages as Server-Sent Events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST, Block, Transaction
from pybtc.mining import mine_block
from services.common.settings import Settings
from services.explorer.app import create_app
from tests.chainutil import branch, child_block, test_key
from tests.service.ledgerutil import LedgerNode, sync_rival


class World:
    """A ledger with a few blocks and a pending transaction, and an explorer client."""

    def __init__(self, node: LedgerNode, client: TestClient) -> None:
        self.node = node
        self.client = client
        self.blocks: list[Block] = []
        self.tx: Transaction | None = None

    async def mine(self, http: aiohttp.ClientSession, count: int = 1) -> None:
        for _ in range(count):
            url = f"{self.node.url}/mining/template?address={test_key(0).address}"
            async with http.get(url) as resp:
                template = Block.from_dict((await resp.json())["block"])
            block = mine_block(template)
            assert block is not None
            await self.submit(http, [block])
            self.blocks.append(block)

    async def submit(self, http: aiohttp.ClientSession, blocks: list[Block]) -> None:
        """Hand the ledger blocks mined elsewhere (a rival branch)."""
        for block in blocks:
            async with http.post(f"{self.node.url}/mining/submit", json=block.to_dict()) as resp:
                assert resp.status == 201, await resp.text()


@pytest.fixture
async def world(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[World]:
    node = await LedgerNode(tmp_path / "ledger", redis_url).start()
    settings = Settings(
        network="regtest",
        data_dir=tmp_path / "explorer",
        redis_url=redis_url,
        ledger_url=node.url,
        public_url=node.url,
    )
    client = await aiohttp_client(create_app(settings))
    w = World(node, client)
    async with aiohttp.ClientSession() as http:
        await w.mine(http, 3)
        w.tx = Transaction.create(
            test_key(0),
            test_key(1).address,
            2 * COIN,
            fee=2_000,
            nonce=0,
            timestamp=0,
            network_id=REGTEST.network_id,
        )
        async with http.post(f"{node.url}/transactions/new", json=w.tx.to_dict()) as resp:
            assert resp.status == 201
    try:
        yield w
    finally:
        await node.stop()


async def _page(client: TestClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, text[:500]
    assert resp.content_type == "text/html"
    assert "Content-Security-Policy" in resp.headers
    return text


async def test_every_page_renders(world: World) -> None:
    tip = world.blocks[-1]
    assert world.tx is not None
    dashboard = await _page(world.client, "/")
    assert tip.hash[:20] in dashboard
    assert world.tx.txid[:20] in dashboard  # the pending transaction
    blocks = await _page(world.client, "/blocks")
    assert all(b.hash in blocks for b in world.blocks)
    block = await _page(world.client, f"/block/{tip.hash}")
    assert "Block 4" in block
    assert tip.header.merkle_root in block
    tx = await _page(world.client, f"/tx/{world.tx.txid}")
    assert "Pending" in tx
    assert "2.00000000" in tx
    address = await _page(world.client, f"/address/{test_key(1).address}")
    assert "pending" in address
    assert "+2.00000000" in address
    mempool = await _page(world.client, "/mempool")
    assert "1 pending" in mempool
    network = await _page(world.client, "/network")
    assert "No peers registered" in network


@pytest.mark.parametrize(
    ("query", "expect"),
    [("2", "/block/"), ("genesis-hash", "/block/"), ("txid", "/tx/"), ("address", "/address/")],
)
async def test_search_finds_what_it_is_given(world: World, query: str, expect: str) -> None:
    assert world.tx is not None
    value = {
        "genesis-hash": REGTEST.genesis.hash,
        "txid": world.tx.txid,
        "address": test_key(0).address,
    }.get(query, query)
    resp = await world.client.get("/search", params={"q": value})
    assert resp.status == 200
    assert resp.url.path.startswith(expect)


async def test_search_explains_a_mistyped_address(world: World) -> None:
    good = test_key(0).address
    typo = good[:-1] + ("a" if good[-1] != "a" else "b")
    text = await _page(world.client, f"/search?q={typo}", status=400)
    assert "checksum does not match" in text


@pytest.mark.parametrize(
    "path",
    [
        "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/address/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        '/address/P"><img src=x onerror=alert(1)>',
        "/tx/%3Cimg%20onerror%3Dalert(1)%3E",
        "/block/zz",
        "/height/99999",
        "/nope",
        "/blocks?before=x",
    ],
)
async def test_refusals_are_pages_and_never_echo_markup(world: World, path: str) -> None:
    resp = await world.client.get(path)
    text = await resp.text()
    assert 400 <= resp.status < 500, text[:300]
    assert resp.content_type == "text/html"
    assert "<script>alert" not in text
    assert "<img" not in text
    assert "onerror=alert" not in text or "onerror=alert(1)&gt;" in text


async def test_new_blocks_reach_open_pages(world: World) -> None:
    async with world.client.get("/events") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert (await asyncio.wait_for(stream.content.readline(), 5)).startswith(b"event: hello")
        async with aiohttp.ClientSession() as http:
            await world.mine(http)
        deadline = asyncio.get_running_loop().time() + 10
        seen = []
        while asyncio.get_running_loop().time() < deadline:
            line = await asyncio.wait_for(stream.content.readline(), 10)
            seen.append(line)
            if line.startswith(b"event: tip"):
                data = await stream.content.readline()
                assert world.blocks[-1].hash.encode() in data
                return
        raise AssertionError(f"no tip event; saw {seen}")
    summary = await (await world.client.get("/api/summary")).json()
    assert summary["height"] == 5


async def test_forks_page_draws_stale_branches_and_lists_reorgs(world: World) -> None:
    quiet = await _page(world.client, "/forks")
    assert "No reorg yet" in quiet
    rival = branch(world.blocks[0].header, 3, miner=test_key(5).address)  # from height 2
    async with aiohttp.ClientSession() as http:
        await sync_rival(http, world.node.url, rival)
    page = await _page(world.client, "/forks")
    assert 'id="reorgs"' in page
    for stale in world.blocks[1:]:  # the old branch is drawn, as stale blocks
        assert f'href="/block/{stale.hash}"' in page
    assert 'class="stale"' in page
    assert f'href="/block/{rival[-1].hash}"' in page
    assert '<td data-label="Depth">2</td>' in page  # depth of the reorg: two blocks replaced


async def test_tx_page_tells_what_a_reorg_did(world: World) -> None:
    """A confirmed transaction whose block a reorg disconnects is shown re-queued (pending
    again); one that the winning branch double-spends is shown dropped, with the reason."""
    assert world.tx is not None
    async with aiohttp.ClientSession() as http:
        await world.mine(http)  # confirms world.tx at height 5
        fork = world.blocks[2].header  # height 4
        double = Transaction.create(
            test_key(0),
            test_key(2).address,
            COIN,
            fee=1_000,
            nonce=0,
            timestamp=0,
            network_id=REGTEST.network_id,
        )
        loser_tx = world.tx
        confirmed = await _page(world.client, f"/tx/{loser_tx.txid}")
        assert "Confirmed in block" in confirmed
        assert 'id="tx-fate"' not in confirmed
        winning = [child_block(fork, [double], miner=test_key(5).address)]
        winning += branch(winning[0].header, 1, miner=test_key(5).address)
        await world.submit(http, winning)
    dropped = await _page(world.client, f"/tx/{loser_tx.txid}")
    assert "Dropped" in dropped
    assert "same nonce is in the best chain" in dropped
    assert 'id="tx-fate"' in dropped
    assert f'href="/block/{winning[-1].hash}"' in dropped  # the reorg's new tip
    forks = await _page(world.client, "/forks")
    assert f'href="/tx/{loser_tx.txid}"' in forks


async def test_tx_page_shows_a_requeued_transaction(world: World) -> None:
    assert world.tx is not None
    async with aiohttp.ClientSession() as http:
        await world.mine(http)  # confirms world.tx at height 5
        rival = branch(world.blocks[2].header, 2, miner=test_key(5).address)
        await world.submit(http, rival)
        page = await _page(world.client, f"/tx/{world.tx.txid}")
        assert "Re-queued after a reorg" in page
        assert "position 1 in the mempool" in page
        assert "put it back in the mempool" in page
        await world.mine(http)
    again = await _page(world.client, f"/tx/{world.tx.txid}")
    assert "Confirmed in block" in again
    assert "confirmed again since" in again


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


async def test_refused_transactions_are_listed_as_text(world: World) -> None:
    """A transaction the ledger refused is listed on the mempool page exactly as sent (its
    claimed txid and the reason, which quotes the bad recipient), escaped."""
    assert world.tx is not None
    hostile = world.tx.to_dict() | {"recipient": HOSTILE, "txid": HOSTILE[:40]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{world.node.url}/transactions/new", json=hostile) as resp,
    ):
        assert resp.status == 400
    page = await _page(world.client, "/mempool")
    assert 'id="rejections"' in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img" not in page
    assert "<script>alert" not in page
    assert "bad-address" in page


async def test_mempool_pages_in_mining_order(world: World) -> None:
    """100 pending transactions per page; links to the next and previous pages."""
    async with aiohttp.ClientSession() as http:
        for nonce in range(1, 101):  # world.tx has nonce 0: 101 pending in all
            tx = Transaction.create(
                test_key(0),
                test_key(1).address,
                1_000,
                fee=1_000,
                nonce=nonce,
                timestamp=0,
                network_id=REGTEST.network_id,
            )
            async with http.post(f"{world.node.url}/transactions/new", json=tx.to_dict()) as resp:
                assert resp.status == 201, await resp.text()
    first = await _page(world.client, "/mempool")
    assert "101 pending" in first
    assert 'href="/mempool?offset=100"' in first
    assert "earlier in mining order" not in first
    second = await _page(world.client, "/mempool?offset=100")
    assert second.count('<a href="/tx/') == 1
    assert 'href="/mempool?offset=0"' in second
    assert "later in mining order" not in second


async def test_a_missing_height_reads_right(world: World) -> None:
    text = await _page(world.client, "/height/99999", status=404)
    assert "This node has no block at height 99999." in text
    assert "like that" not in text


async def test_a_refused_transaction_id_says_what_was_refused_and_why(world: World) -> None:
    """An id the ledger never took but refused: its page lists each refusal; an id nobody
    sent is a 404 that says both."""
    broke = Transaction.create(
        test_key(3),  # nothing to spend
        test_key(2).address,
        COIN,
        fee=1_000,
        nonce=0,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{world.node.url}/transactions/new", json=broke.to_dict()) as resp,
    ):
        assert resp.status == 400
    page = await _page(world.client, f"/tx/{broke.txid}")
    assert "Refused transaction" in page
    assert 'id="tx-refusals"' in page
    assert "insufficient-funds" in page
    mempool = await _page(world.client, "/mempool")
    assert f'href="/tx/{broke.txid}"' in mempool
    unknown = await _page(world.client, f"/tx/{'ab' * 32}", status=404)
    assert "knows no transaction with that id, and refused none" in unknown


async def test_block_page_and_list_show_time_miner_fees_size(world: World) -> None:
    tip = world.blocks[-1]
    page = await _page(world.client, f"/block/{tip.hash}")
    for label in ("<th>Time</th>", "<th>Miner</th>", "<th>Fee total</th>", "<th>Size</th>"):
        assert label in page
    assert f'href="/address/{test_key(0).address}"' in page
    assert "0.00000000\u00a0pyBTC" in page  # no fees in it, with the unit
    assert 'class="ago"' in page
    listing = await _page(world.client, "/blocks")
    assert listing.count(f'href="/address/{test_key(0).address}"') == 3  # miner of each
    assert 'data-label="Age"' in listing


async def test_address_page_names_the_balance_with_pending(world: World) -> None:
    page = await _page(world.client, f"/address/{test_key(1).address}")
    assert "Balance incl. pending" in page
    assert "Unconfirmed" not in page
    assert "Spendable now" in page
    assert 'class="copy"' in page


async def test_mempool_page_shows_the_projected_blocks(world: World) -> None:
    page = await _page(world.client, "/mempool")
    assert 'id="projected-blocks"' in page
    assert "Next block" in page
    assert '<td data-label="Projected block">next</td>' in page
    assert world.tx is not None
    tx = await _page(world.client, f"/tx/{world.tx.txid}")
    assert "position 1 in the mempool · in the next block" in tx


async def test_the_block_tree_pages_back(world: World) -> None:
    async with aiohttp.ClientSession() as http:
        await world.mine(http, 40)  # height 44
    newest = await _page(world.client, "/forks")
    assert f'href="/block/{world.blocks[-1].hash}"' in newest
    assert 'href="/forks?to=' in newest
    older = await _page(world.client, "/forks?to=10")
    assert f'href="/block/{world.blocks[7].hash}"' in older  # height 10
    assert f'href="/block/{world.blocks[-1].hash}"' not in older
    assert 'href="/forks"' in older  # back to the tip


async def test_the_favicon_and_the_api_document_link(world: World) -> None:
    for path in ("/favicon.ico", "/common/favicon.svg"):
        resp = await world.client.get(path)
        assert resp.status == 200
        assert resp.content_type == "image/svg+xml"
    page = await _page(world.client, "/")
    assert '<link rel="icon" href="/common/favicon.svg"' in page
    assert f'href="{world.node.url}/openapi.yaml"' in page


def test_relative_ages_read_as_people_say_them() -> None:
    from services.common.pages import ago

    now = 1_000_000
    assert ago(now - 2, now) == "just now"
    assert ago(now - 42, now) == "42 s ago"
    assert ago(now - 3 * 60 - 5, now) == "3 min ago"
    assert ago(now - 2 * 3600, now) == "2 h ago"
    assert ago(now - 86400, now) == "1 day ago"
    assert ago(now - 5 * 86400, now) == "5 days ago"
    assert ago(now + 20, now) == "in 20 s"  # a miner's clock ahead of ours
    assert ago("x", now) == "?"


def test_the_tree_draws_the_tip_first() -> None:
    from services.explorer.views import layout_tree

    blocks = [
        {
            "index": h,
            "hash": f"{h:064x}",
            "previous_hash": f"{h - 1:064x}",
            "in_best_chain": True,
            "invalid_reason": None,
        }
        for h in range(2, 6)
    ]
    nodes = {n["height"]: n["x"] for n in layout_tree(blocks)["nodes"]}
    assert nodes[5] < nodes[4] < nodes[3] < nodes[2]
