"""Transactions: the tutorial's `sender -> recipient: amount`, signed and numbered.

Fields keep the tutorial's names (`sender`, `recipient`, `amount`, `timestamp`) and add `fee`,
`nonce` (the sender's count of confirmed transactions before this one), `public_key`,
`signature` and `txid`. A coinbase has `sender` "0" (the tutorial's marker for mining rewards),
`nonce` equal to its block's height, and no key or signature.

Bytes (docs/protocol.md §4):

    body      = var_str(sender) var_str(recipient) u64(amount) u64(fee) u64(nonce)
                u64(timestamp) var_bytes(public_key)
    message   = var_str(network_id) body              -- what Ed25519 signs
    encoded   = body var_bytes(signature)             -- the signed transaction
    txid      = hex(sha256d(encoded))

The network id is signed but not sent, so a transaction signed for one network fails its
signature check on every other (no cross-network replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from pybtc.encoding import (
    MAX_MONEY,
    U64_MAX,
    check_hex,
    check_keys,
    check_uint,
    is_int,
    sha256d,
    u64,
    var_bytes,
    var_str,
)
from pybtc.errors import AddressError, DecodeError, Reason, TransactionError
from pybtc.keys import PrivateKey, decode_address

COINBASE_SENDER = "0"
"""The tutorial's sender for a mining reward; never a valid address (Base58 has no '0')."""

TX_FIELDS = (
    "sender",
    "recipient",
    "amount",
    "fee",
    "nonce",
    "timestamp",
    "public_key",
    "signature",
)


@dataclass(frozen=True)
class Transaction:
    """A transfer of `amount` base units from `sender` to `recipient`, paying `fee` to the miner.

    Constructing one checks every field on its own (types, ranges, address checksums, hex);
    `pybtc.validation` checks what needs more than one field: keys, signature, coinbase shape.
    """

    sender: str
    recipient: str
    amount: int
    fee: int
    nonce: int
    timestamp: int
    public_key: str = ""
    signature: str = ""

    def __post_init__(self) -> None:
        if self.sender != COINBASE_SENDER:
            _field_address("sender", self.sender)
        _field_address("recipient", self.recipient)
        _money("amount", self.amount, Reason.BAD_AMOUNT)
        _money("fee", self.fee, Reason.BAD_FEE)
        check_uint("nonce", self.nonce, U64_MAX)
        check_uint("timestamp", self.timestamp, U64_MAX)
        if self.public_key:
            check_hex("public_key", self.public_key, 32)
        if self.signature:
            check_hex("signature", self.signature, 64)
        if not isinstance(self.public_key, str) or not isinstance(self.signature, str):
            raise DecodeError(Reason.BAD_TYPE, "public_key and signature must be hex strings")

    # -- identity ---------------------------------------------------------------------------
    @property
    def is_coinbase(self) -> bool:
        """A coinbase is a transaction whose sender is the tutorial's "0"."""
        return self.sender == COINBASE_SENDER

    def body_bytes(self) -> bytes:
        """The fields every signature and txid commit to, in their fixed order."""
        return (
            var_str(self.sender)
            + var_str(self.recipient)
            + u64(self.amount)
            + u64(self.fee)
            + u64(self.nonce)
            + u64(self.timestamp)
            + var_bytes(bytes.fromhex(self.public_key))
        )

    def signing_message(self, network_id: str) -> bytes:
        """What the sender signs: the network id, then the body."""
        return var_str(network_id) + self.body_bytes()

    def encode(self) -> bytes:
        """The signed transaction as bytes (body, then the signature)."""
        return self.body_bytes() + var_bytes(bytes.fromhex(self.signature))

    @cached_property
    def txid(self) -> str:
        """Hex of sha256d(encoded transaction)."""
        return sha256d(self.encode()).hex()

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the tutorial's field names plus pyBTC's, and the txid."""
        return {name: getattr(self, name) for name in TX_FIELDS} | {"txid": self.txid}

    @classmethod
    def from_dict(cls, data: object) -> Transaction:
        """Parse the JSON form strictly; a given `txid` must match the computed one."""
        if not isinstance(data, Mapping):
            raise DecodeError(Reason.BAD_TYPE, "a transaction must be a JSON object")
        check_keys("transaction", data, required=TX_FIELDS, optional=("txid",))
        tx = cls(**{name: data[name] for name in TX_FIELDS})
        if "txid" in data and data["txid"] != tx.txid:
            raise TransactionError(Reason.BAD_TXID, "txid does not match the transaction's hash")
        return tx

    # -- making them -----------------------------------------------------------------------
    @classmethod
    def coinbase(cls, recipient: str, amount: int, height: int, timestamp: int) -> Transaction:
        """The mining reward of the block at `height`: subsidy plus fees to `recipient`."""
        return cls(COINBASE_SENDER, recipient, amount, 0, height, timestamp)

    @classmethod
    def create(
        cls,
        key: PrivateKey,
        recipient: str,
        amount: int,
        *,
        fee: int,
        nonce: int,
        timestamp: int,
        network_id: str,
    ) -> Transaction:
        """A transaction from `key`'s address, signed for `network_id`."""
        unsigned = cls(key.address, recipient, amount, fee, nonce, timestamp, key.public_key.hex())
        signature = key.sign(unsigned.signing_message(network_id))
        return replace(unsigned, signature=signature.hex())


def _field_address(name: str, value: object) -> None:
    """Rule `bad-address` for one field, naming the field in the message."""
    try:
        decode_address(value)
    except AddressError as exc:
        raise AddressError(f"{name}: {exc.message}") from None


def _money(name: str, value: object, reason: Reason) -> None:
    """Rule `bad-type` / `bad-amount` / `bad-fee`: an integer number of units in [0, MAX_MONEY]."""
    if not is_int(value):
        raise DecodeError(
            Reason.BAD_TYPE,
            f"{name} must be an integer number of base units, not {type(value).__name__}",
        )
    assert isinstance(value, int)
    if not 0 <= value <= MAX_MONEY:
        raise TransactionError(reason, f"{name} must be between 0 and {MAX_MONEY} base units")
