"""bench/chainbuild.py makes chains the protocol accepts (the benchmarks import them into real
nodes; a refused block would end a benchmark run, so check the builder here, cheaply)."""

from __future__ import annotations

from bench.chainbuild import ChainBuilder, bench_key
from pybtc import REGTEST, MemoryChain


def test_built_blocks_connect_with_their_transfers() -> None:
    chain = MemoryChain(REGTEST)
    builder = ChainBuilder(REGTEST.genesis.header, txs_per_block=3, recipients=4)
    for block in builder.blocks(6):
        result = chain.add_block(block, now=block.header.timestamp)
        assert result.is_tip, result
    assert chain.height == 7
    assert builder.nonce == 15  # five blocks of three transfers (the first block funds)
    assert chain.account(builder.funder.address).nonce == 15
    received = [chain.account(bench_key(i).address).balance for i in range(1, 5)]
    assert all(balance > 0 for balance in received)
    assert builder.tip == chain.tip.header
