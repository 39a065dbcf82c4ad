"""Bad input against the wallet service: every refusal is a JSON `{"error", "reason"}` with the
exact status and reason code, never a 500, and leaves the ledger as it was.

Each test starts from a real regtest ledger (real port, SQLite in tmp_path, real Redis) and the
wallet app sharing its data dir: the faucet key holds two block rewards, the sender (test key
0) two more and has sent Bob 1 pyBTC (nonce 0, pending). A refusal is checked against a
snapshot of the ledger (tip, mempool, the test accounts and the faucet key's) and of its
rejection log: what the wallet refuses itself must never reach the ledger, and what the ledger
refuses is logged there once. Bodies are sent as raw bytes with `Content-Type:
application/json` and the session's CSRF token unless a test is about those. The faucet's
own refusals are in test_wallet_faucet.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pybtc import COIN, DEVNET, Transaction
from pybtc.transaction import TX_FIELDS
from tests.service.walletutil import (
    ALICE,
    BOB,
    CSRF_COOKIE,
    SENDER,
    SUBSIDY,
    Wallet,
    assert_refusal,
    funded_wallet,
    mistype,
    open_wallet,
    transfer,
)

BROADCAST, FAUCET = "/api/broadcast", "/api/faucet"


@pytest.fixture
async def wallet(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    """Faucet key: two rewards. Sender: two rewards, Sender -> Bob 1 pyBTC pending (nonce 0)."""
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as w:
        await w.submit(transfer(recipient=BOB.address, nonce=0))
        yield w


def next_tx(**changes: Any) -> Transaction:
    """The valid transfer Sender -> Alice (1 pyBTC, nonce 1) that each test spoils."""
    return transfer(**({"nonce": 1} | changes))


async def test_the_base_transaction_is_valid(wallet: Wallet) -> None:
    """The transaction the tests below spoil is itself accepted through the wallet."""
    resp = await wallet.post(BROADCAST, next_tx().to_dict())
    assert resp.status == 201, await resp.text()


# -- the shape of the body -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [BROADCAST, FAUCET])
@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"amount": 1,}',
        b"{'address': 1}",
        b'{"a": 1} trailing',
        b"\xff\xfe\x00",
        b"",
        b" \r\n ",
        b'{"amount": NaN}',
        b'{"amount": Infinity}',
        b'{"a": 1, "a": 2}',
        b"[" * 50_000,
    ],
    ids=[
        "unclosed",
        "trailing-comma",
        "single-quotes",
        "trailing-text",
        "not-utf8",
        "empty",
        "blank",
        "nan",
        "infinity",
        "duplicate-key",
        "deep-nesting",
    ],
)
async def test_malformed_json(wallet: Wallet, path: str, raw: bytes) -> None:
    await wallet.refused(path, raw, 400, "malformed-json")


@pytest.mark.parametrize("path", [BROADCAST, FAUCET])
@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"tx"', b"5", b"null", b"true"])
async def test_json_that_is_not_an_object(wallet: Wallet, path: str, raw: bytes) -> None:
    await wallet.refused(path, raw, 400, "bad-type")


@pytest.mark.parametrize("field", TX_FIELDS)
async def test_missing_field(wallet: Wallet, field: str) -> None:
    body = next_tx().to_dict()
    del body[field]
    answer = await wallet.refused(BROADCAST, body, 400, "missing-field")
    assert field in answer["error"]


@pytest.mark.parametrize("extra", [{"memo": "hi"}, {"Amount": 5}, {"type": "sharing"}, {"": 0}])
async def test_extra_field(wallet: Wallet, extra: dict[str, Any]) -> None:
    """Fields a transaction does not have are refused (also the ledger's relay marker)."""
    await wallet.refused(BROADCAST, next_tx().to_dict() | extra, 400, "unknown-field")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount", "100000000", "bad-type"),
        ("amount", 1.5, "bad-type"),
        ("amount", 100000000.0, "bad-type"),
        ("amount", True, "bad-type"),
        ("amount", None, "bad-type"),
        ("amount", -1, "bad-amount"),
        ("amount", 2**64, "bad-amount"),
        ("fee", -1, "bad-fee"),
        ("fee", "1000", "bad-type"),
        ("nonce", "1", "bad-type"),
        ("nonce", -1, "out-of-range"),
        ("nonce", 2**64, "out-of-range"),
        ("timestamp", False, "bad-type"),
        ("sender", 5, "bad-address"),
        ("recipient", ALICE.address[:-1], "bad-address"),
        ("recipient", [ALICE.address], "bad-address"),
        ("public_key", "zz" * 32, "bad-hex"),
        ("public_key", 5, "bad-type"),
        ("signature", "ab" * 63, "bad-hex"),
        ("signature", {}, "bad-type"),
    ],
)
async def test_wrong_types(wallet: Wallet, field: str, value: Any, reason: str) -> None:
    """A field of the wrong JSON type or out of range is refused by the wallet itself."""
    await wallet.refused(BROADCAST, next_tx().to_dict() | {field: value}, 400, reason)


# -- signatures, txids, replays: what the ledger decides ------------------------------------------


async def test_forged_signature(wallet: Wallet) -> None:
    body = next_tx().to_dict()
    signature = bytearray.fromhex(body.pop("signature"))
    signature[10] ^= 0x01
    del body["txid"]
    body["signature"] = signature.hex()
    await wallet.refused(BROADCAST, body, 400, "bad-signature", reached_ledger=True)


async def test_amount_changed_after_signing(wallet: Wallet) -> None:
    """With the signed txid still in, the wallet sees it no longer matches (bad-txid); without
    it, the ledger finds the signature does not cover the new amount (bad-signature)."""
    body = next_tx().to_dict() | {"amount": 2 * COIN}
    await wallet.refused(BROADCAST, body, 400, "bad-txid")
    del body["txid"]
    await wallet.refused(BROADCAST, body, 400, "bad-signature", reached_ledger=True)


@pytest.mark.parametrize("txid", ["00" * 32, "AB" * 32, "", 5])
async def test_wrong_txid(wallet: Wallet, txid: Any) -> None:
    await wallet.refused(BROADCAST, next_tx().to_dict() | {"txid": txid}, 400, "bad-txid")


async def test_signed_for_another_network(wallet: Wallet) -> None:
    tx = next_tx(network_id=DEVNET.network_id)
    await wallet.refused(BROADCAST, tx.to_dict(), 400, "bad-signature", reached_ledger=True)


async def test_signed_by_another_key(wallet: Wallet) -> None:
    """Alice's key spending from the sender's address: sender-key-mismatch."""
    tx = next_tx()
    alice = transfer(ALICE, tx.recipient, tx.amount, fee=tx.fee, nonce=tx.nonce)
    body = alice.to_dict() | {"sender": SENDER.address}
    del body["txid"]
    await wallet.refused(BROADCAST, body, 400, "sender-key-mismatch", reached_ledger=True)


async def test_replay_of_a_confirmed_transaction(wallet: Wallet) -> None:
    """Once mined, the same signed transaction again is the ledger's 409 already-confirmed."""
    pending = transfer(recipient=BOB.address, nonce=0)
    await wallet.mine(BOB.address)
    assert (await wallet.ledger(f"/tx/{pending.txid}"))["status"] == "confirmed"
    await wallet.refused(
        BROADCAST, pending.to_dict(), 409, "already-confirmed", reached_ledger=True
    )


async def test_double_spend_of_a_pending_nonce(wallet: Wallet) -> None:
    """Nonce 0 again (pending to Bob) to Alice at the same fee: 409 replacement-fee-too-low."""
    rival = next_tx(nonce=0)
    await wallet.refused(
        BROADCAST, rival.to_dict(), 409, "replacement-fee-too-low", reached_ledger=True
    )


async def test_more_than_the_balance(wallet: Wallet) -> None:
    tx = next_tx(amount=2 * SUBSIDY - COIN)
    await wallet.refused(BROADCAST, tx.to_dict(), 400, "insufficient-funds", reached_ledger=True)


async def test_coinbase_outside_a_block(wallet: Wallet) -> None:
    """The tutorial's mining reward (sender "0") sent as a transaction: only a block makes
    money."""
    coinbase = Transaction.coinbase(ALICE.address, SUBSIDY, 9, 0)
    await wallet.refused(
        BROADCAST, coinbase.to_dict(), 400, "coinbase-outside-block", reached_ledger=True
    )


async def test_mempool_full_is_passed_on(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """The ledger's refusal is the answer (docs/wallet.md), also its 503 mempool-full, which
    tells the sender what to do (a higher fee, or wait); not a bare 502."""
    async with open_wallet(
        aiohttp_client, tmp_path / "node", redis_url, ledger_changes={"mempool_max_count": 1}
    ) as w:
        await w.mine(SENDER.address, 2)
        await w.submit(transfer(recipient=BOB.address, nonce=0))
        await w.refused(BROADCAST, next_tx().to_dict(), 503, "mempool-full", reached_ledger=True)


async def test_body_over_the_size_limit(wallet: Wallet) -> None:
    """More than 64 KiB is a 413 body-too-large (the ledger's code for it), with or without a
    Content-Length; a transaction is admitted afterwards."""
    padded = json.dumps(next_tx().to_dict() | {"memo": "x" * 70_000}).encode()
    assert len(padded) > 65_536
    await wallet.refused(BROADCAST, padded, 413, "body-too-large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 4096

    before = await wallet.snapshot()
    resp = await wallet.client.post(
        BROADCAST,
        data=chunks(),
        headers={"Content-Type": "application/json", "X-CSRF-Token": await wallet.token()},
    )
    await assert_refusal(resp, 413, "body-too-large")
    assert await wallet.snapshot() == before
    resp = await wallet.post(BROADCAST, next_tx().to_dict())
    assert resp.status == 201, await resp.text()


# -- CSRF: nothing reaches the ledger ------------------------------------------------------------


async def _csrf_refused(wallet: Wallet, status: int, reason: str, **kw: Any) -> None:
    """A valid transaction, refused before it could reach the ledger (which never hears of it)."""
    tx = next_tx()
    await wallet.refused(BROADCAST, tx.to_dict(), status, reason, **kw)
    assert await wallet.ledger_status(f"/tx/{tx.txid}") == 404


async def test_csrf_header_missing(wallet: Wallet) -> None:
    await wallet.token()  # the cookie is there, the header is not
    await _csrf_refused(wallet, 403, "csrf", csrf=False)


async def test_csrf_header_wrong(wallet: Wallet) -> None:
    token = await wallet.token()
    wrong = ("A" if token[0] != "A" else "B") + token[1:]
    await _csrf_refused(wallet, 403, "csrf", token=wrong)
    await _csrf_refused(wallet, 403, "csrf", token="")
    await _csrf_refused(wallet, 403, "csrf", token="é" * 43)


async def test_csrf_cookie_missing(wallet: Wallet) -> None:
    """The right header value from before, but no cookie (another site cannot send ours)."""
    token = await wallet.token()
    wallet.client.session.cookie_jar.clear()
    await _csrf_refused(wallet, 403, "csrf", token=token)


async def test_csrf_cookie_not_a_token(wallet: Wallet) -> None:
    """A cookie and header that match but are not a token the service made (too short)."""
    wallet.client.session.cookie_jar.update_cookies({CSRF_COOKIE: "abc"})
    await _csrf_refused(wallet, 403, "csrf", token="abc")


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://127.0.0.1"])
async def test_csrf_other_origin(wallet: Wallet, origin: str) -> None:
    """A request from another site is refused even with the right token."""
    await _csrf_refused(wallet, 403, "csrf", headers={"Origin": origin})


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_not_json(wallet: Wallet, content_type: str) -> None:
    """The right token but a body that is not application/json: 415."""
    await _csrf_refused(
        wallet, 415, "unsupported-media-type", headers={"Content-Type": content_type}
    )


# -- reading: bad addresses, ids, keys, queries, paths -------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        (f"/api/address/{mistype(ALICE.address)}", 400, "bad-address"),
        (f"/api/address/{ALICE.address[:-1]}", 400, "bad-address"),
        (f"/api/address/{ALICE.address}?offset=-1", 400, "bad-query"),
        (f"/api/address/{ALICE.address}?offset=x", 400, "bad-query"),
        (f"/api/address/{ALICE.address}?offset=1.5", 400, "bad-query"),
        (f"/api/address/{ALICE.address}?offset={2**41}", 400, "bad-query"),
        ("/api/tx/zz", 400, "bad-txid"),
        (f"/api/tx/{'AB' * 32}", 400, "bad-txid"),
        (f"/api/tx/{'ab' * 31}", 400, "bad-txid"),
        (f"/api/tx/{'ab' * 33}", 400, "bad-txid"),
        (f"/api/address-of-key/{'zz' * 32}", 400, "bad-public-key"),
        (f"/api/address-of-key/{'AB' * 32}", 400, "bad-public-key"),
        (f"/api/address-of-key/{'ab' * 31}", 400, "bad-public-key"),
        (f"/api/address-of-key/{'ab' * 33}", 400, "bad-public-key"),
    ],
)
async def test_bad_read(wallet: Wallet, path: str, status: int, reason: str) -> None:
    before = await wallet.snapshot()
    await assert_refusal(await wallet.client.get(path), status, reason)
    assert await wallet.snapshot() == before


async def test_unknown_api_path_and_wrong_method(wallet: Wallet) -> None:
    """Under /api/ an unknown path and a wrong method answer like the ledger does: 404
    not-found and 405 method-not-allowed, as JSON."""
    await assert_refusal(await wallet.client.get("/api/nope"), 404, "not-found")
    resp = await wallet.client.get(BROADCAST)
    await assert_refusal(resp, 405, "method-not-allowed")
    assert resp.headers.get("Allow") == "POST"
    await wallet.refused("/api/params", {}, 405, "method-not-allowed")
