"""The wallet service's JSON API against a real regtest ledger (on a real port) and a real Redis:
parameters, balances and history, transaction status, address checks, broadcasting signed
transactions, health and metrics, a ledger that is down, and live events.

The wallet and the ledger share one data dir (walletutil.funded_wallet): the node key the
faucet spends holds two block rewards, the test sender (test key 0) two more. Pages are in
test_wallet_pages.py, the faucet in test_wallet_faucet.py, refusals in test_wallet_bad_input.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pybtc import COIN, REGTEST, address_from_public_key
from tests.service.walletutil import (
    ALICE,
    BOB,
    SENDER,
    SUBSIDY,
    Wallet,
    assert_refusal,
    funded_wallet,
    get_page,
    mistype,
    open_wallet,
    transfer,
)


@pytest.fixture
async def wallet(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as w:
        yield w


# -- reading the ledger through the API ----------------------------------------------------------


async def test_params(wallet: Wallet) -> None:
    resp = await wallet.client.get("/api/params")
    assert resp.status == 200
    assert await resp.json() == {
        "network": "regtest",
        "network_id": REGTEST.network_id,
        "min_fee": 1_000,
        "default_fee": 1_000,
        "coin": COIN,
        "explorer_url": wallet.settings.explorer_url,
        "faucet": {"enabled": True, "operator_only": False, "amount": 10 * COIN},
    }


async def test_address_balances_nonces_and_history(wallet: Wallet) -> None:
    """After a confirmed transfer Sender -> Alice (3 pyBTC) and a pending one (1 pyBTC): both
    balances, nonces, and each history with its pending entry (mempool position) first, then
    confirmed entries newest first (with confirmations)."""
    confirmed = transfer(amount=3 * COIN, nonce=0)
    await wallet.submit(confirmed)
    [block] = await wallet.mine(BOB.address)
    await wallet.mine(BOB.address)
    pending = transfer(amount=COIN, nonce=1)
    await wallet.submit(pending)

    alice = await (await wallet.client.get(f"/api/address/{ALICE.address}")).json()
    assert {
        k: alice[k]
        for k in (
            "spendable",
            "balance",
            "unconfirmed_balance",
            "pending_in",
            "pending_out",
            "nonce",
            "next_nonce",
        )
    } == {
        "spendable": 3 * COIN,  # the pending coin coming in cannot be spent yet
        "balance": 3 * COIN,
        "unconfirmed_balance": 4 * COIN,
        "pending_in": COIN,
        "pending_out": 0,
        "nonce": 0,
        "next_nonce": 0,
    }
    parties = {"sender": SENDER.address, "recipient": ALICE.address, "fee": 1_000}
    assert alice["history"] == [
        {
            "txid": pending.txid,
            "delta": COIN,
            "status": "pending",
            "mempool_position": 1,
            "blocks_to_wait": 1,
            "fate": None,
            "amount": COIN,
            "timestamp": 0,
            "counterparty": SENDER.address,
            **parties,
        },
        {
            "txid": confirmed.txid,
            "delta": 3 * COIN,
            "status": "confirmed",
            "height": block.index,
            "confirmations": 2,
            "fate": None,
            "amount": 3 * COIN,
            "timestamp": 0,
            "counterparty": SENDER.address,
            "block_time": block.timestamp,
            "balance_after": 3 * COIN,
            **parties,
        },
    ]
    assert (alice["address"], alice["history_total"], alice["offset"]) == (ALICE.address, 1, 0)
    assert alice["page_size"] == 25

    sender = await (await wallet.client.get(f"/api/address/{SENDER.address}")).json()
    spent = 3 * COIN + 1_000
    assert sender["balance"] == 2 * SUBSIDY - spent
    assert sender["unconfirmed_balance"] == 2 * SUBSIDY - spent - COIN - 1_000
    assert (sender["nonce"], sender["next_nonce"]) == (1, 2)
    assert sender["spendable"] == sender["unconfirmed_balance"]  # nothing pending comes in
    assert [(e["status"], e["delta"]) for e in sender["history"]] == [
        ("pending", -(COIN + 1_000)),
        ("confirmed", -spent),
        ("confirmed", SUBSIDY),
        ("confirmed", SUBSIDY),
    ]
    assert sender["history_total"] == 3


async def test_address_history_pages_with_offset(wallet: Wallet) -> None:
    """?offset=n skips the n newest confirmed entries; pending ones head the first page only."""
    await wallet.mine(SENDER.address, 3)  # five coinbases in all
    pending = transfer(nonce=0)
    await wallet.submit(pending)
    first = await (await wallet.client.get(f"/api/address/{SENDER.address}")).json()
    later = await (await wallet.client.get(f"/api/address/{SENDER.address}?offset=2")).json()
    assert first["history"][0]["txid"] == pending.txid
    confirmed = [e for e in first["history"] if e["status"] == "confirmed"]
    assert [e["confirmations"] for e in confirmed] == [1, 2, 3, 4, 5]
    assert later["offset"] == 2
    assert later["history_total"] == first["history_total"] == 5
    assert later["history"] == confirmed[2:]
    past = await (await wallet.client.get(f"/api/address/{SENDER.address}?offset=99")).json()
    assert past["history"] == []


async def test_tx_pending_confirmed_and_unknown(wallet: Wallet) -> None:
    tx = transfer()
    await wallet.submit(tx)
    resp = await wallet.client.get(f"/api/tx/{tx.txid}")
    view = await resp.json()
    assert resp.status == 200
    assert (view["status"], view["mempool_position"]) == ("pending", 1)
    assert view["transaction"] == tx.to_dict()
    [block] = await wallet.mine(BOB.address)
    view = await (await wallet.client.get(f"/api/tx/{tx.txid}")).json()
    assert (view["status"], view["height"], view["confirmations"]) == ("confirmed", block.index, 1)
    assert view["block_hash"] == block.hash
    unknown = await wallet.client.get(f"/api/tx/{'ab' * 32}")
    await assert_refusal(unknown, 404, "not-found")


async def test_check_address_accepts_a_good_one(wallet: Wallet) -> None:
    resp = await wallet.client.get(f"/api/check-address/{ALICE.address}")
    assert (resp.status, await resp.json()) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (mistype, "address checksum does not match: a character is mistyped"),
        (lambda a: a[:-1], "an address has 34 characters, this one has 33"),
        (lambda a: a + "1", "an address has 34 characters, this one has 35"),
        (
            lambda a: a[:5] + "0" + a[6:],
            "character '0' at position 6 is not Base58 (Base58 leaves out 0, O, I and l)",
        ),
        (lambda a: a[:5] + "O" + a[6:], "character 'O' at position 6 is not Base58"),
        (lambda a: "%20" + a, "an address must not have spaces around it"),
        (lambda a: "Q" + a[1:], "unknown address version"),
    ],
    ids=["one-char", "short", "long", "zero", "capital-o", "space", "not-p"],
)
async def test_check_address_explains_each_typo(wallet: Wallet, spoil: Any, message: str) -> None:
    """For pages without WebCrypto: 200 {"ok": false, "message"} saying what is wrong."""
    resp = await wallet.client.get(f"/api/check-address/{spoil(ALICE.address)}")
    body = await resp.json()
    assert resp.status == 200
    assert body["ok"] is False
    assert body["message"].startswith(message), body


async def test_address_of_key(wallet: Wallet) -> None:
    for key in (ALICE, BOB, wallet.faucet_key):
        resp = await wallet.client.get(f"/api/address-of-key/{key.public_key.hex()}")
        assert resp.status == 200
        expected = address_from_public_key(key.public_key)
        assert await resp.json() == {"address": expected}
        assert expected == key.address


# -- broadcast -----------------------------------------------------------------------------------


async def test_broadcast_passes_a_signed_transaction_to_the_ledger(wallet: Wallet) -> None:
    tx = transfer()
    resp = await wallet.post("/api/broadcast", tx.to_dict())
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {
        "txid": tx.txid,
        "explorer_url": f"{wallet.settings.explorer_url}/tx/{tx.txid}",
    }
    pool = await wallet.ledger("/mempool")
    assert [t["txid"] for t in pool["transactions"]] == [tx.txid]
    view = await wallet.ledger(f"/tx/{tx.txid}")
    assert view["transaction"] == tx.to_dict()


async def test_broadcast_computes_a_missing_txid(wallet: Wallet) -> None:
    tx = transfer()
    body = tx.to_dict()
    del body["txid"]
    resp = await wallet.post("/api/broadcast", body)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["txid"] == tx.txid
    assert (await wallet.ledger("/status"))["mempool_size"] == 1
    assert (await wallet.ledger(f"/tx/{tx.txid}"))["status"] == "pending"


async def test_broadcast_from_the_same_origin_is_accepted(wallet: Wallet) -> None:
    """A browser's same-origin POST carries `Origin: http://<host>`; that is not cross-site."""
    server = wallet.client.server
    origin = f"http://{server.host}:{server.port}"
    resp = await wallet.post("/api/broadcast", transfer().to_dict(), headers={"Origin": origin})
    assert resp.status == 201, await resp.text()


async def test_rebroadcast_of_a_pending_transaction(wallet: Wallet) -> None:
    """The ledger admits by txid idempotently: sending a pending transaction again is 201 with
    the same txid, and the mempool still holds it once."""
    tx = transfer()
    await wallet.submit(tx)
    before = await wallet.snapshot()
    resp = await wallet.post("/api/broadcast", tx.to_dict())
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["txid"] == tx.txid
    assert await wallet.snapshot() == before


# -- health, metrics, a ledger that is down ------------------------------------------------------


async def test_healthz_and_metrics(wallet: Wallet) -> None:
    resp = await wallet.client.get("/healthz")
    assert resp.status == 200
    health = await resp.json()
    assert (health["service"], health["status"]) == ("wallet", "ok")
    assert health["checks"]["ledger"]["ok"] is True
    await wallet.client.get("/api/params")
    resp = await wallet.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert 'pybtc_http_requests_total{route="/api/params",service="wallet",status="200"}' in text


async def test_ledger_down(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> None:
    """Nothing listens at the ledger URL: every API call that needs it is a 503
    ledger-unavailable JSON answer, pages still render, refusals are still pages, /healthz
    says degraded; never a 500."""
    async with open_wallet(aiohttp_client, tmp_path / "node", redis_url, ledger=False) as wallet:
        client = wallet.client
        for path in (f"/api/address/{ALICE.address}", f"/api/tx/{'ab' * 32}"):
            await assert_refusal(await client.get(path), 503, "ledger-unavailable")
        for path, body in (
            ("/api/broadcast", transfer().to_dict()),
            ("/api/faucet", {"address": ALICE.address}),
        ):
            await assert_refusal(await wallet.post(path, body), 503, "ledger-unavailable")
        assert (await client.get("/api/params")).status == 200
        await get_page(wallet, "/")
        await get_page(wallet, f"/address/{ALICE.address}")
        text = await get_page(wallet, f"/watch?address={ALICE.address[:-1]}", status=400)
        assert "this one has 33" in text
        await get_page(wallet, "/nope", status=404)
        resp = await client.get("/healthz")
        health = await resp.json()
        assert (resp.status, health["status"]) == (200, "degraded")
        assert health["checks"]["ledger"]["ok"] is False
        # the faucet did not count the failed attempt: it is not rate-limited
        resp = await wallet.post("/api/faucet", {"address": ALICE.address})
        await assert_refusal(resp, 503, "ledger-unavailable")


# -- live ----------------------------------------------------------------------------------------


async def test_events_announce_a_new_transaction(wallet: Wallet) -> None:
    """`GET /events` says hello, then relays the ledger's `tx` announcement of a broadcast."""
    async with wallet.client.get("/events") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(stream.content.readline(), 5)
        assert first.startswith(b"event: hello")
        tx = transfer()
        resp = await wallet.post("/api/broadcast", tx.to_dict())
        assert resp.status == 201, await resp.text()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        seen = []
        while loop.time() < deadline:
            line = await asyncio.wait_for(stream.content.readline(), 10)
            seen.append(line)
            if line.startswith(b"event: tx"):
                data = await asyncio.wait_for(stream.content.readline(), 5)
                assert data.startswith(b"data: ")
                assert tx.txid.encode() in data
                return
        raise AssertionError(f"no tx event; saw {seen}")
