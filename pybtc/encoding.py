"""Canonical byte encoding, hashing, and integer money.

Everything that is signed or hashed is first turned into bytes by the functions here, in one
fixed way (docs/protocol.md §2): unsigned integers big-endian and fixed width, strings and byte
strings with a one-byte length in front. JSON is only the transport; two implementations agree
because they agree on these bytes.

Money is an `int` of base units: 1 pyBTC = 100,000,000 units (`COIN`), and no amount anywhere
may exceed `MAX_MONEY`. Floats never touch an amount.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from pybtc.errors import DecodeError, Reason

COIN = 100_000_000
"""Base units in one pyBTC (Bitcoin's satoshi ratio)."""

MAX_MONEY = 21_000_000 * COIN
"""No amount, fee, balance or total may exceed this (Bitcoin Core: MAX_MONEY)."""

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

_HEX = re.compile(r"[0-9a-f]*")


def sha256(data: bytes) -> bytes:
    """SHA-256 of `data`."""
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double SHA-256, the hash of every header, transaction and Merkle node."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def u32(value: int) -> bytes:
    """A 4-byte big-endian unsigned integer."""
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    """An 8-byte big-endian unsigned integer."""
    return value.to_bytes(8, "big")


def var_bytes(data: bytes) -> bytes:
    """Bytes with a one-byte length prefix (so at most 255 bytes)."""
    if len(data) > 255:
        raise ValueError("var_bytes holds at most 255 bytes")
    return bytes([len(data)]) + data


def var_str(text: str) -> bytes:
    """A string as UTF-8 with a one-byte length prefix."""
    return var_bytes(text.encode("utf-8"))


def is_int(value: object) -> bool:
    """True for a real integer: `bool` is an `int` in Python but never an amount."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_uint(name: str, value: object, maximum: int) -> int:
    """Rule `bad-type`/`out-of-range`: `value` is an integer in [0, maximum]."""
    if not is_int(value):
        raise DecodeError(Reason.BAD_TYPE, f"{name} must be an integer, not {type(value).__name__}")
    assert isinstance(value, int)
    if not 0 <= value <= maximum:
        raise DecodeError(Reason.OUT_OF_RANGE, f"{name} must be between 0 and {maximum}")
    return value


def check_hex(name: str, value: object, nbytes: int | None) -> str:
    """Rule `bad-hex`: `value` is lowercase hex, of exactly `nbytes` bytes when given."""
    if not isinstance(value, str):
        raise DecodeError(Reason.BAD_TYPE, f"{name} must be a hex string")
    if len(value) % 2 or not _HEX.fullmatch(value):
        raise DecodeError(Reason.BAD_HEX, f"{name} must be lowercase hexadecimal")
    if nbytes is not None and len(value) != 2 * nbytes:
        raise DecodeError(
            Reason.BAD_HEX, f"{name} must be {nbytes} bytes ({2 * nbytes} hex digits)"
        )
    return value


def check_keys(
    kind: str,
    data: Mapping[str, object],
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> None:
    """Rules `missing-field` / `unknown-field`: a JSON object has exactly the expected keys."""
    missing = [name for name in required if name not in data]
    if missing:
        raise DecodeError(Reason.MISSING_FIELD, f"{kind} is missing {', '.join(missing)}")
    unknown = sorted(str(k) for k in data if k not in required and k not in optional)
    if unknown:
        raise DecodeError(Reason.UNKNOWN_FIELD, f"{kind} has unknown field(s) {', '.join(unknown)}")


def format_amount(units: int) -> str:
    """Base units as a pyBTC decimal string with 8 places: 150000000 -> '1.50000000'."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), COIN)
    return f"{sign}{whole}.{frac:08d}"


def parse_amount(text: str) -> int:
    """A pyBTC decimal string ('1.5', '0.00000001') as exact base units; raises ValueError.

    Parsed as digits, never through a float or a rounding Decimal: at most 8 decimal places
    (trailing zeros count), at most MAX_MONEY.
    """
    cleaned = text.strip(" \t")
    if not re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", cleaned):
        raise ValueError("an amount is digits with at most one decimal point, like 1.25")
    whole, _, frac = cleaned.partition(".")
    if len(frac) > 8:
        raise ValueError("an amount has at most 8 decimal places")
    whole = whole.lstrip("0")
    if len(whole) > 8:  # more than 99,999,999 pyBTC: over the supply whatever the digits
        raise ValueError("an amount cannot exceed 21,000,000 pyBTC")
    result = int(whole or "0") * COIN + int(frac.ljust(8, "0"))
    if result > MAX_MONEY:
        raise ValueError("an amount cannot exceed 21,000,000 pyBTC")
    return result
