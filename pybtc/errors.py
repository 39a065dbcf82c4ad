"""One error tree for the protocol, and the reason codes that travel with every rejection.

Every rule in `pybtc` that can refuse something raises a `ValidationError` subclass whose
`reason` is one of the `Reason` codes below. The services turn these into HTTP answers
(`{"error": "...", "reason": "<code>"}`), log lines and explorer labels, so the code is part
of the protocol: docs/protocol.md lists each one, and a unit test triggers each one.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why something was rejected: short, stable, kebab-case codes."""

    # -- shape of the data (any object parsed from JSON) --------------------------------
    MISSING_FIELD = "missing-field"
    UNKNOWN_FIELD = "unknown-field"
    BAD_TYPE = "bad-type"
    BAD_HEX = "bad-hex"
    OUT_OF_RANGE = "out-of-range"
    # -- addresses -------------------------------------------------------------------------
    BAD_ADDRESS = "bad-address"
    # -- transaction, stateless -------------------------------------------------------------
    BAD_AMOUNT = "bad-amount"
    BAD_FEE = "bad-fee"
    BAD_PUBLIC_KEY = "bad-public-key"
    SENDER_KEY_MISMATCH = "sender-key-mismatch"
    BAD_SIGNATURE = "bad-signature"
    BAD_TXID = "bad-txid"
    COINBASE_OUTSIDE_BLOCK = "coinbase-outside-block"
    # -- transaction, against account state -------------------------------------------------
    BAD_NONCE = "bad-nonce"
    INSUFFICIENT_FUNDS = "insufficient-funds"
    # -- block, stateless -------------------------------------------------------------------
    BAD_BLOCK_HASH = "bad-block-hash"
    BAD_BITS = "bad-bits"
    BAD_POW = "bad-pow"
    BAD_MERKLE_ROOT = "bad-merkle-root"
    NO_TRANSACTIONS = "no-transactions"
    BAD_COINBASE = "bad-coinbase"
    MULTIPLE_COINBASE = "multiple-coinbase"
    DUPLICATE_TX = "duplicate-tx"
    BLOCK_TOO_LARGE = "block-too-large"
    # -- block, against its parent ----------------------------------------------------------
    BAD_GENESIS = "bad-genesis"
    BAD_PREV_HASH = "bad-prev-hash"
    BAD_INDEX = "bad-index"
    BAD_DIFFICULTY = "bad-difficulty"
    TIME_TOO_OLD = "time-too-old"
    TIME_TOO_NEW = "time-too-new"
    # -- block, against account state -------------------------------------------------------
    BAD_COINBASE_AMOUNT = "bad-coinbase-amount"
    # -- chain bookkeeping (pybtc.chain) ----------------------------------------------------
    UNKNOWN_PARENT = "unknown-parent"
    DUPLICATE_BLOCK = "duplicate-block"
    INVALID_ANCESTOR = "invalid-ancestor"


class PyBTCError(Exception):
    """Base of every error `pybtc` raises on purpose."""


class ValidationError(PyBTCError):
    """Something was checked against a rule and refused; `reason` says which rule."""

    reason: Reason

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = Reason(reason)
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.reason}]"

    def to_dict(self) -> dict[str, str]:
        """The JSON body every service answers with: `{"error", "reason"}`."""
        return {"error": self.message, "reason": str(self.reason)}


class DecodeError(ValidationError):
    """Input does not have the shape of the object it claims to be (types, fields, hex)."""


class AddressError(ValidationError):
    """A string is not a valid pyBTC address (bad characters, length, version or checksum)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.BAD_ADDRESS, message)


class TransactionError(ValidationError):
    """A transaction breaks a rule."""


class BlockError(ValidationError):
    """A block or block header breaks a rule."""


class ChainError(ValidationError):
    """A block cannot be placed in the block tree (unknown parent, known already, bad ancestor)."""
