"""The ledger's main path end to end: mine, send, mine again, read it all back."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST
from tests.chainutil import test_key
from tests.service.ledgerutil import mine, send


async def test_mine_send_confirm(ledger_client: TestClient) -> None:
    miner, alice = test_key(0), test_key(1)
    await mine(ledger_client, miner.address, 3)
    status, body, tx = await send(ledger_client, miner, alice.address, 5 * COIN)
    assert status == 201, body
    assert body["message"] == "Transaction will be added to Block 5"
    pending = await (await ledger_client.get(f"/tx/{tx.txid}")).json()
    assert pending["status"] == "pending"
    assert pending["mempool_position"] == 1
    await mine(ledger_client, miner.address)
    confirmed = await (await ledger_client.get(f"/tx/{tx.txid}")).json()
    assert confirmed["status"] == "confirmed"
    assert confirmed["height"] == 5
    info = await (await ledger_client.get(f"/address/{alice.address}")).json()
    assert info["balance"] == 5 * COIN
    chain = await (await ledger_client.get("/chain")).json()
    assert chain["length"] == 5
    assert chain["chain"][0]["hash"] == REGTEST.genesis.hash
    status_body = await (await ledger_client.get("/status")).json()
    assert status_body["height"] == 5
    health = await (await ledger_client.get("/healthz")).json()
    assert health["status"] == "ok", health
