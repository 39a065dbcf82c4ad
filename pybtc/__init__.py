"""pyBTC's protocol as a pure library: no aiohttp, no redis, no asyncio, no I/O.

Glossary (Bitcoin's words, the tutorial's field names):

- **address**: where coins go; Base58Check of a hash of an Ed25519 public key (`keys`).
- **unit**: the integer money unit; 1 pyBTC = 100,000,000 units (`encoding.COIN`).
- **transaction**: `sender -> recipient: amount` plus `fee` and `nonce`, signed (`transaction`).
- **coinbase**: a block's first transaction, sender "0", paying subsidy plus fees.
- **block / header**: `index` (height; genesis is 1), `timestamp`, `previous_hash`,
  `merkle_root`, `bits`, `nonce`; its `hash` is sha256d of the 92-byte header (`block`).
- **bits / target / work**: compact difficulty, the number a hash must not exceed, and the
  expected hashes to find a block (`pow`).
- **retarget**: the difficulty adjustment every `retarget_interval` blocks (`difficulty`).
- **params**: every consensus constant of a network, `devnet` or `regtest` (`params`).
- **validate_***: a rule check that returns or raises with a reason code (`validation`, `errors`).
- **connect / disconnect**: apply a block to account state or undo it exactly (`state`).
- **tip / reorg**: the best block by cumulative work, and switching to a better branch (`chain`).
- **mining order**: which pending transaction a block takes first: each sender's by nonce,
  then the highest fee (`mempool`).
"""

from pybtc.block import Block, BlockHeader, merkle_root
from pybtc.chain import AddResult, MemoryChain
from pybtc.encoding import COIN, MAX_MONEY, format_amount, parse_amount
from pybtc.errors import (
    AddressError,
    BlockError,
    ChainError,
    DecodeError,
    PyBTCError,
    Reason,
    TransactionError,
    ValidationError,
)
from pybtc.keys import PrivateKey, address_from_public_key, decode_address, is_address
from pybtc.mempool import mining_order, projected_blocks
from pybtc.params import DEVNET, NETWORKS, REGTEST, ChainParams, get_params
from pybtc.state import BlockUndo, connect_block, disconnect_block
from pybtc.transaction import Transaction
from pybtc.validation import Account

__all__ = [
    "COIN",
    "DEVNET",
    "MAX_MONEY",
    "NETWORKS",
    "REGTEST",
    "Account",
    "AddResult",
    "AddressError",
    "Block",
    "BlockError",
    "BlockHeader",
    "BlockUndo",
    "ChainError",
    "ChainParams",
    "DecodeError",
    "MemoryChain",
    "PrivateKey",
    "PyBTCError",
    "Reason",
    "Transaction",
    "TransactionError",
    "ValidationError",
    "address_from_public_key",
    "connect_block",
    "decode_address",
    "disconnect_block",
    "format_amount",
    "get_params",
    "is_address",
    "merkle_root",
    "mining_order",
    "parse_amount",
    "projected_blocks",
]
