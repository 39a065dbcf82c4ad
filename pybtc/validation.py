"""Validation: each consensus rule a named check that returns or raises with a reason code.

Four levels, cheapest first (docs/protocol.md §7):

- `validate_transaction`: a loose (not yet mined) transaction on its own: signed, by the key
  its sender names, for this network, with sane amounts.
- `validate_transaction_state`: the same against the sender's account: the next nonce, enough
  balance for amount + fee.
- `validate_block`: a block on its own: size, proof of work, Merkle root, one coinbase first,
  no duplicate transactions, and every transaction's stateless rules; in parts
  (`check_transaction_count`, `validate_header`, `validate_block_body`) so that a node can run
  the cheap ones, and the rules against the parent, before the costly body (§7.7).
- `validate_block_context`: a header against its parent and ancestors: height, link,
  difficulty, median-time-past, future time.

The account-state rules of a whole block (nonces, balances, coinbase amount) run while the block
is applied: `pybtc.state.connect_block`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybtc.block import Block, BlockHeader, merkle_root
from pybtc.difficulty import Ancestor, ancestor_timestamps, median_time_past, next_bits
from pybtc.encoding import MAX_MONEY
from pybtc.errors import BlockError, Reason, TransactionError
from pybtc.keys import address_from_public_key, is_strong_public_key, verify_signature
from pybtc.params import ChainParams
from pybtc.pow import bits_to_target, hash_meets_target
from pybtc.transaction import Transaction


@dataclass(frozen=True)
class Account:
    """An address's state: its balance in base units and its count of sent transactions."""

    balance: int = 0
    nonce: int = 0


# -- transactions ---------------------------------------------------------------------------


def validate_transaction(tx: Transaction, params: ChainParams) -> None:
    """Stateless rules of a signed (non-coinbase) transaction."""
    if tx.is_coinbase:
        raise TransactionError(
            Reason.COINBASE_OUTSIDE_BLOCK, 'a coinbase (sender "0") is made only by a block'
        )
    check_amounts(tx)
    check_public_key(tx)
    check_signature(tx, params)


def check_amounts(tx: Transaction) -> None:
    """Rules `bad-amount` / `bad-fee`: a positive amount, and amount + fee within MAX_MONEY."""
    if tx.amount == 0:
        raise TransactionError(Reason.BAD_AMOUNT, "amount must be at least 1 base unit")
    if tx.amount + tx.fee > MAX_MONEY:
        raise TransactionError(Reason.BAD_FEE, "amount plus fee exceeds the money supply")


def check_public_key(tx: Transaction) -> None:
    """Rules `bad-public-key` / `sender-key-mismatch`: a strong key, and it is the sender's."""
    key = bytes.fromhex(tx.public_key)
    if not is_strong_public_key(key):
        raise TransactionError(
            Reason.BAD_PUBLIC_KEY,
            "public_key is missing, not canonical, or a small-order point",
        )
    if address_from_public_key(key) != tx.sender:
        raise TransactionError(
            Reason.SENDER_KEY_MISMATCH, "sender is not the address of public_key"
        )


def check_signature(tx: Transaction, params: ChainParams) -> None:
    """Rule `bad-signature`: Ed25519 over the network id and the body, by public_key."""
    message = tx.signing_message(params.network_id)
    if not verify_signature(bytes.fromhex(tx.public_key), bytes.fromhex(tx.signature), message):
        raise TransactionError(
            Reason.BAD_SIGNATURE, f"signature does not verify for network {params.network_id}"
        )


def validate_transaction_state(tx: Transaction, account: Account) -> None:
    """Rules `bad-nonce` / `insufficient-funds` against the sender's account."""
    if tx.nonce != account.nonce:
        raise TransactionError(
            Reason.BAD_NONCE, f"nonce {tx.nonce} is not the sender's next nonce {account.nonce}"
        )
    if account.balance < tx.amount + tx.fee:
        raise TransactionError(
            Reason.INSUFFICIENT_FUNDS,
            f"amount + fee is {tx.amount + tx.fee} but the balance is {account.balance}",
        )


def validate_coinbase(tx: Transaction, height: int) -> None:
    """Rule `bad-coinbase`: the first transaction is a coinbase numbered by its block's height."""
    if not tx.is_coinbase:
        raise BlockError(Reason.BAD_COINBASE, "the first transaction must be the coinbase")
    if tx.fee != 0 or tx.public_key or tx.signature:
        raise BlockError(Reason.BAD_COINBASE, "a coinbase has no fee, key or signature")
    if tx.nonce != height:
        raise BlockError(Reason.BAD_COINBASE, f"the coinbase's nonce must be the height {height}")


# -- blocks ---------------------------------------------------------------------------------


def validate_header(header: BlockHeader, params: ChainParams) -> None:
    """Rules `bad-bits` / `bad-pow`: a canonical target within the limit, met by the hash."""
    target = bits_to_target(header.bits)
    if target > params.pow_limit:
        raise BlockError(Reason.BAD_BITS, "bits is easier than this network's pow limit")
    if not hash_meets_target(bytes.fromhex(header.hash), target):
        raise BlockError(Reason.BAD_POW, "the header hash does not meet its target")


def validate_block(block: Block, params: ChainParams) -> None:
    """Stateless rules of a whole block, in the order of docs/protocol.md §7.4."""
    check_transaction_count(len(block.transactions), params)
    validate_header(block.header, params)
    validate_block_body(block, params)


def check_transaction_count(count: int, params: ChainParams) -> None:
    """Rules `no-transactions` / `block-too-large` (§7.4 steps 1–2): told by the count alone, so
    a node can apply them before it decodes a single transaction."""
    if not count:
        raise BlockError(Reason.NO_TRANSACTIONS, "a block holds at least its coinbase")
    if count > params.max_block_transactions:
        raise BlockError(
            Reason.BLOCK_TOO_LARGE, f"more than {params.max_block_transactions} transactions"
        )


def validate_block_body(block: Block, params: ChainParams) -> None:
    """§7.4 steps 5–8: the transactions against the header's Merkle root, then each on its own.
    The costly part of a block (a signature per transaction), so it runs last (§7.7)."""
    txs = block.transactions
    txids = [tx.txid for tx in txs]
    if merkle_root(txids) != block.header.merkle_root:
        raise BlockError(Reason.BAD_MERKLE_ROOT, "merkle_root does not match the transactions")
    if len(set(txids)) != len(txids):
        raise BlockError(Reason.DUPLICATE_TX, "a transaction appears twice in the block")
    validate_coinbase(txs[0], block.index)
    for tx in txs[1:]:
        if tx.is_coinbase:
            raise BlockError(Reason.MULTIPLE_COINBASE, "only the first transaction is a coinbase")
        validate_transaction(tx, params)


def validate_genesis(block: Block | BlockHeader, params: ChainParams) -> None:
    """Rule `bad-genesis`: block 1 is this network's fixed genesis, nothing else."""
    if block.hash != params.genesis.hash:
        raise BlockError(Reason.BAD_GENESIS, f"not the {params.name} genesis block")


def validate_block_context(
    header: BlockHeader,
    parent: BlockHeader,
    ancestor: Ancestor,
    params: ChainParams,
    now: int,
) -> None:
    """Rules of a header against its parent: index, link, difficulty, time."""
    if header.index != parent.index + 1:
        raise BlockError(Reason.BAD_INDEX, f"index must be {parent.index + 1} after its parent")
    if header.previous_hash != parent.hash:
        raise BlockError(Reason.BAD_PREV_HASH, "previous_hash is not the parent's hash")
    expected = next_bits(parent, ancestor, params)
    if header.bits != expected:
        raise BlockError(
            Reason.BAD_DIFFICULTY, f"bits is {header.bits:#010x}, the rules say {expected:#010x}"
        )
    mtp = median_time_past(ancestor_timestamps(parent, ancestor, params))
    if header.timestamp <= mtp:
        raise BlockError(Reason.TIME_TOO_OLD, f"timestamp must be after the median time past {mtp}")
    if header.timestamp > now + params.max_future_block_time:
        raise BlockError(
            Reason.TIME_TOO_NEW,
            f"timestamp is more than {params.max_future_block_time}s ahead of this node's clock",
        )
