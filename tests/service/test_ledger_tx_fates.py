"""GET /tx/{txid} after the tip moved under a transaction: what happened to it is kept.

The reorg cases (re-queued, then confirmed again; dropped as a double spend; evicted from a full
pool) are in test_ledger_api.py beside the reorg they follow; this file covers a pending
transaction that a new block (no reorg) makes invalid, one that a relayed double spend with a
higher fee replaces, a fate that outlives a restart, and the address history counts that pages
read instead of counting.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from pybtc import COIN, REGTEST, Block, Transaction
from services.node.app import create_app
from tests.chainutil import branch, child_block, test_key
from tests.service.ledgerutil import ledger_settings, mine, send, sync_rival

MINER, ALICE, BOB = (test_key(i) for i in range(3))


async def _tip(client: TestClient) -> Block:
    status = await (await client.get("/status")).json()
    view = await (await client.get(f"/blocks/{status['tip']}")).json()
    return Block.from_dict(view["block"])


async def _double_spend_in_a_new_block(client: TestClient) -> tuple[Transaction, Block]:
    """A pending miner -> Alice transfer, then a block (mined elsewhere) that spends the same
    nonce to Bob. Returns the pending one and the block."""
    await mine(client, MINER.address, 2)
    status, _, pending = await send(client, MINER, ALICE.address, COIN, nonce=0)
    assert status == 201
    conflicting = Transaction.create(
        MINER,
        BOB.address,
        2 * COIN,
        fee=1_000,
        nonce=0,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    block = child_block((await _tip(client)).header, [conflicting], miner=BOB.address)
    resp = await client.post("/mining/submit", json=block.to_dict())
    assert resp.status == 201, await resp.text()
    return pending, block


async def test_a_pending_transaction_invalidated_by_a_new_block_is_dropped(
    ledger_client: TestClient,
) -> None:
    pending, block = await _double_spend_in_a_new_block(ledger_client)
    assert (await (await ledger_client.get("/mempool")).json())["count"] == 0
    assert (await (await ledger_client.get("/reorgs")).json())["reorgs"] == []
    resp = await ledger_client.get(f"/tx/{pending.txid}")
    assert resp.status == 200
    view = await resp.json()
    assert view["status"] == "dropped"
    assert view["transaction"] == pending.to_dict()
    assert (view["fate"]["fate"], view["fate"]["reason"], view["fate"]["reorg"]) == (
        "dropped",
        "bad-nonce",
        None,
    )
    spent = await (await ledger_client.get(f"/tx/{block.transactions[1].txid}")).json()
    assert (spent["status"], spent["fate"]) == ("confirmed", None)


async def test_a_dropped_transaction_is_remembered_across_a_restart(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    settings = ledger_settings(tmp_path, redis_url)
    client = await aiohttp_client(create_app(settings))
    pending, _ = await _double_spend_in_a_new_block(client)
    await client.close()

    again = TestClient(TestServer(create_app(settings)))
    await again.start_server()
    try:
        view = await (await again.get(f"/tx/{pending.txid}")).json()
        assert (view["status"], view["fate"]["reason"]) == ("dropped", "bad-nonce")
    finally:
        await again.close()


async def test_a_transaction_replaced_by_a_relayed_double_spend_is_dropped(
    ledger_client: TestClient,
) -> None:
    """Seen in the chaos run (tests/chaos): a sender's wallet failed over to a second node
    while the first was down or cut off, and each node answered 201 to a transfer with the
    same nonce. When the higher-fee one was relayed to the node holding the other, it replaced
    it, and `GET /tx/{txid}` of the replaced transfer said 404 on every node: a transfer
    answered 201 gone without a recorded reason. It must be dropped with `replaced`."""
    await mine(ledger_client, MINER.address)
    status, _, ours = await send(ledger_client, MINER, ALICE.address, COIN, fee=1_200, nonce=0)
    assert status == 201
    theirs = Transaction.create(
        MINER, BOB.address, COIN, fee=1_800, nonce=0, timestamp=0, network_id=REGTEST.network_id
    )
    resp = await ledger_client.post(
        "/transactions/new", json=theirs.to_dict() | {"type": "sharing"}
    )
    assert resp.status == 201, await resp.text()
    view = await (await ledger_client.get(f"/tx/{ours.txid}")).json()
    assert (view["status"], view["transaction"]) == ("dropped", ours.to_dict())
    assert (view["fate"]["fate"], view["fate"]["reason"], view["fate"]["reorg"]) == (
        "dropped",
        "replaced",
        None,
    )
    rejections = (await (await ledger_client.get("/rejections")).json())["rejections"]
    assert (rejections[0]["id"], rejections[0]["reason"]) == (ours.txid, "replaced")
    pending = await (await ledger_client.get(f"/tx/{theirs.txid}")).json()
    assert pending["status"] == "pending"


async def test_an_unknown_txid_is_still_not_found(ledger_client: TestClient) -> None:
    resp = await ledger_client.get(f"/tx/{'ab' * 32}")
    assert resp.status == 404
    assert (await resp.json())["reason"] == "not-found"


async def test_history_counts_follow_connects_reorgs_and_an_old_database(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """An address's history count is kept as a number (so no page counts a whole history):
    it must equal the entries after blocks, after a reorg, and after opening a database made
    before the count existed."""
    settings = ledger_settings(tmp_path, redis_url)
    client = await aiohttp_client(create_app(settings))
    await mine(client, MINER.address, 3)
    status, _, _ = await send(client, MINER, ALICE.address, COIN, nonce=0)
    assert status == 201
    await mine(client, MINER.address)
    fork = Block.from_dict((await (await client.get("/blocks/height/3")).json())["block"])
    await sync_rival(client, "", branch(fork.header, 3, miner=BOB.address))
    assert (await (await client.get("/reorgs")).json())["reorgs"]

    async def counts() -> dict[str, tuple[int, int]]:
        seen = {}
        for key in (MINER, ALICE, BOB):
            info = await (await client.get(f"/address/{key.address}")).json()
            history = await (await client.get(f"/address/{key.address}/history")).json()
            seen[key.address] = (info["history_count"], history["total"])
        return seen

    after_reorg = await counts()
    assert after_reorg == {MINER.address: (2, 2), ALICE.address: (0, 0), BOB.address: (3, 3)}
    await client.close()

    db = sqlite3.connect(settings.db_path)
    db.execute("DROP TABLE address_counts")  # as a database from before the table
    db.commit()
    db.close()
    client = await aiohttp_client(create_app(settings))
    assert await counts() == after_reorg
