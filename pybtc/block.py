"""Blocks, headers and the Merkle root.

Fields keep the tutorial's names (`index`, `timestamp`, `transactions`, `nonce`,
`previous_hash`; genesis has index 1) and add `merkle_root`, `bits` and `hash`. The header is
every field but `transactions` and `hash`, in a fixed 92-byte serialization with the nonce
last, so a miner can hash the first 84 bytes once and only the nonce per try:

    header = u64(index) u64(timestamp) previous_hash[32] merkle_root[32] u32(bits) u64(nonce)
    hash   = hex(sha256d(header))

The Merkle root commits to the transactions in order (docs/protocol.md §5):
leaf = sha256d(0x00 || txid), node = sha256d(0x01 || left || right), and an odd node at the
end of a level moves up unchanged. The prefixes keep a leaf from passing for a node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from pybtc.encoding import U32_MAX, U64_MAX, check_hex, check_keys, check_uint, sha256d, u32, u64
from pybtc.errors import BlockError, DecodeError, Reason
from pybtc.transaction import Transaction

HEADER_FIELDS = ("index", "timestamp", "previous_hash", "merkle_root", "bits", "nonce")
HEADER_SIZE = 92
NONCE_OFFSET = 84
ZERO_HASH = "00" * 32


@dataclass(frozen=True)
class BlockHeader:
    """What proof of work covers: position, time, parent, transactions (via Merkle), target."""

    index: int
    timestamp: int
    previous_hash: str
    merkle_root: str
    bits: int
    nonce: int

    def __post_init__(self) -> None:
        check_uint("index", self.index, U64_MAX)
        if self.index < 1:
            raise DecodeError(Reason.OUT_OF_RANGE, "index starts at 1 (the genesis block)")
        check_uint("timestamp", self.timestamp, U64_MAX)
        check_hex("previous_hash", self.previous_hash, 32)
        check_hex("merkle_root", self.merkle_root, 32)
        check_uint("bits", self.bits, U32_MAX)
        check_uint("nonce", self.nonce, U64_MAX)

    def prefix_bytes(self) -> bytes:
        """The first 84 header bytes: everything before the nonce."""
        return (
            u64(self.index)
            + u64(self.timestamp)
            + bytes.fromhex(self.previous_hash)
            + bytes.fromhex(self.merkle_root)
            + u32(self.bits)
        )

    def encode(self) -> bytes:
        """The 92 header bytes that are hashed."""
        return self.prefix_bytes() + u64(self.nonce)

    @cached_property
    def hash(self) -> str:
        """Hex of sha256d(header)."""
        return sha256d(self.encode()).hex()

    @property
    def height(self) -> int:
        """Bitcoin's word for the tutorial's `index`."""
        return self.index

    def to_dict(self) -> dict[str, Any]:
        """The headers-only JSON form (used for sync), with the hash."""
        return {name: getattr(self, name) for name in HEADER_FIELDS} | {"hash": self.hash}

    @classmethod
    def from_dict(cls, data: object) -> BlockHeader:
        """Parse the headers-only form strictly; a given `hash` must match."""
        if not isinstance(data, Mapping):
            raise DecodeError(Reason.BAD_TYPE, "a block header must be a JSON object")
        check_keys("block header", data, required=HEADER_FIELDS, optional=("hash",))
        header = cls(**{name: data[name] for name in HEADER_FIELDS})
        _check_given_hash(data, header.hash)
        return header


@dataclass(frozen=True)
class Block:
    """A header and the transactions its Merkle root commits to (coinbase first)."""

    header: BlockHeader
    transactions: tuple[Transaction, ...]

    @property
    def index(self) -> int:
        return self.header.index

    @property
    def hash(self) -> str:
        return self.header.hash

    @property
    def previous_hash(self) -> str:
        return self.header.previous_hash

    @property
    def timestamp(self) -> int:
        return self.header.timestamp

    def with_nonce(self, nonce: int) -> Block:
        """The same block with another header nonce."""
        return replace(self, header=replace(self.header, nonce=nonce))

    def to_dict(self) -> dict[str, Any]:
        """The tutorial's block JSON plus pyBTC's fields."""
        head = self.header
        return {
            "index": head.index,
            "timestamp": head.timestamp,
            "transactions": [tx.to_dict() for tx in self.transactions],
            "nonce": head.nonce,
            "previous_hash": head.previous_hash,
            "merkle_root": head.merkle_root,
            "bits": head.bits,
            "hash": head.hash,
        }

    @classmethod
    def from_dict(cls, data: object) -> Block:
        """Parse the JSON form strictly; a given `hash` must match the header's."""
        if not isinstance(data, Mapping):
            raise DecodeError(Reason.BAD_TYPE, "a block must be a JSON object")
        check_keys("block", data, required=(*HEADER_FIELDS, "transactions"), optional=("hash",))
        header = BlockHeader(**{name: data[name] for name in HEADER_FIELDS})
        raw_txs = data["transactions"]
        if not isinstance(raw_txs, list):
            raise DecodeError(Reason.BAD_TYPE, "transactions must be a JSON array")
        txs = tuple(Transaction.from_dict(item) for item in raw_txs)
        _check_given_hash(data, header.hash)
        return cls(header, txs)


def header_of_block(data: object) -> BlockHeader:
    """The header of a block's JSON form, decoded as `Block.from_dict` decodes it (the block's
    keys, the header's fields, a given `hash`) but leaving the transactions undecoded: a node
    checks the header before it spends anything on them (docs/protocol.md §7.7)."""
    if not isinstance(data, Mapping):
        raise DecodeError(Reason.BAD_TYPE, "a block must be a JSON object")
    check_keys("block", data, required=(*HEADER_FIELDS, "transactions"), optional=("hash",))
    header = BlockHeader(**{name: data[name] for name in HEADER_FIELDS})
    _check_given_hash(data, header.hash)
    return header


def _check_given_hash(data: Mapping[str, Any], computed: str) -> None:
    """Rule `bad-block-hash`: a `hash` sent along must be the hash of the header sent."""
    if "hash" in data and data["hash"] != computed:
        raise BlockError(Reason.BAD_BLOCK_HASH, "hash does not match the block header")


def merkle_root(txids: Sequence[str]) -> str:
    """Rule merkle-root: the root over `txids` in order (see the module docstring)."""
    if not txids:
        raise ValueError("a Merkle tree needs at least one transaction")
    level = [sha256d(b"\x00" + bytes.fromhex(txid)) for txid in txids]
    while len(level) > 1:
        paired = [sha256d(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()
