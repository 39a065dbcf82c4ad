"""The mempool's order, positions and waits are the miner's: the real ledger app, real Redis.

Every figure the API gives about the pool (GET /mempool's `position` and `block`,
GET /tx/{txid}'s `mempool_position` and `blocks_to_wait`, the 201 of POST /transactions/new,
GET /mempool/blocks, GET /fees) is checked against the block the ledger's own
/mining/template then /mining/submit path mines. A few tests shrink the block (the ledger's
params, not regtest's) so that a handful of transactions fill several blocks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST, Block, Transaction
from pybtc.mining import mine_block
from services.node.keys import LEDGER, NETWORK
from tests.chainutil import branch, test_key
from tests.service.ledgerutil import LedgerNode, mine, send, sync_rival

MINER, ALICE, BOB, CAROL, DAVE = (test_key(i) for i in range(5))


async def get_json(client: TestClient, path: str, **params: Any) -> Any:
    resp = await client.get(path, params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def submit(
    client: TestClient, key: Any, fee: int, nonce: int
) -> tuple[dict[str, Any], Transaction]:
    status, body, tx = await send(client, key, CAROL.address, COIN, fee=fee, nonce=nonce)
    assert status == 201, body
    return body, tx


def small_blocks(client: TestClient, capacity: int) -> None:
    """Blocks of `capacity` transactions besides the coinbase on this ledger only."""
    ledger = client.app[LEDGER]
    ledger.params = replace(REGTEST, max_block_transactions=capacity + 1)


async def pending_view(client: TestClient, tx: Transaction) -> tuple[int, int]:
    view = await get_json(client, f"/tx/{tx.txid}")
    assert view["status"] == "pending", view
    return view["mempool_position"], view["blocks_to_wait"]


async def test_one_senders_rising_fees_are_listed_and_mined_in_nonce_order(
    ledger_client: TestClient,
) -> None:
    """The issue's case: one sender's nonces with rising fees are listed in nonce order, the
    first is position 1 (in /tx and its 201), and the mined block holds them so."""
    await mine(ledger_client, MINER.address)
    sent = []
    for nonce, fee in enumerate((1_000, 2_000, 3_000)):
        body, tx = await submit(ledger_client, MINER, fee, nonce)
        assert (body["mempool_position"], body["blocks_to_wait"]) == (nonce + 1, 1)
        sent.append(tx)
    pool = await get_json(ledger_client, "/mempool")
    assert [t["nonce"] for t in pool["transactions"]] == [0, 1, 2]
    assert [t["position"] for t in pool["transactions"]] == [1, 2, 3]
    assert [t["block"] for t in pool["transactions"]] == [1, 1, 1]
    assert (pool["count"], pool["capacity"]) == (3, REGTEST.max_block_transactions - 1)
    assert [await pending_view(ledger_client, tx) for tx in sent] == [(1, 1), (2, 1), (3, 1)]
    (block,) = await mine(ledger_client, MINER.address)
    assert [tx.txid for tx in block.transactions[1:]] == [tx.txid for tx in sent]


async def test_positions_are_the_places_in_the_next_mined_block(ledger_client: TestClient) -> None:
    """A pool of four senders' chains, fees mixed: each transaction's mempool_position (in /tx,
    /mempool and its 201 if nothing came after it) is its index + 1 in the block mined next."""
    keys = (MINER, ALICE, BOB, DAVE)
    for key in keys:
        await mine(ledger_client, key.address)
    fees = {
        MINER: (1_000, 9_000, 1_200),
        ALICE: (5_000, 1_000),
        BOB: (5_000, 7_000, 7_000, 1_100),
        DAVE: (2_000,),
    }
    sent: list[Transaction] = []
    last_answer: dict[str, Any] = {}
    for round_ in range(4):  # interleaved arrivals, each chain in nonce order
        for key in keys:
            if round_ < len(fees[key]):
                last_answer, tx = await submit(ledger_client, key, fees[key][round_], round_)
                sent.append(tx)
    positions = {tx.txid: (await pending_view(ledger_client, tx))[0] for tx in sent}
    assert last_answer["mempool_position"] == positions[sent[-1].txid]
    pool = await get_json(ledger_client, "/mempool")
    assert {t["txid"]: t["position"] for t in pool["transactions"]} == positions
    (block,) = await mine(ledger_client, MINER.address)
    mined = [tx.txid for tx in block.transactions[1:]]
    assert sorted(mined) == sorted(positions)
    assert {txid: i + 1 for i, txid in enumerate(mined)} == positions
    assert mined[:2] == [sent[1].txid, sent[2].txid]  # Alice's 5,000 and Bob's tie: hers came first


async def test_positions_after_a_reorg_are_the_next_blocks(ledger_client: TestClient) -> None:
    """A reorg puts a block's transactions back in the pool (arriving after what was pending):
    /mempool and /tx then give the places the next mined block has them at."""
    await mine(ledger_client, MINER.address)
    (fork,) = await mine(ledger_client, ALICE.address)
    await submit(ledger_client, MINER, 1_000, 0)
    await submit(ledger_client, MINER, 3_000, 1)
    (mined,) = await mine(ledger_client, MINER.address)
    assert len(mined.transactions) == 3
    _, alice = await submit(ledger_client, ALICE, 2_000, 0)
    await sync_rival(ledger_client, "", branch(fork.header, 2, miner=BOB.address))
    pool = await get_json(ledger_client, "/mempool")
    assert pool["count"] == 3
    requeued = [t.txid for t in mined.transactions[1:]]
    expected = [alice.txid, *requeued]  # the miner's nonce 0 pays 1,000: Alice's 2,000 first
    assert [t["txid"] for t in pool["transactions"]] == expected
    for place, txid in enumerate(expected, start=1):
        view = await get_json(ledger_client, f"/tx/{txid}")
        assert (view["mempool_position"], view["blocks_to_wait"]) == (place, 1)
    (block,) = await mine(ledger_client, MINER.address)
    assert [tx.txid for tx in block.transactions[1:]] == expected


async def test_a_pool_past_one_block_waits_several(ledger_client: TestClient) -> None:
    """With 3 transactions a block, 7 pending fill 3 projected blocks: blocks_to_wait says
    which, /mempool/blocks sums them, /fees prices block 1 and block 3, and mining one block
    takes exactly block 1 while the rest move up."""
    for key in (MINER, ALICE, BOB):
        await mine(ledger_client, key.address)
    small_blocks(ledger_client, 3)
    sent = {}
    for key, nonce, fee in (
        (MINER, 0, 1_000),
        (MINER, 1, 6_000),
        (ALICE, 0, 4_000),
        (ALICE, 1, 2_000),
        (BOB, 0, 3_000),
        (BOB, 1, 1_500),
        (BOB, 2, 5_000),
    ):
        body, sent[(key.address, nonce)] = await submit(ledger_client, key, fee, nonce)
    assert (body["mempool_position"], body["blocks_to_wait"]) == (5, 2)  # Bob's third
    # mining order: A0 4000, B0 3000, A1 2000, B1 1500, B2 5000, M0 1000, M1 6000
    order = [(ALICE, 0), (BOB, 0), (ALICE, 1), (BOB, 1), (BOB, 2), (MINER, 0), (MINER, 1)]
    for place, (key, nonce) in enumerate(order, start=1):
        tx = sent[(key.address, nonce)]
        assert await pending_view(ledger_client, tx) == (place, (place - 1) // 3 + 1), place
    pool = await get_json(ledger_client, "/mempool", offset="3", limit="3")
    assert [t["position"] for t in pool["transactions"]] == [4, 5, 6]
    assert [t["block"] for t in pool["transactions"]] == [2, 2, 2]
    assert (pool["count"], pool["capacity"]) == (7, 3)

    blocks = await get_json(ledger_client, "/mempool/blocks")
    assert blocks == {
        "count": 7,
        "capacity": 3,
        "blocks": [
            summary(1, [4_000, 3_000, 2_000]),
            summary(2, [1_500, 5_000, 1_000]),
            summary(3, [6_000]),
        ],
        "more_blocks": 0,
        "more_transactions": 0,
    }
    fees = await get_json(ledger_client, "/fees")
    assert fees == {"minimum": 1_000, "next_block": 2_001, "economy": 1_000, "capacity": 3}

    (block,) = await mine(ledger_client, MINER.address)
    mined = [tx.txid for tx in block.transactions[1:]]
    assert mined == [sent[(k.address, n)].txid for k, n in order[:3]]
    for place, (key, nonce) in enumerate(order[3:], start=1):
        tx = sent[(key.address, nonce)]
        assert await pending_view(ledger_client, tx) == (place, (place - 1) // 3 + 1)


def summary(number: int, fees: list[int]) -> dict[str, int]:
    return {
        "block": number,
        "tx_count": len(fees),
        "fee_total": sum(fees),
        "fee_min": min(fees),
        "fee_max": max(fees),
        "amount_total": len(fees) * COIN,
    }


async def test_fees_land_a_newcomer_where_they_say(ledger_client: TestClient) -> None:
    """/fees's `next_block` puts a new sender's transaction in block 1 and `economy` within
    block 3 (one unit less does not); /mempool/blocks shows 8 blocks and counts the rest."""
    await mine(ledger_client, MINER.address)
    await mine(ledger_client, ALICE.address)
    small_blocks(ledger_client, 1)
    for nonce in range(10):
        await submit(ledger_client, MINER, 10_000 - 100 * nonce, nonce)
    blocks = await get_json(ledger_client, "/mempool/blocks")
    assert [b["tx_count"] for b in blocks["blocks"]] == [1] * 8
    assert (blocks["more_blocks"], blocks["more_transactions"]) == (2, 2)
    fees = await get_json(ledger_client, "/fees")
    assert (fees["next_block"], fees["economy"]) == (10_001, 9_801)
    body, _ = await submit(ledger_client, ALICE, fees["economy"] - 1, 0)
    assert body["blocks_to_wait"] == 4
    body, _ = await submit(ledger_client, ALICE, fees["economy"], 0)  # a replacement
    assert body["blocks_to_wait"] == 3
    fees = await get_json(ledger_client, "/fees")
    assert fees["next_block"] == 10_001
    body, _ = await submit(ledger_client, ALICE, fees["next_block"], 0)
    assert (body["mempool_position"], body["blocks_to_wait"]) == (1, 1)


async def test_the_order_is_computed_once_per_change(ledger_client: TestClient) -> None:
    """Reads between two changes of the pool share one computed order; a new transaction or
    a block makes a new one."""
    await mine(ledger_client, MINER.address)
    _, tx = await submit(ledger_client, MINER, 1_000, 0)
    ledger = ledger_client.app[LEDGER]
    view = ledger.mempool_view()
    await get_json(ledger_client, "/mempool")
    await get_json(ledger_client, f"/tx/{tx.txid}")
    await get_json(ledger_client, "/mempool/blocks")
    await get_json(ledger_client, "/fees")
    assert ledger.mempool_view() is view
    await submit(ledger_client, MINER, 1_000, 1)
    assert ledger.mempool_view() is not view
    view = ledger.mempool_view()
    await mine(ledger_client, MINER.address)
    assert ledger.mempool_view() is not view
    assert ledger.mempool_view().ordered == []


@pytest.mark.parametrize(
    "query",
    [
        {"offset": "-1"},
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": str(10**30)},
        {"offset": str(10**19)},
        {"offset": "1.5"},
        {"limit": "2.0"},
        {"offset": "ten"},
        {"limit": "1e3"},
        {"offset": " 1"},
    ],
)
async def test_bad_mempool_pages_are_400(ledger_client: TestClient, query: dict[str, str]) -> None:
    resp = await ledger_client.get("/mempool", params=query)
    body = await resp.json()
    assert (resp.status, body["reason"]) == (400, "bad-query"), body
    assert isinstance(body["error"], str)


async def test_an_empty_pool(ledger_client: TestClient) -> None:
    capacity = REGTEST.max_block_transactions - 1
    assert await get_json(ledger_client, "/mempool/blocks") == {
        "count": 0,
        "capacity": capacity,
        "blocks": [],
        "more_blocks": 0,
        "more_transactions": 0,
    }
    assert await get_json(ledger_client, "/fees") == {
        "minimum": 1_000,
        "next_block": 1_000,
        "economy": 1_000,
        "capacity": capacity,
    }
    pool = await get_json(ledger_client, "/mempool", offset=str(2**62))
    assert pool == {"count": 0, "capacity": capacity, "transactions": []}


async def test_a_peer_pulls_the_mempool_in_mining_order(tmp_path: Path) -> None:
    """A node catching up on a peer's mempool (what a resync does after a bus gap) reads the
    peer's GET /mempool and admits every transaction: one sender's rising fees arrive in nonce
    order, and the page's `block` field is not mistaken for a transaction field. (No bus here:
    it would hand the transactions over by itself.)"""
    a = await LedgerNode(tmp_path / "a").start()
    b = await LedgerNode(tmp_path / "b").start()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(
                    f"{a.url}/mining/template", params={"address": MINER.address}
                ) as resp:
                    block = mine_block(Block.from_dict((await resp.json())["block"]))
                assert block is not None
                for node in (a, b):
                    async with http.post(f"{node.url}/mining/submit", json=block.to_dict()) as r:
                        assert r.status == 201, await r.text()
            for nonce, fee in enumerate((1_000, 2_000, 3_000, 4_000)):
                tx = Transaction.create(
                    MINER,
                    CAROL.address,
                    COIN,
                    fee=fee,
                    nonce=nonce,
                    timestamp=0,
                    network_id=REGTEST.network_id,
                )
                async with http.post(f"{a.url}/transactions/new", json=tx.to_dict()) as resp:
                    assert resp.status == 201, await resp.text()
            await b.runner.app[NETWORK]._pull_mempool(a.url)
            pools = []
            for node in (a, b):
                async with http.get(f"{node.url}/mempool") as resp:
                    pools.append([t["txid"] for t in (await resp.json())["transactions"]])
            assert len(pools[0]) == 4
            assert pools[1] == pools[0]
    finally:
        await b.stop()
        await a.stop()
