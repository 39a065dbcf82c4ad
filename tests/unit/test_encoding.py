"""Integer money and field checks: no float, bool or string ever becomes an amount."""

from __future__ import annotations

import math

import pytest

from pybtc import COIN, MAX_MONEY, Reason, Transaction, ValidationError, format_amount, parse_amount
from pybtc.encoding import check_uint, var_bytes
from tests.chainutil import FundedChain


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", COIN),
        ("1.5", 150_000_000),
        ("0.00000001", 1),
        (".5", 50_000_000),
        ("21000000", MAX_MONEY),
        (" 2.25 ", 225_000_000),
        ("0", 0),
    ],
)
def test_parse_amount(text: str, units: int) -> None:
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.000000001", "8 decimal places"),
        ("-1", "digits"),
        ("1e3", "digits"),
        ("1,5", "digits"),
        ("", "digits"),
        ("NaN", "digits"),
        ("21000000.00000001", "cannot exceed"),
        ("1.000000000", "8 decimal places"),
        ("1.0000000000000000000000000001", "8 decimal places"),  # no silent rounding
        ("0.99999999999999999999999999999", "8 decimal places"),  # nor rounding up
        ("9" * 5000, "cannot exceed"),
        ("\u0661.\u0665", "digits"),  # Arabic-Indic digits are not ASCII digits
        ("\u00a01", "digits"),
    ],
)
def test_parse_amount_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_amount(text)


def test_format_amount() -> None:
    assert format_amount(150_000_000) == "1.50000000"
    assert format_amount(1) == "0.00000001"
    assert format_amount(-COIN) == "-1.00000000"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0.1, Reason.BAD_TYPE),
        (1.0, Reason.BAD_TYPE),
        (math.nan, Reason.BAD_TYPE),
        (math.inf, Reason.BAD_TYPE),
        ("100", Reason.BAD_TYPE),
        (True, Reason.BAD_TYPE),
        (None, Reason.BAD_TYPE),
        ([1], Reason.BAD_TYPE),
        (-1, Reason.BAD_AMOUNT),
        (MAX_MONEY + 1, Reason.BAD_AMOUNT),
        (10**100, Reason.BAD_AMOUNT),
    ],
)
def test_amount_must_be_an_integer_in_range(
    funded: FundedChain, value: object, reason: Reason
) -> None:
    data = funded.transfer(funded.miner, funded.others[0].address, COIN).to_dict()
    data["amount"] = value
    with pytest.raises(ValidationError) as caught:
        Transaction.from_dict(data)
    assert caught.value.reason is reason


@pytest.mark.parametrize("field", ["nonce", "timestamp"])
@pytest.mark.parametrize("value", [-1, 2**64, 1.5, "3", False])
def test_counters_are_u64(funded: FundedChain, field: str, value: object) -> None:
    data = funded.transfer(funded.miner, funded.others[0].address, COIN).to_dict()
    data[field] = value
    with pytest.raises(ValidationError) as caught:
        Transaction.from_dict(data)
    assert caught.value.reason in {Reason.BAD_TYPE, Reason.OUT_OF_RANGE}


@pytest.mark.parametrize("data", [None, [], "tx", 5])
def test_transaction_must_be_an_object(data: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Transaction.from_dict(data)
    assert caught.value.reason is Reason.BAD_TYPE


def test_check_uint_bounds() -> None:
    assert check_uint("x", 0, 5) == 0
    assert check_uint("x", 5, 5) == 5
    with pytest.raises(ValidationError):
        check_uint("x", 6, 5)


def test_var_bytes_limit() -> None:
    assert var_bytes(b"ab") == b"\x02ab"
    with pytest.raises(ValueError, match="255"):
        var_bytes(bytes(256))


def test_transaction_json_round_trip(funded: FundedChain) -> None:
    tx = funded.transfer(funded.miner, funded.others[0].address, COIN)
    again = Transaction.from_dict(tx.to_dict())
    assert again == tx
    assert again.txid == tx.txid
    assert set(tx.to_dict()) == {
        "sender",
        "recipient",
        "amount",
        "fee",
        "nonce",
        "timestamp",
        "public_key",
        "signature",
        "txid",
    }
