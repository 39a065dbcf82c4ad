"""Proof of work: compact `bits`, targets, work, and the nonce search.

A header's hash, read as a 256-bit big-endian integer, must be at most the target that its
`bits` field encodes. `bits` is Bitcoin's compact form: one exponent byte and a three-byte
mantissa, target = mantissa * 256**(exponent - 3). Only the canonical encoding of a target is
accepted (the one `target_to_bits` produces), so one target has exactly one `bits`.

The work of a block is the expected number of hashes to find it: 2**256 // (target + 1)
(Bitcoin Core: GetBlockProof). The best chain is the one with the most cumulative work.
"""

from __future__ import annotations

import hashlib
import struct

from pybtc.errors import BlockError, Reason

_pack_nonce = struct.Struct(">Q").pack


def bits_to_target(bits: int) -> int:
    """Rule `bad-bits`: decode a canonical, positive compact target."""
    if not 0 <= bits <= 0xFFFFFFFF:
        raise BlockError(Reason.BAD_BITS, "bits must be a 32-bit unsigned integer")
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    if bits & 0x00800000:
        raise BlockError(Reason.BAD_BITS, "bits encodes a negative target")
    if mantissa == 0:
        raise BlockError(Reason.BAD_BITS, "bits encodes a zero target")
    if exponent <= 3:
        target = mantissa >> (8 * (3 - exponent))
    else:
        target = mantissa << (8 * (exponent - 3))
    if target >= 2**256:
        raise BlockError(Reason.BAD_BITS, "bits encodes a target of more than 256 bits")
    if target == 0 or target_to_bits(target) != bits:
        raise BlockError(Reason.BAD_BITS, "bits is not the canonical encoding of its target")
    return target


def target_to_bits(target: int) -> int:
    """Encode a target in [1, 2**256) compactly, rounding down to 3 significant bytes."""
    if not 0 < target < 2**256:
        raise ValueError("a target is between 1 and 2**256 - 1")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:  # the top mantissa bit would read as a sign: shift one byte
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def round_target(target: int) -> int:
    """The target that `bits` can actually carry: `target` rounded down to compact precision."""
    return bits_to_target(target_to_bits(target))


def block_work(bits: int) -> int:
    """Expected hashes to meet `bits`: 2**256 // (target + 1)."""
    return 2**256 // (bits_to_target(bits) + 1)


def hash_meets_target(block_hash: bytes, target: int) -> bool:
    """The PoW rule: the hash as a big-endian integer is at most the target."""
    return int.from_bytes(block_hash, "big") <= target


def search_nonce(prefix: bytes, target: int, start: int, count: int) -> int | None:
    """Try nonces start..start+count-1 after the fixed header `prefix`; return the first hit.

    The SHA-256 state of `prefix` is computed once (the midstate) and copied for each try, so a
    try hashes only the 8 nonce bytes plus the outer SHA-256. Pure CPU work: the miner's worker
    processes call this on nonce ranges.
    """
    midstate = hashlib.sha256(prefix)
    sha256 = hashlib.sha256
    from_bytes = int.from_bytes
    for nonce in range(start, min(start + count, 2**64)):
        inner = midstate.copy()
        inner.update(_pack_nonce(nonce))
        if from_bytes(sha256(inner.digest()).digest(), "big") <= target:
            return nonce
    return None
