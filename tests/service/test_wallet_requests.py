"""The wallet service's payment requests (`GET /api/payment-request`, its QR code) and fee
suggestions (`GET /api/fees`, the ledger's `GET /fees` passed on), against a real ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from services.wallet.payreq import parse
from tests.service.walletutil import ALICE, Wallet, assert_refusal, funded_wallet, mistype


@pytest.fixture
async def wallet(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as w:
        yield w


async def test_a_payment_request_and_its_qr_code(wallet: Wallet) -> None:
    label = "Lunch ☕ & tea"
    resp = await wallet.client.get(
        f"/api/payment-request?address={ALICE.address}&amount=0.75&label={quote(label)}"
    )
    assert resp.status == 200, await resp.text()
    made = await resp.json()
    uri = f"pybtc:{ALICE.address}?amount=0.75&label=Lunch%20%E2%98%95%20%26%20tea"
    assert made == {
        "uri": uri,
        "address": ALICE.address,
        "amount": 75_000_000,
        "label": label,
        "qr": f"/api/payment-request.svg?address={ALICE.address}&label="
        "Lunch%20%E2%98%95%20%26%20tea&amount=0.75",
    }
    assert parse(made["uri"]).amount == 75_000_000
    svg = await wallet.client.get(made["qr"])
    text = await svg.text()
    assert svg.status == 200, text[:300]
    assert svg.content_type == "image/svg+xml"
    assert text.startswith("<svg")
    assert f"<title>{uri.replace('&', '&amp;')}</title>" in text


async def test_a_request_without_amount_or_label(wallet: Wallet) -> None:
    resp = await wallet.client.get(f"/api/payment-request?address={ALICE.address}&amount=")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["uri"] == f"pybtc:{ALICE.address}"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "bad-address"),
        (f"address={mistype(ALICE.address)}", "bad-address"),
        (f"address={ALICE.address}&amount=abc", "bad-amount"),
        (f"address={ALICE.address}&amount=0", "bad-amount"),
        (f"address={ALICE.address}&amount=-1", "bad-amount"),
        (f"address={ALICE.address}&amount=1.000000001", "bad-amount"),
        (f"address={ALICE.address}&amount=21000001", "bad-amount"),
        (f"address={ALICE.address}&label={'x' * 101}", "bad-label"),
        (f"address={ALICE.address}&label=a%0Ab", "bad-label"),
        (f"address={ALICE.address}&amount=1&amount=2", "bad-request"),
    ],
)
@pytest.mark.parametrize("path", ["/api/payment-request", "/api/payment-request.svg"])
async def test_a_bad_request_is_a_400(wallet: Wallet, path: str, query: str, reason: str) -> None:
    before = await wallet.snapshot()
    await assert_refusal(await wallet.client.get(f"{path}?{query}"), 400, reason)
    assert await wallet.snapshot() == before


async def test_fees_are_the_ledgers(wallet: Wallet) -> None:
    resp = await wallet.client.get("/api/fees")
    assert resp.status == 200, await resp.text()
    fees = await resp.json()
    ledger = await wallet.ledger("/fees")
    assert fees == {k: ledger[k] for k in ("minimum", "next_block", "economy", "capacity")}
    assert fees["minimum"] == wallet.settings.min_fee
    assert fees["next_block"] >= fees["minimum"]
