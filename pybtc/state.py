"""Account state: applying a block to balances and nonces, and undoing it exactly.

`connect_block` applies a block's transactions in order: each one must carry its sender's next
nonce and be covered by its sender's balance at that point; then the coinbase, which must be
exactly the subsidy plus the block's fees, is credited (so a block cannot spend its own reward).
It reads accounts through a lookup function, so the same rules run over a dict in memory or
over the ledger's SQLite tables, and it returns two things: the new value of every account the
block touched, and a `BlockUndo` holding their values before. Writing the first connects the
block; writing the undo's values disconnects it, restoring the state exactly (a reorg).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pybtc.block import Block
from pybtc.encoding import MAX_MONEY, U64_MAX, check_hex, check_keys, check_uint
from pybtc.errors import BlockError, DecodeError, Reason
from pybtc.keys import decode_address
from pybtc.params import ChainParams
from pybtc.validation import Account, validate_transaction_state

AccountLookup = Callable[[str], Account]
"""Returns the account of an address in the state being extended; Account() if unknown."""


@dataclass(frozen=True)
class BlockUndo:
    """What disconnecting a block writes back: every touched account's value before it."""

    block_hash: str
    previous: Mapping[str, Account]

    def to_dict(self) -> dict[str, Any]:
        """JSON form, for storing beside the block."""
        return {
            "block_hash": self.block_hash,
            "previous": {
                address: {"balance": acct.balance, "nonce": acct.nonce}
                for address, acct in sorted(self.previous.items())
            },
        }

    @classmethod
    def from_dict(cls, data: object) -> BlockUndo:
        """Parse the stored JSON form strictly."""
        if not isinstance(data, Mapping):
            raise DecodeError(Reason.BAD_TYPE, "undo data must be a JSON object")
        check_keys("undo data", data, required=("block_hash", "previous"))
        previous_raw = data["previous"]
        if not isinstance(previous_raw, Mapping):
            raise DecodeError(Reason.BAD_TYPE, "undo previous must be a JSON object")
        previous: dict[str, Account] = {}
        for address, acct in previous_raw.items():
            decode_address(address)
            if not isinstance(acct, Mapping):
                raise DecodeError(Reason.BAD_TYPE, "an undo account must be a JSON object")
            check_keys("undo account", acct, required=("balance", "nonce"))
            previous[address] = Account(
                check_uint("balance", acct["balance"], MAX_MONEY),
                check_uint("nonce", acct["nonce"], U64_MAX),
            )
        return cls(check_hex("block_hash", data["block_hash"], 32), previous)


def connect_block(
    block: Block, get_account: AccountLookup, params: ChainParams
) -> tuple[dict[str, Account], BlockUndo]:
    """Rules `bad-nonce` / `insufficient-funds` / `bad-coinbase-amount`: apply `block`.

    The block must already have passed `validate_block`. Nothing is written: the caller gets
    the accounts to write and the undo record to keep, and writes both in one transaction.
    """
    changed: dict[str, Account] = {}

    def current(address: str) -> Account:
        return changed[address] if address in changed else get_account(address)

    coinbase, *transfers = block.transactions
    fees = 0
    for tx in transfers:
        sender = current(tx.sender)
        validate_transaction_state(tx, sender)
        changed[tx.sender] = Account(sender.balance - tx.amount - tx.fee, sender.nonce + 1)
        recipient = current(tx.recipient)
        changed[tx.recipient] = Account(recipient.balance + tx.amount, recipient.nonce)
        fees += tx.fee
    reward = params.subsidy(block.index) + fees
    if coinbase.amount != reward:
        raise BlockError(
            Reason.BAD_COINBASE_AMOUNT,
            f"coinbase pays {coinbase.amount}, subsidy plus fees is {reward}",
        )
    miner = current(coinbase.recipient)
    changed[coinbase.recipient] = Account(miner.balance + coinbase.amount, miner.nonce)
    undo = BlockUndo(block.hash, {address: get_account(address) for address in changed})
    return changed, undo


def disconnect_block(undo: BlockUndo) -> dict[str, Account]:
    """The accounts to write back to undo a block: exactly their values before it."""
    return dict(undo.previous)
