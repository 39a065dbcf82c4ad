"""GET /address/{a} and its history as the wallet and explorer read them, and GET /rejections?id=.

`spendable` is checked against admission itself: a transfer of exactly spendable (amount + fee)
is accepted and one unit more is refused `insufficient-funds`. History entries carry their
parties, amounts and times, and the running balance stays right on every page; transactions
that left the mempool without a block are listed as dropped, and a reorg's re-queued ones say
so. A database written before these fields existed is migrated when it is opened.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST, Block, Transaction
from services.node.app import create_app
from services.node.store import Store
from tests.chainutil import child_block, test_key
from tests.service.ledgerutil import ledger_settings, mine, send

MINER, ALICE, BOB = (test_key(i) for i in range(3))
FEE = 1_000


async def get_json(client: TestClient, path: str, **params: Any) -> Any:
    resp = await client.get(path, params=params)
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def _tip(client: TestClient) -> Block:
    status = await get_json(client, "/status")
    return Block.from_dict((await get_json(client, f"/blocks/{status['tip']}"))["block"])


async def test_spendable_is_exactly_what_admission_accepts(ledger_client: TestClient) -> None:
    await mine(ledger_client, MINER.address, 2)
    status, _, to_alice = await send(ledger_client, MINER, ALICE.address, 3 * COIN, fee=FEE)
    assert status == 201
    miner = await get_json(ledger_client, f"/address/{MINER.address}")
    balance = miner["balance"]
    assert miner["pending_out"] == 3 * COIN + FEE
    assert miner["pending_in"] == 0
    assert miner["spendable"] == balance - 3 * COIN - FEE
    assert miner["unconfirmed_balance"] == balance - 3 * COIN - FEE
    alice = await get_json(ledger_client, f"/address/{ALICE.address}")
    assert (alice["spendable"], alice["pending_in"], alice["pending_out"]) == (0, 3 * COIN, 0)
    assert alice["unconfirmed_balance"] == 3 * COIN  # includes pending; spendable does not

    spendable = miner["spendable"]
    status, body, _ = await send(ledger_client, MINER, BOB.address, spendable - FEE + 1, fee=FEE)
    assert (status, body["reason"]) == (400, "insufficient-funds"), body
    status, body, _ = await send(ledger_client, MINER, BOB.address, spendable - FEE, fee=FEE)
    assert status == 201, body
    after = await get_json(ledger_client, f"/address/{MINER.address}")
    assert (after["spendable"], after["pending_out"]) == (0, balance)
    assert after["pending_count"] == 2  # `to_alice` and the one of exactly spendable
    assert to_alice.recipient == ALICE.address


async def test_history_entries_carry_parties_times_and_balance_after_on_every_page(
    ledger_client: TestClient,
) -> None:
    await mine(ledger_client, MINER.address, 2)
    for amount in (COIN, 2 * COIN):
        status, _, _ = await send(ledger_client, MINER, ALICE.address, amount, fee=FEE)
        assert status == 201
        await mine(ledger_client, BOB.address)
    status, _, to_self = await send(ledger_client, MINER, MINER.address, COIN, fee=2 * FEE)
    assert status == 201
    (block,) = await mine(ledger_client, MINER.address)
    status, _, back = await send(ledger_client, ALICE, MINER.address, COIN // 2, fee=FEE)
    assert status == 201

    path = f"/address/{MINER.address}/history"
    whole = await get_json(ledger_client, path, limit="500")
    entries = whole["confirmed"]
    assert len(entries) == whole["total"] == 6
    balance = (await get_json(ledger_client, f"/address/{MINER.address}"))["balance"]
    assert entries[0]["balance_after"] == balance
    for newer, older in itertools.pairwise(entries):
        assert older["balance_after"] == newer["balance_after"] - newer["delta"]
    assert entries[-1]["balance_after"] == entries[-1]["delta"]  # the first reward

    selfsend, reward = entries[0], entries[1]
    assert (selfsend["txid"], selfsend["counterparty"]) == (to_self.txid, MINER.address)
    assert (selfsend["amount"], selfsend["fee"], selfsend["delta"]) == (COIN, 2 * FEE, -2 * FEE)
    assert (selfsend["sender"], selfsend["recipient"]) == (MINER.address, MINER.address)
    assert selfsend["timestamp"] == to_self.timestamp
    assert selfsend["block_time"] == block.timestamp
    assert (reward["counterparty"], reward["sender"], reward["fee"]) == ("coinbase", "0", 0)
    assert reward["amount"] == block.transactions[0].amount
    assert entries[2]["counterparty"] == ALICE.address
    assert all(e["fate"] is None for e in entries)

    pages = []
    for offset in (0, 2, 4):
        page = await get_json(ledger_client, path, offset=str(offset), limit="2")
        pages += page["confirmed"]
    assert pages == entries
    odd = await get_json(ledger_client, path, offset="3", limit="2")
    assert odd["confirmed"] == entries[3:5]

    (pending,) = whole["pending"]
    assert pending["txid"] == back.txid
    assert (pending["counterparty"], pending["delta"]) == (ALICE.address, COIN // 2)
    assert (pending["amount"], pending["fee"], pending["timestamp"]) == (COIN // 2, FEE, 0)
    assert (pending["sender"], pending["recipient"]) == (ALICE.address, MINER.address)
    assert pending["fate"] is None
    assert whole["dropped"] == []


async def test_dropped_transactions_are_listed_for_both_sides(ledger_client: TestClient) -> None:
    await mine(ledger_client, MINER.address, 2)
    status, _, replaced = await send(ledger_client, MINER, ALICE.address, COIN, fee=FEE, nonce=0)
    assert status == 201
    status, _, replacement = await send(
        ledger_client, MINER, BOB.address, COIN, fee=3 * FEE, nonce=0
    )
    assert status == 201  # a replacement: the first one is dropped, `replaced`
    status, _, pending = await send(ledger_client, MINER, ALICE.address, COIN, fee=FEE, nonce=1)
    assert status == 201
    # A block mined elsewhere spends nonces 0 and 1 otherwise: nonce 1's pending one is dropped.
    conflicting = [
        Transaction.create(
            MINER,
            BOB.address,
            2 * COIN,
            fee=FEE,
            nonce=n,
            timestamp=0,
            network_id=REGTEST.network_id,
        )
        for n in (0, 1)
    ]
    block = child_block((await _tip(ledger_client)).header, conflicting, miner=BOB.address)
    resp = await ledger_client.post("/mining/submit", json=block.to_dict())
    assert resp.status == 201, await resp.text()

    alice = await get_json(ledger_client, f"/address/{ALICE.address}/history")
    assert alice["pending"] == []
    assert [(d["txid"], d["reason"]) for d in alice["dropped"]] == [
        (pending.txid, "bad-nonce"),
        (replaced.txid, "replaced"),
    ]
    first = alice["dropped"][0]
    assert (first["fate"], first["delta"], first["counterparty"]) == (
        "dropped",
        COIN,
        MINER.address,
    )
    assert (first["amount"], first["fee"]) == (COIN, FEE)
    assert isinstance(first["at"], int)
    miner = await get_json(ledger_client, f"/address/{MINER.address}/history")
    assert {(d["txid"], d["delta"], d["counterparty"]) for d in miner["dropped"]} == {
        (replaced.txid, -(COIN + FEE), ALICE.address),
        (replacement.txid, -(COIN + 3 * FEE), BOB.address),
        (pending.txid, -(COIN + FEE), ALICE.address),
    }
    assert miner["dropped"][-1]["txid"] == replaced.txid  # newest first
    # Bob's replacement (nonce 0, fee 3000) is dropped too: the block took another nonce 0.
    bob = await get_json(ledger_client, f"/address/{BOB.address}/history")
    assert [d["reason"] for d in bob["dropped"]] == ["bad-nonce"]


async def test_a_reorg_requeued_entry_carries_its_fate(ledger_client: TestClient) -> None:
    await mine(ledger_client, MINER.address, 3)
    status, _, tx = await send(ledger_client, MINER, ALICE.address, 5 * COIN, fee=FEE)
    assert status == 201
    fork = (await _tip(ledger_client)).header
    await mine(ledger_client, MINER.address)
    side = child_block(fork, miner=BOB.address)
    for block in (side, child_block(side.header, miner=BOB.address)):
        resp = await ledger_client.post("/mining/submit", json=block.to_dict())
        assert resp.status == 201, await resp.text()
    history = await get_json(ledger_client, f"/address/{ALICE.address}/history")
    (entry,) = history["pending"]
    assert entry["txid"] == tx.txid
    assert entry["fate"]["fate"] == "requeued"
    assert isinstance(entry["fate"]["at"], int)
    assert history["dropped"] == []
    await mine(ledger_client, MINER.address)  # confirmed again: the marker stays on the entry
    again = await get_json(ledger_client, f"/address/{ALICE.address}/history")
    assert again["confirmed"][0]["fate"] == entry["fate"]


async def test_rejections_by_id(ledger_client: TestClient) -> None:
    await mine(ledger_client, MINER.address, 2)
    status, _, poor = await send(ledger_client, ALICE, BOB.address, COIN, fee=FEE)
    assert status == 400
    status, _, other = await send(ledger_client, BOB, ALICE.address, COIN, fee=FEE)
    assert status == 400
    await send(ledger_client, ALICE, BOB.address, COIN, fee=FEE)  # the same one again
    found = await get_json(ledger_client, "/rejections", id=poor.txid)
    assert [(r["id"], r["reason"], r["kind"]) for r in found["rejections"]] == [
        (poor.txid, "insufficient-funds", "tx")
    ] * 2
    assert found["rejections"][0]["at"] >= found["rejections"][1]["at"]
    everything = await get_json(ledger_client, "/rejections")
    assert {r["id"] for r in everything["rejections"]} == {poor.txid, other.txid}
    assert (await get_json(ledger_client, "/rejections", id="ab" * 32))["rejections"] == []
    for bad in ("xyz", "AB" * 32, "ab" * 31):
        resp = await ledger_client.get("/rejections", params={"id": bad})
        body = await resp.json()
        assert (resp.status, body["reason"]) == (400, "bad-hex"), body
        assert body["error"]


def _to_version_1(path: Path) -> None:
    """Make the file look as a version-1 node left it: without the columns version 2 added."""
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX tx_fates_by_sender; DROP INDEX tx_fates_by_recipient;"
        "DROP TABLE block_figures;"
        "ALTER TABLE chain_txs DROP COLUMN sender; ALTER TABLE chain_txs DROP COLUMN recipient;"
        "ALTER TABLE chain_txs DROP COLUMN amount; ALTER TABLE chain_txs DROP COLUMN fee;"
        "ALTER TABLE chain_txs DROP COLUMN timestamp;"
        "ALTER TABLE tx_fates DROP COLUMN sender; ALTER TABLE tx_fates DROP COLUMN recipient;"
        "DELETE FROM meta WHERE key = 'schema_version';"
    )
    db.close()


async def test_an_older_database_is_migrated_when_opened(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    settings = ledger_settings(tmp_path, redis_url)
    client = await aiohttp_client(create_app(settings))
    await mine(client, MINER.address, 2)
    await send(client, MINER, ALICE.address, COIN, fee=FEE, nonce=0)
    await send(client, MINER, BOB.address, COIN, fee=2 * FEE, nonce=0)  # drops the first
    await mine(client, MINER.address)
    paths = (
        "/blocks?limit=10",
        f"/address/{MINER.address}/history",
        f"/address/{ALICE.address}/history",
    )
    before = [await get_json(client, path) for path in paths]
    await client.close()
    assert before[2]["dropped"]

    _to_version_1(settings.db_path)
    client = await aiohttp_client(create_app(settings))
    after = [await get_json(client, path) for path in paths]
    await client.close()
    assert after == before
    store = Store(settings.db_path)
    assert store.get_meta("schema_version") == "2"
    store.close()
    assert after[0]["blocks"][0]["miner"] == MINER.address
    assert after[2]["dropped"][0]["reason"] == "replaced"
