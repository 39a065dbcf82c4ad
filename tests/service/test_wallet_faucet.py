"""The wallet's faucet against a real regtest ledger (on a real port) and a real Redis: it pays
test coins from the node key (`<data dir>/miner-regtest.key`, shared with the ledger), limits
each address and each client to one payment per `faucet_interval`, and refuses with the
documented codes when switched off, empty, or given a bad or its own address; a refusal adds
nothing to the mempool and does not count against the rate limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pybtc import COIN
from tests.chainutil import test_key
from tests.service.walletutil import (
    ALICE,
    BOB,
    SENDER,
    Wallet,
    assert_refusal,
    funded_wallet,
    mistype,
    open_wallet,
    transfer,
)

FAUCET = "/api/faucet"


@pytest.fixture
async def wallet(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as w:
        yield w


async def test_faucet_pays(wallet: Wallet) -> None:
    """201 with a txid that is pending in the ledger: faucet_amount from the node key."""
    before = await wallet.ledger(f"/address/{ALICE.address}")
    resp = await wallet.post(FAUCET, {"address": ALICE.address})
    body = await resp.json()
    assert resp.status == 201, body
    assert body["amount"] == wallet.settings.faucet_amount == 10 * COIN
    assert body["explorer_url"] == f"{wallet.settings.explorer_url}/tx/{body['txid']}"
    view = await wallet.ledger(f"/tx/{body['txid']}")
    assert view["status"] == "pending"
    paid = view["transaction"]
    assert (paid["sender"], paid["recipient"]) == (wallet.faucet_key.address, ALICE.address)
    assert (paid["amount"], paid["fee"], paid["nonce"]) == (10 * COIN, 1_000, 0)
    after = await wallet.ledger(f"/address/{ALICE.address}")
    assert after["unconfirmed_balance"] == before["unconfirmed_balance"] + 10 * COIN
    await wallet.mine(BOB.address)
    assert (await wallet.ledger(f"/address/{ALICE.address}"))["balance"] == 10 * COIN


REMOTE = {"X-Forwarded-For": "203.0.113.5"}
"""A client that is not on loopback, as a trusted proxy on loopback names it."""


@pytest.fixture
async def proxied(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    """A funded wallet service behind a proxy on loopback: REMOTE is a remote client."""
    async with funded_wallet(aiohttp_client, tmp_path, redis_url, trusted_proxies="127.0.0.1") as w:
        yield w


async def test_faucet_rate_limits_the_address_and_the_client(proxied: Wallet) -> None:
    """Right after a payment the same address, and another address from the same remote
    client, are 429 rate-limited with a whole-seconds Retry-After; nothing more is paid."""
    wallet = proxied
    resp = await wallet.post(FAUCET, {"address": ALICE.address}, headers=REMOTE)
    assert resp.status == 201, await resp.text()
    for address in (ALICE.address, BOB.address):
        before = await wallet.snapshot()
        resp = await wallet.post(FAUCET, {"address": address}, headers=REMOTE)
        await assert_refusal(resp, 429, "rate-limited")
        retry = resp.headers["Retry-After"]
        assert retry.isdigit(), retry
        assert 1 <= int(retry) <= wallet.settings.faucet_interval
        assert await wallet.snapshot() == before


async def test_concurrent_faucet_requests_pay_once(proxied: Wallet) -> None:
    """Three requests at once from one remote client for three addresses: one payment, two
    429s."""
    wallet = proxied
    addresses = [ALICE.address, BOB.address, SENDER.address]
    answers = await asyncio.gather(
        *(wallet.post(FAUCET, {"address": a}, headers=REMOTE) for a in addresses)
    )
    assert sorted(r.status for r in answers) == [201, 429, 429]
    assert (await wallet.ledger("/status"))["mempool_size"] == 1


async def test_two_local_wallets_are_both_funded(wallet: Wallet) -> None:
    """From loopback (two browser wallets on the node's machine) two addresses one right after
    the other are both paid; the same address again is still 429 (the per-address rule)."""
    for address in (ALICE.address, BOB.address):
        resp = await wallet.post(FAUCET, {"address": address})
        assert resp.status == 201, await resp.text()
    before = await wallet.snapshot()
    await assert_refusal(await wallet.post(FAUCET, {"address": ALICE.address}), 429, "rate-limited")
    assert await wallet.snapshot() == before


async def test_an_operator_amount_from_loopback_is_paid_each_time(wallet: Wallet) -> None:
    """No token set: a loopback client may choose the amount; such payments are not
    rate-limited (twice to one address), and are exactly that many units."""
    for _ in range(2):
        resp = await wallet.post(FAUCET, {"address": ALICE.address, "amount": 150_000_000})
        body = await resp.json()
        assert resp.status == 201, body
        assert body["amount"] == 150_000_000
    await wallet.mine(BOB.address)
    assert (await wallet.ledger(f"/address/{ALICE.address}"))["balance"] == 300_000_000


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (0, "bad-amount"),
        (-5, "bad-amount"),
        ("1", "bad-amount"),
        (True, "bad-amount"),
        (1.5, "bad-amount"),
        (10**15, "amount-over-balance"),
    ],
    ids=["zero", "negative", "string", "bool", "float", "over-balance"],
)
async def test_a_bad_operator_amount_is_refused(wallet: Wallet, amount: Any, reason: str) -> None:
    """An amount that is not a positive whole number of units, or more than the node key can
    spend, is 400 with its reason; nothing is paid."""
    before = await wallet.snapshot()
    resp = await wallet.post(FAUCET, {"address": ALICE.address, "amount": amount})
    await assert_refusal(resp, 400, reason)
    assert await wallet.snapshot() == before


async def test_a_remote_client_may_not_choose_the_amount(proxied: Wallet) -> None:
    """No token set: an amount from a client that is not on loopback is 403 operator-only."""
    before = await proxied.snapshot()
    resp = await proxied.post(FAUCET, {"address": ALICE.address, "amount": COIN}, headers=REMOTE)
    await assert_refusal(resp, 403, "operator-only")
    assert await proxied.snapshot() == before


async def test_with_a_token_the_operator_chooses_the_amount(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """With PYBTC_OPERATOR_TOKEN set the token is what lets an amount through, from anywhere;
    without it the faucet is 401 operator-only."""
    token = "s3cret-token"
    async with funded_wallet(
        aiohttp_client, tmp_path, redis_url, operator_token=token, trusted_proxies="127.0.0.1"
    ) as wallet:
        body = {"address": ALICE.address, "amount": 2 * COIN}
        await assert_refusal(await wallet.post(FAUCET, body), 401, "operator-only")
        auth = {"Authorization": f"Bearer {token}"} | REMOTE
        for _ in range(2):
            resp = await wallet.post(FAUCET, body, headers=auth)
            assert resp.status == 201, await resp.text()


async def test_faucet_pays_again_after_the_interval(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """With a short faucet_interval the same address is paid again once it has passed (two
    payments, nonces 0 and 1)."""
    async with open_wallet(
        aiohttp_client, tmp_path / "node", redis_url, faucet_interval=0.3
    ) as wallet:
        await wallet.mine(wallet.faucet_key.address)
        first = await wallet.post(FAUCET, {"address": ALICE.address})
        assert first.status == 201, await first.text()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            again = await wallet.post(FAUCET, {"address": ALICE.address})
            if again.status == 201:
                break
            await assert_refusal(again, 429, "rate-limited")
            assert int(again.headers["Retry-After"]) >= 1
            assert loop.time() < deadline, "the faucet never paid again"
            await asyncio.sleep(0.1)
        pool = await wallet.ledger("/mempool")
        assert sorted(t["nonce"] for t in pool["transactions"]) == [0, 1]


@pytest.mark.parametrize(
    "body",
    [
        {"address": mistype(ALICE.address)},
        {"address": ALICE.address[:-1]},
        {"address": f" {ALICE.address}"},
        {"address": 5},
        {"address": [ALICE.address]},
        {"address": None},
        {},
        {"addr": ALICE.address},
    ],
    ids=["typo", "short", "space", "int", "list", "null", "empty", "misnamed"],
)
async def test_faucet_bad_address(wallet: Wallet, body: dict[str, Any]) -> None:
    """Refused 400 bad-address, and the refusal does not count against the rate limit."""
    await wallet.refused(FAUCET, body, 400, "bad-address")
    resp = await wallet.post(FAUCET, {"address": ALICE.address})
    assert resp.status == 201, await resp.text()


async def test_faucet_refuses_its_own_address(wallet: Wallet) -> None:
    await wallet.refused(FAUCET, {"address": wallet.faucet_key.address}, 400, "self-send")


async def test_faucet_switched_off(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> None:
    async with open_wallet(aiohttp_client, tmp_path / "node", redis_url, faucet="off") as w:
        await w.mine(w.faucet_key.address, 2)
        await w.refused(FAUCET, {"address": ALICE.address}, 403, "faucet-off")
        params = await (await w.client.get("/api/params")).json()
        assert params["faucet"]["enabled"] is False


async def test_faucet_off_when_mining_to_another_address(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """With PYBTC_MINER_ADDRESS the node's coins are not the node key's: 403 faucet-off, and
    /api/params says the faucet is off (the page hides its button on that)."""
    miner = test_key(7).address
    async with open_wallet(aiohttp_client, tmp_path / "node", redis_url, miner_address=miner) as w:
        await w.mine(w.faucet_key.address, 2)
        await w.refused(FAUCET, {"address": ALICE.address}, 403, "faucet-off")
        params = await (await w.client.get("/api/params")).json()
        assert params["faucet"]["enabled"] is False


async def test_faucet_cannot_spend_coins_still_on_their_way(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """A faucet key whose only coins are a pending payment to it cannot pay yet (the ledger
    spends only confirmed coins): 503 faucet-empty, nothing added to the mempool; once that
    payment is mined it pays."""
    async with open_wallet(aiohttp_client, tmp_path / "node", redis_url) as w:
        await w.mine(SENDER.address, 2)
        await w.submit(transfer(recipient=w.faucet_key.address, amount=20 * COIN, nonce=0))
        before = await w.snapshot()
        resp = await w.post(FAUCET, {"address": ALICE.address})
        await assert_refusal(resp, 503, "faucet-empty")
        after = await w.snapshot()
        assert {**after, "rejections": 0} == {**before, "rejections": 0}
        await w.mine(BOB.address)
        resp = await w.post(FAUCET, {"address": ALICE.address})
        assert resp.status == 201, await resp.text()


async def test_faucet_with_no_coins(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> None:
    """A fresh node key that no block paid: 503 faucet-empty; after a block it pays."""
    async with open_wallet(aiohttp_client, tmp_path / "node", redis_url) as w:
        await w.refused(FAUCET, {"address": ALICE.address}, 503, "faucet-empty")
        await w.mine(w.faucet_key.address)
        resp = await w.post(FAUCET, {"address": ALICE.address})
        assert resp.status == 201, await resp.text()


async def test_faucet_without_csrf_token(wallet: Wallet) -> None:
    await wallet.token()
    await wallet.refused(FAUCET, {"address": ALICE.address}, 403, "csrf", csrf=False)
