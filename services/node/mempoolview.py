"""The ledger's mempool in mining order, computed once per change of the pool.

`Ledger.mempool_view` builds one `MempoolView` from the pool's rows (no bodies parsed) with
`pybtc.mempool.mining_order` whenever the store's `mempool_version` moved, so `GET /mempool`,
`GET /mempool/blocks`, `GET /fees`, `GET /tx/{txid}` and the block template read the same order
without computing it again (the pool holds up to 5,000). The commonest change, a new
transaction (perhaps evicting a cheaper one nothing depends on), derives the next view from the
last (`admitted`) in one pass instead of a new merge: each 201 carries a position, so a flood of
transactions into a full pool would otherwise order 5,000 rows per request.
"""

from __future__ import annotations

from functools import cached_property

from pybtc.mempool import (
    BlockSummary,
    fee_to_reach,
    place_newest,
    projected_block,
    projected_blocks,
    summarize,
)
from services.node.store import MempoolEntry


class MempoolView:
    """The pool in mining order with each transaction's place, and the blocks it would fill.
    Never changed once made: a change of the pool makes a new one."""

    def __init__(
        self, ordered: list[MempoolEntry], capacity: int, placed: tuple[str, int] = ("", 0)
    ) -> None:
        self.ordered = ordered
        self.capacity = capacity
        self._placed = placed
        """The position of the one transaction `admitted` placed, known without `positions`."""

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each pending txid's position, 1 = mined first."""
        return {entry.txid: i + 1 for i, entry in enumerate(self.ordered)}

    @cached_property
    def blocks(self) -> list[list[MempoolEntry]]:
        """The projected next blocks, `capacity` transactions each."""
        return projected_blocks(self.ordered, self.capacity)

    @cached_property
    def summaries(self) -> list[BlockSummary]:
        return summarize(self.blocks)

    def position(self, txid: str) -> int | None:
        """1 = mined first; None: not pending."""
        if txid == self._placed[0]:
            return self._placed[1]
        return self.positions.get(txid)

    def block(self, txid: str) -> int | None:
        """The projected block (1 = the next) that takes `txid`; None: not pending."""
        position = self.position(txid)
        return None if position is None else projected_block(position, self.capacity)

    def fee_to_reach(self, within: int, minimum: int) -> int:
        """What a newcomer with nothing pending pays to be in the next `within` blocks."""
        return fee_to_reach(self.blocks, self.capacity, within, minimum)

    def admitted(self, entry: MempoolEntry, evicted: str | None) -> MempoolView:
        """The view after `entry` arrived (its sender's highest nonce, replacing nothing) and
        `evicted` (a transaction no other depends on) left: what `mining_order` would give."""
        ordered = self.ordered
        if evicted is not None:
            ordered = [e for e in ordered if e.txid != evicted]
        index = place_newest(ordered, entry)
        return MempoolView(
            [*ordered[:index], entry, *ordered[index:]], self.capacity, (entry.txid, index + 1)
        )
