"""Ed25519 keys, signatures, and checksummed addresses.

An address is Base58Check (Bitcoin's alphabet and checksum) of one version byte, 0x38, and
the first 20 bytes of SHA-256 of the 32-byte public key. Every address is 34 characters and
starts with `P`. The 4-byte checksum catches a mistyped character, so a typo is rejected with
a message that says what is wrong instead of burning coins (docs/protocol.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pybtc.encoding import sha256, sha256d
from pybtc.errors import AddressError

ADDRESS_VERSION = 0x38
"""Version byte of every address; makes them start with 'P' (Bitcoin: PUBKEY_ADDRESS)."""

ADDRESS_LENGTH = 34
PAYLOAD_LENGTH = 20
B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Base58 with Bitcoin's alphabet; each leading zero byte becomes a '1'."""
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(B58_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of `b58encode`; raises AddressError naming the first character not in Base58."""
    number = 0
    for position, char in enumerate(text, start=1):
        if char not in _B58_INDEX:
            hint = " (Base58 leaves out 0, O, I and l)" if char in "0OIl" else ""
            raise AddressError(f"character {char!r} at position {position} is not Base58{hint}")
        number = number * 58 + _B58_INDEX[char]
    pad = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * pad + body


def address_from_payload(payload: bytes) -> str:
    """Rule address-format: Base58Check(version || 20-byte payload)."""
    if len(payload) != PAYLOAD_LENGTH:
        raise ValueError("an address payload is 20 bytes")
    raw = bytes([ADDRESS_VERSION]) + payload
    return b58encode(raw + sha256d(raw)[:4])


def address_from_public_key(public_key: bytes) -> str:
    """Rule address-of-key: the address of a public key is over SHA-256(key)[:20]."""
    return address_from_payload(sha256(public_key)[:PAYLOAD_LENGTH])


def decode_address(address: object) -> bytes:
    """Rule `bad-address`: a well-formed address with a correct checksum; returns the payload."""
    if not isinstance(address, str):
        raise AddressError("an address must be a string")
    if address != address.strip():
        raise AddressError("an address must not have spaces around it")
    if len(address) != ADDRESS_LENGTH:
        raise AddressError(
            f"an address has {ADDRESS_LENGTH} characters, this one has {len(address)}"
        )
    raw = b58decode(address)
    if len(raw) != 1 + PAYLOAD_LENGTH + 4:
        raise AddressError("an address decodes to 25 bytes, this one does not")
    if raw[0] != ADDRESS_VERSION:
        raise AddressError(f"unknown address version {raw[0]:#04x} (pyBTC addresses start with P)")
    body, checksum = raw[:-4], raw[-4:]
    if sha256d(body)[:4] != checksum:
        raise AddressError("address checksum does not match: a character is mistyped")
    return body[1:]


def is_address(address: object) -> bool:
    """True when `decode_address` accepts `address`."""
    try:
        decode_address(address)
    except AddressError:
        return False
    return True


_P = 2**255 - 19
_SMALL_ORDER_Y = frozenset(
    {0, 1, _P - 1}
    | {
        int.from_bytes(bytes.fromhex(h), "little")
        for h in (  # the y of the two points of order 8 (libsodium's blocklist)
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        )
    }
)


def is_strong_public_key(public_key: bytes) -> bool:
    """Rule `bad-public-key`: 32 bytes, a canonical y (< p), and not a point of small order.

    OpenSSL accepts any 32 bytes as a key; a small-order key (the neutral point, say) verifies
    forged signatures for every message, and a non-canonical encoding is a second name for
    another key. Refusing both makes "valid signature" mean the same in every implementation
    that follows this rule (libsodium refuses the same keys).
    """
    if len(public_key) != 32:
        return False
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    return y < _P and y not in _SMALL_ORDER_Y


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Rule signature: an Ed25519 signature (RFC 8032) by a strong `public_key` over `message`."""
    if not is_strong_public_key(public_key) or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key: 32 secret bytes (the RFC 8032 seed)."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh random key from the operating system's generator."""
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(raw)

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        """A key from 64 hex digits."""
        return cls(bytes.fromhex(text))

    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key."""
        return (
            self._key()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    @property
    def address(self) -> str:
        """The address that receives coins for this key."""
        return address_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature over `message` (deterministic)."""
        return self._key().sign(message)

    def hex(self) -> str:
        """The secret as 64 hex digits (handle with care)."""
        return self.seed.hex()
