"""Every endpoint of the ledger's HTTP API, with real requests against the real app.

Each test builds the ledger with `create_app` (regtest, SQLite in tmp_path, the session's real
Redis as its bus), mines real regtest blocks through /mining/template and /mining/submit, signs
real transactions with deterministic test keys, and reads the results back through the API:
the tutorial's endpoints (/, /chain, /transactions/new, /mine), the REST API (blocks,
transactions, addresses, mempool, status, rejections, reorgs, mining), health and metrics, and
the mempool's relay policy (minimum fee, replacement, eviction when full, confirmation, replay).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST, Block, BlockHeader, PrivateKey, Transaction
from pybtc.mining import build_block, mine_block
from services.node.app import create_app
from tests.chainutil import test_key
from tests.service.ledgerutil import ledger_settings, mine, send

SUBSIDY = REGTEST.subsidy(2)
MINER, ALICE, BOB, CAROL = (test_key(i) for i in range(4))


async def get_json(client: TestClient, path: str, status: int = 200, **params: Any) -> Any:
    """GET `path` and return its JSON body after checking the status."""
    resp = await client.get(path, params=params)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def post_tx(client: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/transactions/new", json=body)
    return resp.status, await resp.json()


def assert_error(status: int, body: dict[str, Any], expected_status: int, reason: str) -> None:
    """A refusal: the expected status and `{"error": <text>, "reason": <code>}`."""
    assert (status, body.get("reason")) == (expected_status, reason), body
    assert isinstance(body.get("error"), str)
    assert body["error"]


def sign(
    key: PrivateKey, recipient: str, amount: int, *, fee: int = 1_000, nonce: int
) -> Transaction:
    return Transaction.create(
        key,
        recipient,
        amount,
        fee=fee,
        nonce=nonce,
        timestamp=0,
        network_id=REGTEST.network_id,
    )


async def header_at(client: TestClient, height: int) -> BlockHeader:
    view = await get_json(client, f"/blocks/height/{height}")
    return Block.from_dict(view["block"]).header


async def submit(client: TestClient, block: Block) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/mining/submit", json=block.to_dict())
    return resp.status, await resp.json()


def child_of(parent: BlockHeader, miner: str, txs: tuple[Transaction, ...] = ()) -> Block:
    """A mined regtest block on `parent` (one second after it) paying `miner`."""
    block = build_block(
        REGTEST,
        parent,
        bits=parent.bits,
        transactions=txs,
        miner_address=miner,
        timestamp=parent.timestamp + 1,
    )
    mined = mine_block(block)
    assert mined is not None
    return mined


async def mempool_txids(client: TestClient) -> list[str]:
    body = await get_json(client, "/mempool")
    return [tx["txid"] for tx in body["transactions"]]


# -- the tutorial's endpoints -----------------------------------------------------------------


async def test_index(ledger_client: TestClient) -> None:
    """GET / greets like the tutorial's node and points at the chain, mining and the API docs."""
    body = await get_json(ledger_client, "/")
    assert "/chain" in body["message"]
    assert "/transactions/new" in body["message"]
    assert body["network"] == "regtest"
    assert body["docs"] == "/openapi.yaml"


async def test_index_says_how_a_transaction_is_made_now(ledger_client: TestClient) -> None:
    """The tutorial's reader learns at GET / that transactions are signed, and the two easy
    ways: the CLI wallet and this node's browser wallet (its URL from the node's settings)."""
    body = await get_json(ledger_client, "/")
    assert "signed" in body["message"]
    assert "`pybtc wallet send RECIPIENT AMOUNT`" in body["message"]
    assert "the browser wallet at http://127.0.0.1:8081" in body["message"]
    assert body["send"] == {
        "cli": "pybtc wallet send RECIPIENT AMOUNT",
        "browser_wallet": "http://127.0.0.1:8081",
        "protocol": "docs/protocol.md §4",
    }


@pytest.mark.parametrize(
    ("changes", "wallet"),
    [
        ({"wallet_port": 9081}, "http://127.0.0.1:9081"),
        ({"host": "0.0.0.0"}, "http://127.0.0.1:8081"),  # reached on loopback
        ({"explorer_public_url": "http://node.example:8080"}, "http://node.example:8081"),
        ({"explorer_public_url": "https://explorer.example"}, ""),  # a proxy: not known
    ],
)
async def test_the_browser_wallet_url_follows_the_settings(
    aiohttp_client: Any, tmp_path: Path, redis_url: str, changes: dict[str, Any], wallet: str
) -> None:
    client = await aiohttp_client(create_app(ledger_settings(tmp_path, redis_url, **changes)))
    body = await get_json(client, "/")
    assert body["send"]["browser_wallet"] == wallet
    shown = f"the browser wallet at {wallet}" if wallet else "this node's browser wallet"
    assert shown in body["message"]


async def test_chain_full_pages_and_headers(ledger_client: TestClient) -> None:
    """GET /chain answers the tutorial's {chain, length}; ?start=&limit= pages it and
    ?format=headers leaves the transactions out, with the same hashes as the full form."""
    await mine(ledger_client, MINER.address, 4)
    full = await get_json(ledger_client, "/chain")
    assert full["length"] == 5
    blocks = full["chain"]
    assert [b["index"] for b in blocks] == [1, 2, 3, 4, 5]
    assert blocks[0] == REGTEST.genesis.to_dict()
    for parent, child in itertools.pairwise(blocks):
        assert child["previous_hash"] == parent["hash"]
        assert Block.from_dict(child).hash == child["hash"]

    page = await get_json(ledger_client, "/chain", start="2", limit="2")
    assert page["length"] == 5
    assert [b["index"] for b in page["chain"]] == [2, 3]
    assert page["chain"] == blocks[1:3]
    assert [b["index"] for b in (await get_json(ledger_client, "/chain", start="5"))["chain"]] == [
        5
    ]
    assert (await get_json(ledger_client, "/chain", start="6"))["chain"] == []

    headers = await get_json(ledger_client, "/chain", format="headers")
    assert headers["length"] == 5
    assert [h["hash"] for h in headers["chain"]] == [b["hash"] for b in blocks]
    for header in headers["chain"]:
        assert "transactions" not in header
        assert BlockHeader.from_dict(header).hash == header["hash"]
    tail = await get_json(ledger_client, "/chain", format="headers", start="4", limit="10")
    assert [h["index"] for h in tail["chain"]] == [4, 5]
    explicit = await get_json(ledger_client, "/chain", format="full", limit="1")
    assert explicit["chain"] == blocks[:1]


@pytest.mark.parametrize(
    "query",
    [
        {"start": "0"},
        {"start": "-1"},
        {"start": "abc"},
        {"start": "1.5"},
        {"start": "1e3"},
        {"start": "٣"},  # an Arabic-Indic digit: isdigit() says yes, the API says no
        {"start": "9" * 21},
        {"limit": "0"},
        {"limit": "x"},
        {"format": "xml"},
        {"format": ""},
    ],
)
async def test_chain_bad_query(ledger_client: TestClient, query: dict[str, str]) -> None:
    """Bad ?start=, ?limit= or ?format= values on /chain are a 400 bad-query, never a 500."""
    resp = await ledger_client.get("/chain", params=query)
    assert_error(resp.status, await resp.json(), 400, "bad-query")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/chain", "start"),
        ("/chain", "limit"),
        ("/blocks", "before"),
        ("/blocks", "limit"),
        ("/mempool", "offset"),
        ("/rejections", "limit"),
        ("/reorgs", "limit"),
        (f"/address/{MINER.address}/history", "offset"),
    ],
)
@pytest.mark.parametrize("value", ["--5", "-", "+5"])
async def test_integer_query_with_stray_signs(
    ledger_client: TestClient, path: str, name: str, value: str
) -> None:
    """An integer query parameter with stray signs ("--5") is a 400 bad-query.

    `query_int` strips every leading "-" before checking for digits but then hands the raw text
    to int(), which raises ValueError for "--5": the handler crashes with a 500.
    """
    resp = await ledger_client.get(path, params={name: value})
    assert_error(resp.status, await resp.json(), 400, "bad-query")


async def test_transactions_new_answers_like_the_tutorial(ledger_client: TestClient) -> None:
    """POST /transactions/new admits a signed transaction: 201 with the tutorial's message
    naming the block it is headed for, the txid, and its place in the mempool."""
    await mine(ledger_client, MINER.address, 2)
    status, body, tx = await send(ledger_client, MINER, ALICE.address, 5 * COIN)
    assert status == 201, body
    assert body == {
        "message": "Transaction will be added to Block 4",
        "txid": tx.txid,
        "status": "pending",
        "new": True,
        "mempool_position": 1,
        "blocks_to_wait": 1,
    }
    assert await mempool_txids(ledger_client) == [tx.txid]


async def test_transactions_new_is_idempotent_by_txid(ledger_client: TestClient) -> None:
    """Sending the same signed transaction again is a 201 with new=false, and nothing changes."""
    await mine(ledger_client, MINER.address)
    tx = sign(MINER, ALICE.address, COIN, nonce=0)
    first = await post_tx(ledger_client, tx.to_dict())
    again = await post_tx(ledger_client, tx.to_dict())
    without_txid = {k: v for k, v in tx.to_dict().items() if k != "txid"}
    third = await post_tx(ledger_client, without_txid)
    assert first[0] == again[0] == third[0] == 201
    assert first[1]["new"] is True
    assert again[1]["new"] is third[1]["new"] is False
    assert again[1]["txid"] == third[1]["txid"] == tx.txid
    assert await mempool_txids(ledger_client) == [tx.txid]


async def test_transactions_new_accepts_sharing_relay(ledger_client: TestClient) -> None:
    """A peer's relay carries the tutorial's "type": "sharing"; it is admitted like any other
    transaction, a repeated relay is new=false, and any other type is a 400 bad-type."""
    await mine(ledger_client, MINER.address)
    tx = sign(MINER, ALICE.address, COIN, nonce=0)
    status, body = await post_tx(ledger_client, tx.to_dict() | {"type": "sharing"})
    assert status == 201, body
    assert body["new"] is True
    assert body["txid"] == tx.txid
    status, body = await post_tx(ledger_client, tx.to_dict() | {"type": "sharing"})
    assert (status, body["new"]) == (201, False)
    other = sign(MINER, ALICE.address, COIN, nonce=1)
    status, body = await post_tx(ledger_client, other.to_dict() | {"type": "broadcast"})
    assert_error(status, body, 400, "bad-type")
    assert await mempool_txids(ledger_client) == [tx.txid]


async def test_transactions_new_refuses_the_tutorials_unsigned_body(
    ledger_client: TestClient,
) -> None:
    """The tutorial's unsigned {sender, recipient, amount} is a 400 signature-required whose
    message says what to send instead."""
    status, body = await post_tx(
        ledger_client, {"sender": MINER.address, "recipient": ALICE.address, "amount": 5}
    )
    assert_error(status, body, 400, "signature-required")
    assert "public_key" in body["error"]
    assert "docs/protocol.md §4" in body["error"]
    assert body["error"].endswith(
        "The easy ways sign for you: `pybtc wallet send RECIPIENT AMOUNT` or the browser "
        "wallet at http://127.0.0.1:8081"
    )
    assert (await get_json(ledger_client, "/status"))["mempool_size"] == 0


async def test_mine_without_a_miner_is_503(ledger_client: TestClient) -> None:
    """GET /mine asks the node's miner service; with none running it is a 503 no-miner."""
    resp = await ledger_client.get("/mine")
    assert_error(resp.status, await resp.json(), 503, "no-miner")
    assert (await get_json(ledger_client, "/status"))["height"] == 1


# -- blocks -----------------------------------------------------------------------------------


async def test_blocks_by_list_hash_and_height(ledger_client: TestClient) -> None:
    """GET /blocks lists main-chain headers newest first (?before=&limit=); /blocks/{hash} and
    /blocks/height/{n} answer the block with its height, confirmations and neighbours."""
    mined = await mine(ledger_client, MINER.address, 3)
    listing = await get_json(ledger_client, "/blocks")
    assert listing["height"] == 4
    assert [b["index"] for b in listing["blocks"]] == [4, 3, 2, 1]
    assert listing["blocks"][0]["hash"] == mined[-1].hash
    assert all(b["tx_count"] == 1 for b in listing["blocks"])
    assert "transactions" not in listing["blocks"][0]
    page = await get_json(ledger_client, "/blocks", before="4", limit="2")
    assert [b["index"] for b in page["blocks"]] == [3, 2]
    assert (await get_json(ledger_client, "/blocks", before="1"))["blocks"] == []

    view = await get_json(ledger_client, f"/blocks/{mined[0].hash}")
    assert view["block"] == mined[0].to_dict()
    assert view["height"] == 2
    assert view["in_best_chain"] is True
    assert view["confirmations"] == 3
    assert view["next_hash"] == mined[1].hash
    assert view["invalid_reason"] is None
    assert len(view["chain_work"]) == 64
    assert await get_json(ledger_client, "/blocks/height/2") == view
    tip = await get_json(ledger_client, "/blocks/height/4")
    assert (tip["confirmations"], tip["next_hash"]) == (1, None)
    genesis = await get_json(ledger_client, "/blocks/height/1")
    assert genesis["block"] == REGTEST.genesis.to_dict()


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/blocks/" + "ab" * 32, 404, "not-found"),
        ("/blocks/height/5", 404, "not-found"),
        ("/blocks/height/0", 404, "not-found"),
        ("/blocks/height/999999999999999999", 404, "not-found"),
        ("/blocks/xyz", 400, "bad-hex"),
        ("/blocks/" + "AB" * 32, 400, "bad-hex"),
        ("/blocks/" + "a" * 63, 400, "bad-hex"),
        ("/blocks/" + "a" * 66, 400, "bad-hex"),
        ("/blocks/height/abc", 400, "bad-query"),
        ("/blocks/height/-1", 400, "bad-query"),
        ("/blocks/height/1.5", 400, "bad-query"),
        ("/blocks/height/9999999999999999999", 400, "bad-query"),
        ("/tx/" + "cd" * 32, 404, "not-found"),
        ("/tx/nothex", 400, "bad-hex"),
        ("/tx/" + "CD" * 32, 400, "bad-hex"),
    ],
)
async def test_unknown_and_malformed_ids(
    ledger_client: TestClient, path: str, status: int, reason: str
) -> None:
    """Unknown blocks and transactions are a 404 not-found; malformed ids are a 400."""
    resp = await ledger_client.get(path)
    assert_error(resp.status, await resp.json(), status, reason)


# -- transactions, addresses, mempool -----------------------------------------------------------


async def test_tx_pending_then_confirmed(ledger_client: TestClient) -> None:
    """GET /tx/{txid}: pending with its mempool position, then confirmed with its block,
    height and a confirmation count that grows with the chain."""
    await mine(ledger_client, MINER.address, 2)
    status, _, tx = await send(ledger_client, MINER, ALICE.address, COIN)
    assert status == 201
    pending = await get_json(ledger_client, f"/tx/{tx.txid}")
    assert pending["status"] == "pending"
    assert pending["transaction"] == tx.to_dict()
    assert pending["mempool_position"] == 1
    assert isinstance(pending["received_at"], int)
    assert pending["fate"] is None

    (block,) = await mine(ledger_client, MINER.address)
    confirmed = await get_json(ledger_client, f"/tx/{tx.txid}")
    assert confirmed == {
        "transaction": tx.to_dict(),
        "status": "confirmed",
        "block_hash": block.hash,
        "height": 4,
        "confirmations": 1,
        "fate": None,  # no reorg has touched it
    }
    await mine(ledger_client, MINER.address)
    assert (await get_json(ledger_client, f"/tx/{tx.txid}"))["confirmations"] == 2
    coinbase = await get_json(ledger_client, f"/tx/{block.transactions[0].txid}")
    assert coinbase["transaction"]["sender"] == "0"


async def test_address_confirmed_and_unconfirmed(ledger_client: TestClient) -> None:
    """GET /address/{a}: the confirmed balance and nonce, and the unconfirmed balance and
    next nonce that count pending transactions, for the sender and the recipient."""
    await mine(ledger_client, MINER.address, 2)
    fresh = await get_json(ledger_client, f"/address/{ALICE.address}")
    assert fresh == {
        "address": ALICE.address,
        "balance": 0,
        "balance_coins": "0.00000000",
        "unconfirmed_balance": 0,
        "spendable": 0,
        "pending_in": 0,
        "pending_out": 0,
        "nonce": 0,
        "next_nonce": 0,
        "pending_count": 0,
        "history_count": 0,
    }
    for amount in (COIN, 2 * COIN):
        status, body, _ = await send(ledger_client, MINER, ALICE.address, amount)
        assert status == 201, body
    miner = await get_json(ledger_client, f"/address/{MINER.address}")
    assert miner["balance"] == 2 * SUBSIDY
    assert miner["balance_coins"] == "100.00000000"
    assert miner["unconfirmed_balance"] == 2 * SUBSIDY - 3 * COIN - 2_000
    assert (miner["nonce"], miner["next_nonce"], miner["pending_count"]) == (0, 2, 2)
    assert miner["history_count"] == 2
    alice = await get_json(ledger_client, f"/address/{ALICE.address}")
    assert (alice["balance"], alice["unconfirmed_balance"]) == (0, 3 * COIN)
    assert (alice["next_nonce"], alice["pending_count"]) == (0, 2)

    await mine(ledger_client, BOB.address)
    miner = await get_json(ledger_client, f"/address/{MINER.address}")
    assert miner["balance"] == miner["unconfirmed_balance"] == 2 * SUBSIDY - 3 * COIN - 2_000
    assert (miner["nonce"], miner["next_nonce"], miner["pending_count"]) == (2, 2, 0)
    alice = await get_json(ledger_client, f"/address/{ALICE.address}")
    assert alice["balance"] == alice["unconfirmed_balance"] == 3 * COIN
    resp = await ledger_client.get("/address/PsSnt4J4gpvXGxvwfc6sRCAmjukUx4mLKe")
    assert_error(resp.status, await resp.json(), 400, "bad-address")


async def test_address_history_with_deltas_and_paging(ledger_client: TestClient) -> None:
    """GET /address/{a}/history: pending entries, then confirmed ones newest first with each
    transaction's net effect on the address; ?offset=&limit= pages the confirmed ones."""
    await mine(ledger_client, MINER.address, 2)
    status, _, first = await send(ledger_client, MINER, ALICE.address, COIN)
    assert status == 201
    (block,) = await mine(ledger_client, MINER.address)
    status, _, second = await send(ledger_client, MINER, ALICE.address, 2 * COIN)
    assert status == 201

    history = await get_json(ledger_client, f"/address/{MINER.address}/history")
    assert history["address"] == MINER.address
    assert history["total"] == 4
    assert (history["offset"], history["limit"]) == (0, 25)
    assert [(p["txid"], p["delta"], p["status"]) for p in history["pending"]] == [
        (second.txid, -(2 * COIN + 1_000), "pending")
    ]
    confirmed = history["confirmed"]
    assert [(c["height"], c["position"]) for c in confirmed] == [(4, 1), (4, 0), (3, 0), (2, 0)]
    assert [c["delta"] for c in confirmed] == [
        -(COIN + 1_000),
        SUBSIDY + 1_000,
        SUBSIDY,
        SUBSIDY,
    ]
    assert confirmed[0]["txid"] == first.txid
    assert confirmed[1]["txid"] == block.transactions[0].txid
    assert [c["confirmations"] for c in confirmed] == [1, 1, 2, 3]

    page = await get_json(ledger_client, f"/address/{MINER.address}/history", offset="1", limit="2")
    assert page["confirmed"] == confirmed[1:3]
    assert (page["total"], page["offset"], page["limit"]) == (4, 1, 2)
    beyond = await get_json(ledger_client, f"/address/{MINER.address}/history", offset="10")
    assert beyond["confirmed"] == []

    alice = await get_json(ledger_client, f"/address/{ALICE.address}/history")
    assert [(p["txid"], p["delta"]) for p in alice["pending"]] == [(second.txid, 2 * COIN)]
    assert [(c["txid"], c["delta"]) for c in alice["confirmed"]] == [(first.txid, COIN)]
    for query in ({"limit": "0"}, {"limit": "501"}, {"offset": "-1"}):
        resp = await ledger_client.get(f"/address/{ALICE.address}/history", params=query)
        assert_error(resp.status, await resp.json(), 400, "bad-query")
    resp = await ledger_client.get("/address/not-an-address/history")
    assert_error(resp.status, await resp.json(), 400, "bad-address")


async def test_mempool_in_fee_order_with_positions(ledger_client: TestClient) -> None:
    """GET /mempool lists pending transactions in mining order (one per sender here, so the
    highest fee first), each with its position; /tx and the submit answer report the same
    positions. One sender's chain: tests/service/test_mempool_order.py."""
    for key in (MINER, ALICE, BOB):
        await mine(ledger_client, key.address)
    sent = {}
    for key, fee in ((MINER, 1_000), (ALICE, 3_000), (BOB, 2_000)):
        status, body, tx = await send(ledger_client, key, CAROL.address, COIN, fee=fee)
        assert status == 201, body
        sent[fee] = tx
    assert body["mempool_position"] == 2  # Bob's 2000 sits behind Alice's 3000

    pool = await get_json(ledger_client, "/mempool")
    assert pool["count"] == 3
    assert [t["fee"] for t in pool["transactions"]] == [3_000, 2_000, 1_000]
    assert [t["position"] for t in pool["transactions"]] == [1, 2, 3]
    assert [t["txid"] for t in pool["transactions"]] == [
        sent[f].txid for f in (3_000, 2_000, 1_000)
    ]
    entry = pool["transactions"][0]
    placed = ("position", "block", "received_at")
    assert {k: v for k, v in entry.items() if k not in placed} == sent[3_000].to_dict()
    for position, fee in enumerate((3_000, 2_000, 1_000), start=1):
        assert (await get_json(ledger_client, f"/tx/{sent[fee].txid}"))[
            "mempool_position"
        ] == position

    page = await get_json(ledger_client, "/mempool", offset="1", limit="1")
    assert page["count"] == 3
    assert [(t["fee"], t["position"]) for t in page["transactions"]] == [(2_000, 2)]
    for query in ({"limit": "0"}, {"limit": "501"}, {"offset": "x"}):
        resp = await ledger_client.get("/mempool", params=query)
        assert_error(resp.status, await resp.json(), 400, "bad-query")


async def test_status(ledger_client: TestClient) -> None:
    """GET /status: network, genesis, tip, height, work, difficulty, mempool size, node id."""
    genesis = await get_json(ledger_client, "/status")
    assert genesis["network"] == "regtest"
    assert genesis["network_id"] == REGTEST.network_id
    assert genesis["genesis"] == genesis["tip"] == REGTEST.genesis.hash
    assert genesis["height"] == 1
    (block,) = await mine(ledger_client, MINER.address)
    status, _, _ = await send(ledger_client, MINER, ALICE.address, COIN)
    assert status == 201
    body = await get_json(ledger_client, "/status")
    assert body["tip"] == block.hash
    assert body["height"] == 2
    assert body["tip_time"] == block.timestamp
    assert body["bits"] == REGTEST.genesis.header.bits
    assert body["difficulty"] == 1.0
    assert body["mempool_size"] == 1
    assert int(body["chain_work"], 16) == 2 * int(genesis["chain_work"], 16)
    assert body["node_id"]
    assert body["url"].startswith("http")


async def test_rejections_list_rejected_transactions_and_blocks(
    ledger_client: TestClient,
) -> None:
    """GET /rejections lists what was refused, newest first, with its kind, id and reason
    code: here a transaction with a forged signature and a block with an unknown parent."""
    await mine(ledger_client, MINER.address)
    tx = sign(MINER, ALICE.address, COIN, nonce=0)
    forged = tx.to_dict() | {"signature": "00" + tx.signature[2:]}
    forged.pop("txid")
    status, body = await post_tx(ledger_client, forged)
    assert_error(status, body, 400, "bad-signature")
    orphan = child_of(
        BlockHeader(3, REGTEST.genesis.timestamp + 5, "ab" * 32, "00" * 32, 0x207FFFFF, 0),
        MINER.address,
    )
    status, body = await submit(ledger_client, orphan)
    assert_error(status, body, 400, "unknown-parent")

    listed = (await get_json(ledger_client, "/rejections"))["rejections"]
    assert [(r["kind"], r["reason"]) for r in listed[:2]] == [
        ("block", "unknown-parent"),
        ("tx", "bad-signature"),
    ]
    assert listed[0]["id"] == orphan.hash
    assert listed[0]["source"]
    assert isinstance(listed[0]["at"], int)
    assert "previous_hash" in listed[0]["message"]
    assert len((await get_json(ledger_client, "/rejections", limit="1"))["rejections"]) == 1


async def test_reorg_to_a_longer_branch(ledger_client: TestClient) -> None:
    """A longer competing branch built on an older block takes over: the tip switches, GET
    /reorgs lists the reorg, and a transaction confirmed only on the old branch is pending
    again (then confirmed once more by the next block).

    Main chain: genesis, 2-4 mined to the miner, 5 holds miner -> Alice. Branch: 5' and 6' on
    block 4, built with pybtc.mining.build_block/mine_block and paying Bob.
    """
    await mine(ledger_client, MINER.address, 3)
    status, _, tx = await send(ledger_client, MINER, ALICE.address, 5 * COIN)
    assert status == 201
    (old_tip,) = await mine(ledger_client, MINER.address)
    assert (await get_json(ledger_client, f"/tx/{tx.txid}"))["status"] == "confirmed"
    assert (await get_json(ledger_client, "/reorgs"))["reorgs"] == []

    fork = await header_at(ledger_client, 4)
    side5 = child_of(fork, BOB.address)
    status, body = await submit(ledger_client, side5)
    assert status == 201, body
    assert (body["is_tip"], body["reorg_depth"]) == (False, 0)  # equal work: first seen wins
    assert (await get_json(ledger_client, "/status"))["tip"] == old_tip.hash
    side6 = child_of(side5.header, BOB.address)
    status, body = await submit(ledger_client, side6)
    assert status == 201, body
    assert body == {"hash": side6.hash, "height": 6, "is_tip": True, "reorg_depth": 1}

    status_body = await get_json(ledger_client, "/status")
    assert (status_body["tip"], status_body["height"]) == (side6.hash, 6)
    (reorg,) = (await get_json(ledger_client, "/reorgs"))["reorgs"]
    assert reorg["depth"] == 1
    assert reorg["fork_height"] == 4
    assert (reorg["old_tip"], reorg["new_tip"]) == (old_tip.hash, side6.hash)
    assert reorg["requeued"] == [tx.txid]
    assert reorg["dropped"] == []
    assert isinstance(reorg["at"], int)

    again = await get_json(ledger_client, f"/tx/{tx.txid}")
    assert again["status"] == "pending"
    assert again["mempool_position"] == 1
    assert (again["fate"]["fate"], again["fate"]["reason"]) == ("requeued", None)
    assert again["fate"]["reorg"] == {k: reorg[k] for k in again["fate"]["reorg"]}
    assert again["fate"]["reorg"]["depth"] == 1
    assert await mempool_txids(ledger_client) == [tx.txid]
    stale = await get_json(ledger_client, f"/blocks/{old_tip.hash}")
    assert (stale["in_best_chain"], stale["confirmations"]) == (False, 0)
    assert (await get_json(ledger_client, "/blocks/height/5"))["block"]["hash"] == side5.hash
    alice = await get_json(ledger_client, f"/address/{ALICE.address}")
    assert (alice["balance"], alice["unconfirmed_balance"]) == (0, 5 * COIN)
    miner = await get_json(ledger_client, f"/address/{MINER.address}")
    assert (miner["balance"], miner["nonce"], miner["next_nonce"]) == (3 * SUBSIDY, 0, 1)
    bob = await get_json(ledger_client, f"/address/{BOB.address}")
    assert bob["balance"] == 2 * SUBSIDY

    (block7,) = await mine(ledger_client, MINER.address)
    confirmed = await get_json(ledger_client, f"/tx/{tx.txid}")
    assert (confirmed["status"], confirmed["height"]) == ("confirmed", 7)
    assert confirmed["block_hash"] == block7.hash
    assert confirmed["fate"] == again["fate"]  # it went through a reorg before this block
    first = await get_json(ledger_client, "/blocks/height/2")
    coinbase = first["block"]["transactions"][0]["txid"]
    assert (await get_json(ledger_client, f"/tx/{coinbase}"))["fate"] is None
    assert (await get_json(ledger_client, "/status"))["mempool_size"] == 0


async def test_reorg_drops_a_transaction_double_spent_on_the_new_branch(
    ledger_client: TestClient,
) -> None:
    """When the winning branch confirms another transaction with the same sender and nonce,
    the old branch's transaction is not re-queued: /reorgs lists it as dropped, /rejections
    says why (bad-nonce, from the mempool), and /tx shows it as dropped by that reorg.
    """
    await mine(ledger_client, MINER.address, 3)
    to_alice = sign(MINER, ALICE.address, COIN, nonce=0)
    assert (await post_tx(ledger_client, to_alice.to_dict()))[0] == 201
    (old_tip,) = await mine(ledger_client, MINER.address)
    to_bob = sign(MINER, BOB.address, COIN, nonce=0)
    side5 = child_of(await header_at(ledger_client, 4), CAROL.address, (to_bob,))
    side6 = child_of(side5.header, CAROL.address)
    for block in (side5, side6):
        status, body = await submit(ledger_client, block)
        assert status == 201, body
    (reorg,) = (await get_json(ledger_client, "/reorgs"))["reorgs"]
    assert (reorg["old_tip"], reorg["new_tip"]) == (old_tip.hash, side6.hash)
    assert (reorg["requeued"], reorg["dropped"]) == ([], [to_alice.txid])
    dropped = await get_json(ledger_client, f"/tx/{to_alice.txid}")
    assert (dropped["status"], dropped["transaction"]) == ("dropped", to_alice.to_dict())
    assert (dropped["fate"]["fate"], dropped["fate"]["reason"]) == ("dropped", "bad-nonce")
    assert dropped["fate"]["reorg"]["new_tip"] == side6.hash
    assert (await get_json(ledger_client, f"/tx/{to_bob.txid}"))["height"] == 5
    assert await mempool_txids(ledger_client) == []
    rejection = (await get_json(ledger_client, "/rejections"))["rejections"][0]
    assert (rejection["id"], rejection["reason"], rejection["source"]) == (
        to_alice.txid,
        "bad-nonce",
        "mempool",
    )
    assert (await get_json(ledger_client, f"/address/{ALICE.address}"))["balance"] == 0
    assert (await get_json(ledger_client, f"/address/{BOB.address}"))["balance"] == COIN


# -- mining -----------------------------------------------------------------------------------


async def test_mining_template_and_submit(ledger_client: TestClient) -> None:
    """GET /mining/template builds an unmined block on the tip for ?address= with the pending
    transactions and a coinbase of subsidy plus fees; POST /mining/submit takes it solved."""
    await mine(ledger_client, MINER.address, 2)
    status, _, tx = await send(ledger_client, MINER, ALICE.address, COIN, fee=4_000)
    assert status == 201
    tip = (await get_json(ledger_client, "/status"))["tip"]
    body = await get_json(ledger_client, "/mining/template", address=BOB.address)
    template = Block.from_dict(body["block"])
    assert body["height"] == template.index == 4
    assert body["previous_hash"] == template.previous_hash == tip
    assert body["target"] == f"{REGTEST.genesis.header.bits:08x}"
    coinbase, *rest = template.transactions
    assert (coinbase.sender, coinbase.recipient) == ("0", BOB.address)
    assert coinbase.amount == SUBSIDY + 4_000
    assert [t.txid for t in rest] == [tx.txid]

    solved = mine_block(template)
    assert solved is not None
    status, result = await submit(ledger_client, solved)
    assert status == 201, result
    assert result == {"hash": solved.hash, "height": 4, "is_tip": True, "reorg_depth": 0}
    assert (await get_json(ledger_client, "/status"))["tip"] == solved.hash
    assert (await get_json(ledger_client, f"/address/{BOB.address}"))["balance"] == SUBSIDY + 4_000

    resp = await ledger_client.get("/mining/template")
    assert_error(resp.status, await resp.json(), 400, "bad-address")
    resp = await ledger_client.get("/mining/template", params={"address": "P" + "1" * 33})
    assert_error(resp.status, await resp.json(), 400, "bad-address")


async def test_healthz_and_metrics(ledger_client: TestClient) -> None:
    """GET /healthz is ok with storage and the Redis bus up; GET /metrics is Prometheus text
    with the chain height, the mempool size and per-route request counters."""
    health = await get_json(ledger_client, "/healthz")
    assert health["service"] == "ledger"
    assert health["status"] == "ok"
    assert health["checks"]["storage"]["ok"] is True
    assert health["checks"]["redis"]["ok"] is True
    await mine(ledger_client, MINER.address, 2)
    resp = await ledger_client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert "# TYPE pybtc_ledger_height gauge" in text
    assert "pybtc_ledger_height 3.0" in text.splitlines()
    assert "pybtc_ledger_mempool_size 0.0" in text.splitlines()
    assert 'route="/mining/submit"' in text
    assert "pybtc_http_requests_total" in text


async def test_openapi_document_is_served(ledger_client: TestClient) -> None:
    """GET /openapi.yaml serves the OpenAPI 3.1 document of this API as YAML."""
    resp = await ledger_client.get("/openapi.yaml")
    assert resp.status == 200
    assert resp.content_type == "application/yaml"
    document = yaml.safe_load(await resp.text())
    assert document["openapi"].startswith("3.1")
    assert "/transactions/new" in document["paths"]


# -- mempool policy -----------------------------------------------------------------------------


async def test_fee_below_minimum_is_refused(ledger_client: TestClient) -> None:
    """A fee below the node's min_fee (1000 units by default) is a 400 fee-too-low."""
    await mine(ledger_client, MINER.address)
    for fee in (0, 999):
        status, body, _ = await send(ledger_client, MINER, ALICE.address, COIN, fee=fee)
        assert_error(status, body, 400, "fee-too-low")
    status, body, _ = await send(ledger_client, MINER, ALICE.address, COIN, fee=1_000)
    assert status == 201, body


async def test_replacement_by_fee(ledger_client: TestClient) -> None:
    """The same sender and nonce replaces a pending transaction only with a higher fee: the old
    txid leaves the mempool, dropped with the reason `replaced`; an equal or lower fee is a 409
    replacement-fee-too-low."""
    await mine(ledger_client, MINER.address)
    low = sign(MINER, ALICE.address, COIN, fee=2_000, nonce=0)
    assert (await post_tx(ledger_client, low.to_dict()))[0] == 201
    for fee in (2_000, 1_500):
        rival = sign(MINER, BOB.address, COIN, fee=fee, nonce=0)
        status, body = await post_tx(ledger_client, rival.to_dict())
        assert_error(status, body, 409, "replacement-fee-too-low")
    assert await mempool_txids(ledger_client) == [low.txid]

    high = sign(MINER, BOB.address, COIN, fee=3_000, nonce=0)
    status, body = await post_tx(ledger_client, high.to_dict())
    assert status == 201, body
    assert body["new"] is True
    assert await mempool_txids(ledger_client) == [high.txid]
    gone = await get_json(ledger_client, f"/tx/{low.txid}")
    assert (gone["status"], gone["fate"]["reason"]) == ("dropped", "replaced")
    info = await get_json(ledger_client, f"/address/{MINER.address}")
    assert (info["next_nonce"], info["pending_count"]) == (1, 1)
    assert info["unconfirmed_balance"] == SUBSIDY - COIN - 3_000


@pytest.fixture
async def small_pool(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> TestClient:
    """A ledger whose mempool holds at most 3 transactions, with Miner, Alice, Bob and Carol
    funded by one block each."""
    app = create_app(ledger_settings(tmp_path, redis_url, mempool_max_count=3))
    client = await aiohttp_client(app)
    for key in (MINER, ALICE, BOB, CAROL):
        await mine(client, key.address)
    return client


async def test_full_mempool_evicts_the_cheapest_or_refuses(small_pool: TestClient) -> None:
    """With the mempool full (3), a higher fee evicts the cheapest transaction nothing depends
    on (dropped with the reason `mempool-full`); a fee not above the cheapest is a 503
    mempool-full and changes nothing."""
    txs = {}
    for key, fee in ((MINER, 1_000), (ALICE, 2_000), (BOB, 3_000)):
        txs[fee] = sign(key, test_key(9).address, COIN, fee=fee, nonce=0)
        assert (await post_tx(small_pool, txs[fee].to_dict()))[0] == 201
    rich = sign(CAROL, test_key(9).address, COIN, fee=5_000, nonce=0)
    status, body = await post_tx(small_pool, rich.to_dict())
    assert status == 201, body
    assert await mempool_txids(small_pool) == [rich.txid, txs[3_000].txid, txs[2_000].txid]
    gone = await get_json(small_pool, f"/tx/{txs[1_000].txid}")
    assert (gone["status"], gone["fate"]["reason"]) == ("dropped", "mempool-full")

    for fee in (1_500, 2_000):
        poor = sign(MINER, test_key(9).address, COIN, fee=fee, nonce=0)
        status, body = await post_tx(small_pool, poor.to_dict())
        assert_error(status, body, 503, "mempool-full")
    assert await mempool_txids(small_pool) == [rich.txid, txs[3_000].txid, txs[2_000].txid]


async def test_full_mempool_never_evicts_the_parent_of_the_newcomer(
    small_pool: TestClient,
) -> None:
    """Eviction must not remove the pending transaction the incoming one depends on.

    Miner's nonce-0 transaction is the cheapest in a full pool; Miner's nonce-1 transaction
    with a high fee arrives. The ledger evicts nonce 0 to make room and keeps nonce 1, which
    can never be mined now: the next template carries it and the block it makes is refused
    (bad-nonce), and Miner cannot send nonce 0 again (bad-nonce: "1 pending"). Either the
    newcomer must be refused (mempool-full) or both kept; every template must be mineable.
    """
    parent = sign(MINER, test_key(9).address, COIN, fee=1_000, nonce=0)
    assert (await post_tx(small_pool, parent.to_dict()))[0] == 201
    for key, fee in ((ALICE, 2_000), (BOB, 3_000)):
        other = sign(key, CAROL.address, COIN, fee=fee, nonce=0)
        assert (await post_tx(small_pool, other.to_dict()))[0] == 201
    child = sign(MINER, test_key(9).address, COIN, fee=5_000, nonce=1)
    status, body = await post_tx(small_pool, child.to_dict())
    pool = await mempool_txids(small_pool)
    if status == 201:
        assert parent.txid in pool, "the newcomer's parent was evicted"
    else:
        assert_error(status, body, 503, "mempool-full")
        assert parent.txid in pool
    template = await get_json(small_pool, "/mining/template", address=CAROL.address)
    solved = mine_block(Block.from_dict(template["block"]))
    assert solved is not None
    status, result = await submit(small_pool, solved)
    assert status == 201, result


async def test_mined_transaction_leaves_the_mempool(ledger_client: TestClient) -> None:
    """A pending transaction whose block is mined leaves the mempool; others stay."""
    await mine(ledger_client, MINER.address)
    await mine(ledger_client, ALICE.address)
    status, _, first = await send(ledger_client, MINER, BOB.address, COIN)
    assert status == 201
    (block,) = await mine(ledger_client, CAROL.address)
    assert [t.txid for t in block.transactions[1:]] == [first.txid]
    status, _, second = await send(ledger_client, ALICE, BOB.address, COIN)
    assert status == 201
    assert await mempool_txids(ledger_client) == [second.txid]
    assert (await get_json(ledger_client, "/status"))["mempool_size"] == 1


async def test_replay_of_a_confirmed_transaction(ledger_client: TestClient) -> None:
    """Sending a transaction that is already in a block is a 409 already-confirmed, also as
    a peer's relay, and nothing changes."""
    await mine(ledger_client, MINER.address)
    status, _, tx = await send(ledger_client, MINER, ALICE.address, COIN)
    assert status == 201
    await mine(ledger_client, MINER.address)
    before = await get_json(ledger_client, "/status")
    for body in (tx.to_dict(), tx.to_dict() | {"type": "sharing"}):
        status, answer = await post_tx(ledger_client, body)
        assert_error(status, answer, 409, "already-confirmed")
    assert await get_json(ledger_client, "/status") == before
    assert (await get_json(ledger_client, f"/address/{ALICE.address}"))["balance"] == COIN


async def test_reorg_requeue_respects_the_mempool_limit(small_pool: TestClient) -> None:
    """Transactions put back by a reorg must not push the mempool over mempool_max_count.

    The pool (at most 3) is full when a reorg disconnects a block with one more transaction:
    the ledger re-queues it without trimming, and the pool holds 4. Bitcoin Core trims the
    pool after a reorg (cheapest first); the re-queued transaction paying least should go.
    """
    confirmed = sign(MINER, test_key(9).address, COIN, fee=1_000, nonce=0)
    assert (await post_tx(small_pool, confirmed.to_dict()))[0] == 201
    await mine(small_pool, test_key(9).address)
    for key, fee in ((ALICE, 2_000), (BOB, 3_000), (CAROL, 4_000)):
        tx = sign(key, test_key(9).address, COIN, fee=fee, nonce=0)
        assert (await post_tx(small_pool, tx.to_dict()))[0] == 201
    fork = await header_at(small_pool, 5)
    side6 = child_of(fork, test_key(8).address)
    side7 = child_of(side6.header, test_key(8).address)
    for block in (side6, side7):
        status, body = await submit(small_pool, block)
        assert status == 201, body
    assert (await get_json(small_pool, "/status"))["tip"] == side7.hash
    pool = await get_json(small_pool, "/mempool")
    assert pool["count"] <= 3, [t["fee"] for t in pool["transactions"]]
    reorg = (await get_json(small_pool, "/reorgs"))["reorgs"][0]
    assert (reorg["requeued"], reorg["dropped"]) == ([], [confirmed.txid])
    evicted = await get_json(small_pool, f"/tx/{confirmed.txid}")
    assert (evicted["status"], evicted["fate"]["reason"]) == ("dropped", "mempool-full")
