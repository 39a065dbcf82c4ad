"""Announcements: what the ledger accepted, told to the rest of the node over the bus.

Every accepted transaction (`tx`), every stored block (`block`), every tip change (`tip`) and
every reorg (`reorg`) is published. The bus is a hint: a message carries ids and this ledger's
URL, and whoever needs more fetches it over HTTP; a lost message is made up by a resync.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from services.node.ledger import BlockResult, TxResult

logger = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], Awaitable[object]]


class Announcer:
    """Turns ledger results into bus messages; without a bus it only counts them."""

    def __init__(self, url: str, publish: Publish | None = None) -> None:
        self.url = url
        self.publish = publish
        self.sent = 0

    async def _send(self, kind: str, data: dict[str, Any]) -> None:
        self.sent += 1
        if self.publish is not None:
            await self.publish(kind, data | {"url": self.url})

    async def transaction(self, result: TxResult) -> None:
        tx = result.tx
        await self._send(
            "tx",
            {
                "txid": tx.txid,
                "tx": tx.to_dict(),
                "replaced": result.replaced,
                "evicted": result.evicted,
            },
        )

    async def block(self, result: BlockResult) -> None:
        block = result.block
        await self._send(
            "block",
            {
                "hash": block.hash,
                "height": block.index,
                "previous_hash": block.previous_hash,
                "is_tip": result.is_tip,
            },
        )
        change = result.tip_change
        if change is None:
            return
        await self._send(
            "tip",
            {"hash": change.new_tip, "height": change.height, "previous_tip": change.old_tip},
        )
        if change.is_reorg:
            await self._send(
                "reorg",
                {
                    "old_tip": change.old_tip,
                    "new_tip": change.new_tip,
                    "depth": len(change.disconnected),
                    "disconnected": [b.hash for b in change.disconnected],
                    "connected": [b.hash for b in change.connected],
                    "requeued": change.requeued,
                    "dropped": change.dropped,
                },
            )
