"""Keys, signatures and addresses: round trips, and a clear error for every kind of typo."""

from __future__ import annotations

import pytest

from pybtc import AddressError, PrivateKey, Reason, decode_address, is_address
from pybtc.keys import (
    ADDRESS_LENGTH,
    address_from_payload,
    address_from_public_key,
    b58decode,
    b58encode,
    verify_signature,
)
from tests.chainutil import test_key


def test_address_shape_and_round_trip() -> None:
    for n in range(20):
        key = test_key(n)
        address = key.address
        assert len(address) == ADDRESS_LENGTH
        assert address.startswith("P")
        assert address_from_payload(decode_address(address)) == address
        assert address == address_from_public_key(key.public_key)


def test_base58_keeps_leading_zero_bytes() -> None:
    data = b"\0\0\x01\x02"
    assert b58encode(data).startswith("11")
    assert b58decode(b58encode(data)) == data
    assert b58decode("") == b""


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda a: a[:-1], "has 34 characters, this one has 33"),
        (lambda a: a + "x", "this one has 35"),
        (lambda a: a[:5] + "0" + a[6:], "is not Base58 (Base58 leaves out 0, O, I and l)"),
        (lambda a: a[:5] + "l" + a[6:], "leaves out 0, O, I and l"),
        (lambda a: a[:5] + ("z" if a[5] != "z" else "y") + a[6:], "checksum does not match"),
        (lambda a: a[:7] + a[8] + a[7] + a[9:], "checksum does not match"),
        (lambda a: " " + a[1:], "spaces"),
    ],
)
def test_mistyped_address_is_rejected_with_a_reason(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    address = test_key(1).address
    bad = mangle(address)
    assert bad != address
    with pytest.raises(AddressError) as caught:
        decode_address(bad)
    assert caught.value.reason is Reason.BAD_ADDRESS
    assert message in caught.value.message
    assert not is_address(bad)


def test_wrong_version_byte_is_named() -> None:
    from pybtc.encoding import sha256d

    raw = bytes([0x00]) + bytes(20)
    other = b58encode(raw + sha256d(raw)[:4]).rjust(ADDRESS_LENGTH, "1")
    with pytest.raises(AddressError) as caught:
        decode_address(other)
    assert "version" in caught.value.message or "25 bytes" in caught.value.message


@pytest.mark.parametrize("value", [None, 5, b"P" * 34, ["x"]])
def test_non_string_address(value: object) -> None:
    assert not is_address(value)


def test_sign_and_verify() -> None:
    key = PrivateKey.generate()
    signature = key.sign(b"hello")
    assert len(signature) == 64
    assert signature == key.sign(b"hello")  # Ed25519 is deterministic
    assert verify_signature(key.public_key, signature, b"hello")
    assert not verify_signature(key.public_key, signature, b"hellO")
    assert not verify_signature(test_key(2).public_key, signature, b"hello")
    assert not verify_signature(key.public_key, signature[:63], b"hello")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_signature(key.public_key, flipped, b"hello")


def test_private_key_hex_round_trip_and_repr_hides_secret() -> None:
    key = test_key(3)
    assert PrivateKey.from_hex(key.hex()) == key
    assert key.hex() not in repr(key)
    with pytest.raises(ValueError, match="32 bytes"):
        PrivateKey(b"short")


_P = 2**255 - 19
WEAK_KEYS = {
    "neutral point (order 1)": (1).to_bytes(32, "little"),
    "y = 0 (order 4)": bytes(32),
    "y = p - 1 (order 2)": (_P - 1).to_bytes(32, "little"),
    "order 8": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order 8, other": bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
    ),
    "neutral point with the sign bit": bytes([1]) + bytes(30) + b"\x80",
    "non-canonical y = p + 1": (_P + 1).to_bytes(32, "little"),
    "non-canonical y = p": (_P).to_bytes(32, "little"),
    "too short": bytes(31),
}


@pytest.mark.parametrize("name", list(WEAK_KEYS))
def test_weak_public_keys_are_refused(name: str) -> None:
    from pybtc.keys import is_strong_public_key

    key = WEAK_KEYS[name]
    assert not is_strong_public_key(key)
    assert not verify_signature(key, key.ljust(32, b"\0")[:32] + bytes(32), b"any message")


def test_forged_spend_from_the_neutral_key_address_is_refused() -> None:
    from pybtc import REGTEST, Transaction, ValidationError
    from pybtc.validation import validate_transaction

    neutral = WEAK_KEYS["neutral point (order 1)"]
    # (R = neutral point, S = 0) satisfies the verification equation for every message
    forged = Transaction(
        address_from_public_key(neutral),
        test_key(1).address,
        1_000,
        0,
        0,
        0,
        neutral.hex(),
        (neutral + bytes(32)).hex(),
    )
    with pytest.raises(ValidationError) as caught:
        validate_transaction(forged, REGTEST)
    assert caught.value.reason is Reason.BAD_PUBLIC_KEY


def test_ordinary_keys_are_strong() -> None:
    from pybtc.keys import is_strong_public_key

    assert all(is_strong_public_key(test_key(n).public_key) for n in range(50))
