"""`pybtc:` payment requests (services/wallet/payreq.py): written, read back, refused."""

from __future__ import annotations

import pytest

from pybtc import COIN
from services.wallet.payreq import PaymentRequest, PaymentRequestError, coins_text, make, parse
from tests.chainutil import test_key

ADDRESS = test_key(1).address


@pytest.mark.parametrize(
    ("request_", "uri"),
    [
        (PaymentRequest(ADDRESS), f"pybtc:{ADDRESS}"),
        (PaymentRequest(ADDRESS, COIN // 2), f"pybtc:{ADDRESS}?amount=0.5"),
        (PaymentRequest(ADDRESS, 2 * COIN, "rent"), f"pybtc:{ADDRESS}?amount=2&label=rent"),
        (
            PaymentRequest(ADDRESS, 1, "a & b ☕"),
            f"pybtc:{ADDRESS}?amount=0.00000001&label=a%20%26%20b%20%E2%98%95",
        ),
        (PaymentRequest(ADDRESS, None, "x=y?"), f"pybtc:{ADDRESS}?label=x%3Dy%3F"),
    ],
)
def test_written_and_read_back(request_: PaymentRequest, uri: str) -> None:
    assert request_.uri() == uri
    assert parse(uri) == request_


def test_the_scheme_is_case_insensitive_and_unknown_fields_are_ignored() -> None:
    assert parse(f"PYBTC:{ADDRESS}?amount=1&message=hi") == PaymentRequest(ADDRESS, COIN)


def test_coins_text_drops_trailing_zeros_only() -> None:
    assert [coins_text(n) for n in (COIN, 10 * COIN, 150_000_000, 1)] == [
        "1",
        "10",
        "1.5",
        "0.00000001",
    ]


@pytest.mark.parametrize(
    ("uri", "field", "message"),
    [
        (f"bitcoin:{ADDRESS}", "address", "starts with pybtc:"),
        ("pybtc:", "address", "that is not a pyBTC address"),
        ("pybtc:P123", "address", "an address has 34 characters"),
        (f"pybtc:{ADDRESS}?amount=abc", "amount", "an amount is digits"),
        (f"pybtc:{ADDRESS}?amount=", "amount", "an amount is digits"),
        (f"pybtc:{ADDRESS}?amount=0", "amount", "more than zero"),
        (f"pybtc:{ADDRESS}?amount=-1", "amount", "amount '-1'"),
        (f"pybtc:{ADDRESS}?amount=1.000000001", "amount", "at most 8 decimal places"),
        (f"pybtc:{ADDRESS}?amount=1&amount=2", "amount", "gives amount twice"),
        (f"pybtc:{ADDRESS}?req-expires=1", "req-expires", "requires 'req-expires'"),
        (f"pybtc:{ADDRESS}?label=%E2%98", "label", "not UTF-8 percent-encoded"),
        (f"pybtc:{ADDRESS}?label={'x' * 101}", "label", "longer than 100 characters"),
        (f"pybtc:{ADDRESS}?label=a%0Ab", "label", "control character"),
    ],
)
def test_a_bad_request_says_what_is_wrong(uri: str, field: str, message: str) -> None:
    with pytest.raises(PaymentRequestError) as caught:
        parse(uri)
    assert caught.value.field == field
    assert message in caught.value.message


def test_make_trims_the_label() -> None:
    assert make(ADDRESS, "1.5", "  lunch ").label == "lunch"
