"""Shared inputs of the vector generators: the fixed keys and times, and small formatters.

Keys come from seeds sha256(b"pybtc vector key <n>"); times are offsets from the genesis time.
Nothing here reads a clock or a random source, so the vectors are the same on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pybtc import PrivateKey
from pybtc.encoding import sha256
from pybtc.errors import ValidationError
from pybtc.params import GENESIS_TIME, NETWORKS

VECTOR_DIR = Path(__file__).resolve().parent
T0 = GENESIS_TIME
NETWORK_IDS = tuple(sorted(params.network_id for params in NETWORKS.values()))
ED25519_L = 2**252 + 27742317777372353535851937790883648493
"""The order of the Ed25519 base point: a signature's S must be below it (RFC 8032 §5.1.7)."""
ED25519_P = 2**255 - 19
"""The field prime: a public key's y (little-endian, sign bit cleared) must be below it."""


def seed(n: int) -> bytes:
    """The secret of vector key `n`: sha256(b"pybtc vector key <n>")."""
    return sha256(f"pybtc vector key {n}".encode())


KEYS = {n: PrivateKey(seed(n)) for n in (1, 2, 3)}


def plain_rfc8032_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """OpenSSL's Ed25519 verification alone, without pyBTC's strong-key rule.

    This is what `pybtc.keys.verify_signature` did before the rule: it shows which forgeries
    the rule is there to refuse.
    """
    if len(public_key) != 32:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def bits_hex(bits: int) -> str:
    """A compact target the way Bitcoin prints it: 0x1d00ffff."""
    return f"{bits:#010x}"


def target_hex(target: int) -> str:
    """A target as 64 hex digits, comparable with a block hash."""
    return f"{target:064x}"


def rejection(action: Callable[[], object]) -> dict[str, Any]:
    """The reason code and message of the ValidationError `action` raises (it must raise)."""
    try:
        action()
    except ValidationError as exc:
        return {"reason": str(exc.reason), "message": exc.message}
    raise AssertionError("expected a ValidationError")
