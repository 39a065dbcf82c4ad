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
