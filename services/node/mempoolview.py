"""The ledger's mempool in mining order, computed once per change of the pool.

`Ledger.mempool_view` builds one `MempoolView` from the pool's rows (no bodies parsed) with
`pybtc.mempool.mining_order` whenever the store's `mempool_version` moved, so `GET /mempool`,
`GET /mempool/blocks`, `GET /fees`, `GET /tx/{txid}` and the block template read the same order
without computing it again (the pool holds up to 5,000).
"""

from __future__ import annotations

from functools import cached_property

from pybtc.mempool import (
    BlockSummary,
    fee_to_reach,
    projected_block,
    projected_blocks,
    summarize,
)
from services.node.store import MempoolEntry


class MempoolView:
    """The pool in mining order with each transaction's place, and the blocks it would fill."""

    def __init__(self, ordered: list[MempoolEntry], capacity: int) -> None:
        self.ordered = ordered
        self.capacity = capacity
        self.positions = {entry.txid: i + 1 for i, entry in enumerate(ordered)}

    @cached_property
    def blocks(self) -> list[list[MempoolEntry]]:
        """The projected next blocks, `capacity` transactions each."""
        return projected_blocks(self.ordered, self.capacity)

    @cached_property
    def summaries(self) -> list[BlockSummary]:
        return summarize(self.blocks)

    def position(self, txid: str) -> int | None:
        """1 = mined first; None: not pending."""
        return self.positions.get(txid)

    def block(self, txid: str) -> int | None:
        """The projected block (1 = the next) that takes `txid`; None: not pending."""
        position = self.positions.get(txid)
        return None if position is None else projected_block(position, self.capacity)

    def fee_to_reach(self, within: int, minimum: int) -> int:
        """What a newcomer with nothing pending pays to be in the next `within` blocks."""
        return fee_to_reach(self.blocks, self.capacity, within, minimum)
