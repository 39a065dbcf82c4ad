"""Helpers that build real regtest chains for tests: deterministic keys, funded accounts.

Blocks are mined with the real proof of work at regtest difficulty (a couple of hashes each),
and validated by the real rules as they are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from pybtc import (
    COIN,
    REGTEST,
    Block,
    BlockHeader,
    ChainParams,
    MemoryChain,
    PrivateKey,
    Transaction,
)
from pybtc.block import merkle_root
from pybtc.encoding import sha256
from pybtc.mining import build_block, mine_block
from pybtc.pow import bits_to_target, hash_meets_target

NOW = REGTEST.genesis.timestamp + 10_000
"""The clock the tests validate against: a little after genesis, so fixtures never depend on
the machine's date."""


def test_key(n: int) -> PrivateKey:
    """The n-th deterministic test key (the same bytes on every machine)."""
    return PrivateKey(sha256(f"pybtc test key {n}".encode()))


test_key.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test to collect


@dataclass
class FundedChain:
    """A regtest chain whose first blocks paid `miner`; helpers to sign and mine on it."""

    chain: MemoryChain
    miner: PrivateKey
    others: list[PrivateKey] = field(default_factory=list)
    now: int = NOW

    @property
    def params(self) -> ChainParams:
        return self.chain.params

    def transfer(
        self,
        sender: PrivateKey,
        recipient: str,
        amount: int,
        *,
        fee: int = 1_000,
        nonce: int | None = None,
    ) -> Transaction:
        """A transaction signed by `sender`, with its next confirmed nonce unless given."""
        return Transaction.create(
            sender,
            recipient,
            amount,
            fee=fee,
            nonce=self.chain.account(sender.address).nonce if nonce is None else nonce,
            timestamp=self.chain.tip.timestamp,
            network_id=self.params.network_id,
        )

    def mine(self, transactions: list[Transaction] | tuple[Transaction, ...] = ()) -> Block:
        """Mine a block with `transactions` on the tip, add it, and return it."""
        block = self.chain.next_block(list(transactions), self.miner.address)
        self.chain.add_block(block, self.now)
        return block


def make_funded_chain(
    blocks: int = 3, params: ChainParams = REGTEST, others: int = 3
) -> FundedChain:
    """Genesis plus `blocks` blocks mined to test key 0 (each paying it 50 pyBTC at regtest)."""
    funded = FundedChain(
        MemoryChain(params), test_key(0), [test_key(i) for i in range(1, 1 + others)]
    )
    for _ in range(blocks):
        funded.mine()
    assert funded.chain.account(funded.miner.address).balance == blocks * params.subsidy(2)
    assert params.subsidy(2) == 50 * COIN or params is not REGTEST
    return funded


def remine(block: Block, txs: Sequence[Transaction] | None = None, **header: Any) -> Block:
    """`block` with other transactions and/or header fields, its Merkle root and PoW redone."""
    txs = block.transactions if txs is None else tuple(txs)
    fields = {"merkle_root": merkle_root([tx.txid for tx in txs]), **header, "nonce": 0}
    mined = mine_block(Block(replace(block.header, **fields), tuple(txs)))
    assert mined is not None
    return mined


def child_block(
    parent: BlockHeader,
    transactions: Sequence[Transaction] = (),
    *,
    miner: str | None = None,
    params: ChainParams = REGTEST,
) -> Block:
    """A mined block on `parent` (any branch): its parent's bits, a second later, coinbase of
    subsidy plus fees to `miner` (test key 9 by default). Regtest never retargets."""
    block = build_block(
        params,
        parent,
        bits=parent.bits,
        transactions=list(transactions),
        miner_address=miner or test_key(9).address,
        timestamp=parent.timestamp + 1,
    )
    mined = mine_block(block)
    assert mined is not None
    return mined


def branch(parent: BlockHeader, count: int, *, miner: str | None = None) -> list[Block]:
    """`count` empty blocks in a row on `parent`: a competing branch."""
    blocks: list[Block] = []
    for _ in range(count):
        blocks.append(child_block(parent, miner=miner))
        parent = blocks[-1].header
    return blocks


def bad_pow(block: Block) -> Block:
    """The block with a nonce whose header hash misses the target (everything else valid)."""
    target = bits_to_target(block.header.bits)
    nonce = 0
    while hash_meets_target(bytes.fromhex(block.with_nonce(nonce).hash), target):
        nonce += 1
    return block.with_nonce(nonce)


@cache
def unfunded_transfers(count: int = 1_999) -> tuple[Transaction, ...]:
    """`count` validly signed transfers to test key 0 whose senders (50 keys, nonces in order)
    own nothing: what makes a block expensive to refuse (issue 16's big block)."""
    keys = [test_key(100 + i) for i in range(50)]
    return tuple(
        Transaction.create(
            keys[i % 50],
            test_key(0).address,
            COIN,
            fee=1_000,
            nonce=i // 50,
            timestamp=0,
            network_id=REGTEST.network_id,
        )
        for i in range(count)
    )


def block_at(
    parent: BlockHeader, transactions: Sequence[Transaction], *, index: int, miner: str
) -> Block:
    """A mined block on `parent` claiming height `index` (its coinbase numbered for that
    height, so that the height is all that is wrong when it is not parent + 1)."""
    block = build_block(
        REGTEST,
        replace(parent, index=index - 1),
        bits=parent.bits,
        transactions=list(transactions),
        miner_address=miner,
        timestamp=parent.timestamp + 1,
    )
    mined = mine_block(Block(replace(block.header, previous_hash=parent.hash), block.transactions))
    assert mined is not None
    return mined
