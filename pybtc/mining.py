"""Making blocks: a block template over a parent, and the proof-of-work search for it.

The miner service does the same with worker processes over nonce ranges; these helpers are the
single-process form that tests, fixtures and the genesis blocks use.
"""

from __future__ import annotations

from collections.abc import Sequence

from pybtc.block import Block, BlockHeader, merkle_root
from pybtc.params import ChainParams
from pybtc.pow import bits_to_target, search_nonce
from pybtc.transaction import Transaction


def build_block(
    params: ChainParams,
    parent: BlockHeader,
    *,
    bits: int,
    transactions: Sequence[Transaction],
    miner_address: str,
    timestamp: int,
) -> Block:
    """An unmined block (nonce 0) on `parent`: coinbase (subsidy + fees), then `transactions`."""
    height = parent.index + 1
    reward = params.subsidy(height) + sum(tx.fee for tx in transactions)
    coinbase = Transaction.coinbase(miner_address, reward, height, timestamp)
    txs = (coinbase, *transactions)
    header = BlockHeader(
        index=height,
        timestamp=timestamp,
        previous_hash=parent.hash,
        merkle_root=merkle_root([tx.txid for tx in txs]),
        bits=bits,
        nonce=0,
    )
    return Block(header, txs)


def mine_block(block: Block, *, start: int = 0, max_tries: int = 2**64) -> Block | None:
    """`block` with the first nonce from `start` whose header hash meets its target, or None."""
    target = bits_to_target(block.header.bits)
    nonce = search_nonce(block.header.prefix_bytes(), target, start, max_tries)
    return None if nonce is None else block.with_nonce(nonce)
