"""The benchmarks' chain: built once per run, imported through a node's real API, snapshotted.

A whole pyBTC node (`pybtc up --network regtest`) takes regtest blocks of five signed transfers
each (bench/chainbuild.py) through `POST /mining/submit`, validating and storing every one as it
would a miner's. At each height the run asks for, the ledger's SQLite file is copied with
SQLite's online backup (a consistent copy while the node runs), and the builder's state is kept,
so that later benchmarks start nodes on that exact chain and extend it with valid blocks.
The node stays up between heights, so benchmarks that read (balance, chain download, explorer)
run against it at each height.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.chainbuild import ChainBuilder, Ledger, bench_key, import_blocks
from bench.common import drain, say
from pybtc import REGTEST, BlockHeader
from tests.upnode import UpNode

TXS_PER_BLOCK = 5
SETTLE = 3.0
"""Seconds the node is left alone after an import, so that its miner and explorer have caught up
with the announcements before anything is timed."""
TX_KEY = bench_key(500)
"""Funded in the chain's second block; the transaction-propagation benchmark spends from it."""


@dataclass
class Snapshot:
    height: int
    path: Path
    tip: BlockHeader
    nonce: int

    def builder(self) -> ChainBuilder:
        """A builder that extends this snapshot's chain with valid blocks."""
        builder = ChainBuilder(self.tip, txs_per_block=TXS_PER_BLOCK)
        builder.nonce, builder.funded = self.nonce, True
        return builder


def build(
    work: Path, heights: list[int], at_height: Callable[[int, UpNode, ChainBuilder], None]
) -> dict[int, Snapshot]:
    """Import up to each of `heights` (blocks, genesis included), snapshot, call `at_height`."""
    node = UpNode(work / "import-node")
    snapshots: dict[int, Snapshot] = {}
    try:
        node.wait_ready()
        drain(node.proc, node.lines)
        ledger = Ledger(node.url)
        builder = ChainBuilder(
            ledger.tip(), txs_per_block=TXS_PER_BLOCK, fund={TX_KEY.address: 10**8}
        )
        ledger.close()
        height = 1
        for target in sorted(heights):
            say(f"chain: importing blocks {height + 1:,}..{target:,}")
            import_blocks(node.url, target - height, builder)
            height = target
            time.sleep(SETTLE)
            path = work / f"snapshot-{target}.sqlite3"
            source = sqlite3.connect(node_db(node))
            copy = sqlite3.connect(path)
            with copy:
                source.backup(copy)
            source.close()
            copy.close()
            snapshots[target] = Snapshot(target, path, builder.tip, builder.nonce)
            at_height(target, node, builder)
    finally:
        node.stop()
    return snapshots


def node_db(node: UpNode) -> Path:
    return node.data_dir / f"ledger-{REGTEST.name}.sqlite3"
