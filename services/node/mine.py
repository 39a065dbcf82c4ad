"""The tutorial's `GET /mine`, answered by this node's miner service over the bus.

The miner announces itself every couple of seconds (`mining` / `ready`). `GET /mine` publishes a
`mine` request with a fresh id; the miner mines one block on the current tip, submits it through
`/mining/submit` like any other, and answers `mined` with the block's hash, which completes the
request. With no miner heard from recently the answer is an immediate 503, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from services.common.bus import Bus, Kind
from services.common.web import ServiceError

logger = logging.getLogger(__name__)

READY_WITHIN = 6.0
"""A miner counts as present if it announced itself within this many seconds."""


class MineDesk:
    """Requests to this node's miner and their answers."""

    def __init__(self, node: str, bus: Bus | None) -> None:
        self.node = node
        self.bus = bus
        self.last_ready = -READY_WITHIN
        self.mode = ""
        self.waiters: dict[str, asyncio.Future[str]] = {}

    @property
    def miner_ready(self) -> bool:
        return time.monotonic() - self.last_ready < READY_WITHIN

    async def listen(self) -> None:
        assert self.bus is not None
        async with self.bus.subscribe(Kind.MINING) as subscription:
            async for envelope in subscription:
                data = envelope.data
                if data.get("node") != self.node:
                    continue
                if data.get("action") == "ready":
                    self.last_ready = time.monotonic()
                    self.mode = str(data.get("mode", ""))[:16]
                elif data.get("action") == "mined":
                    waiter = self.waiters.pop(str(data.get("request_id")), None)
                    block_hash = data.get("hash")
                    if waiter is not None and not waiter.done() and isinstance(block_hash, str):
                        waiter.set_result(block_hash)

    async def mine_one(self, seconds: float) -> str:
        """Ask the miner for one block; its hash once the ledger has accepted it."""
        if self.bus is None or not self.miner_ready:
            raise ServiceError(
                503,
                "no-miner",
                "no miner service of this node is running (start it with pybtc up, or "
                "python -m services.miner); nothing was mined",
            )
        request_id = uuid.uuid4().hex
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiters[request_id] = waiter
        try:
            sent = await self.bus.publish(
                Kind.MINING, {"action": "mine", "request_id": request_id, "node": self.node}
            )
            if sent is None:  # Redis is down: the request cannot reach the miner
                raise ServiceError(
                    503,
                    "no-miner",
                    "the bus to this node's miner is down (Redis); nothing was mined",
                )
            return await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            raise ServiceError(
                504, "mine-timeout", f"the miner found no block within {seconds:.0f}s"
            ) from None
        finally:
            self.waiters.pop(request_id, None)
