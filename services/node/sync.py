"""Headers-first sync: learn a peer's chain by headers, then fetch only the blocks we lack.

1. Ask the peer's `/status`; if it claims no more work than our tip, stop.
2. Find the fork point: walk the peer's headers back from the lower of the two heights, a page
   at a time, until one of its blocks is one we know.
3. Fetch its headers from the fork point to its tip; check links and proof of work, and add up
   the work they really carry (a peer that claims more than its headers show is lying: invalid).
4. If that branch has more work than our tip, fetch the blocks we do not have, a page at a time,
   and hand each to the ledger, which validates it fully and reorganises when the branch wins.

Any invalid data from a peer stops the sync with it and is reported as `PeerError(invalid=True)`;
our chain stays whatever the valid blocks made it.

Syncs with different peers run side by side: no lock is held across a peer's I/O, so a slow
peer holds only its own sync. Each block is handed to the ledger as it arrives, and the ledger
checks it against the chain as it is at that moment (one synchronous SQLite transaction); a block
another sync brought in the meantime is skipped, or refused as a harmless duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pybtc import Block, BlockHeader, Reason, ValidationError
from pybtc.pow import block_work
from pybtc.validation import validate_header
from services.node.ledger import BlockResult, Ledger
from services.node.peer_client import BAD_BLOCK, BLOCKS_PAGE, HEADERS_PAGE, PeerClient, PeerError

logger = logging.getLogger(__name__)

MAX_SYNC_HEADERS = 200_000
FIRST_FORK_PAGE = 16
"""Headers asked for first when looking for the fork point; a block announcement is usually one
block past our tip, and a whole page (500 headers, each checked) cost a peer ~40 ms a block."""


@dataclass
class SyncResult:
    """What one sync with one peer did."""

    url: str
    peer_height: int = 0
    peer_tip: str = ""
    added: list[BlockResult] = field(default_factory=list)
    partial: bool = False
    """The deadline came first; the blocks added so far stay, and another round follows."""

    @property
    def tip_changed(self) -> bool:
        return any(r.tip_change is not None for r in self.added)

    @property
    def reorged(self) -> bool:
        return any(r.tip_change is not None and r.tip_change.is_reorg for r in self.added)


class Syncer:
    """Brings this ledger up to the most-work valid chain of its peers."""

    def __init__(
        self,
        ledger: Ledger,
        client: PeerClient,
        clock: Callable[[], float] = time.time,
        *,
        deadline: float = 15.0,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.clock = clock
        self.deadline = deadline

    async def sync_from(self, url: str) -> SyncResult:
        """Sync with one peer within `deadline` seconds.

        Blocks connected before the deadline stay; the next sync goes on from there, so a long
        catch-up takes several rounds while no peer can hold a sync for longer.
        """
        result = SyncResult(url)
        try:
            async with asyncio.timeout(self.deadline):
                await self._sync(url, result)
        except TimeoutError:
            if not result.added:  # no progress at all: this peer is too slow
                raise PeerError(
                    url, f"sync took longer than {self.deadline:.0f}s", reason="peer-timeout"
                ) from None
            result.partial = True
        return result

    async def _sync(self, url: str, result: SyncResult) -> None:
        ledger = self.ledger
        status = await self.client.status(url)
        result.peer_height, result.peer_tip = status.height, status.tip
        if status.chain_work <= ledger.chain_work() or status.tip == ledger.tip_hash:
            return
        fork = await self._fork_point(url, min(status.height, ledger.height))
        fork_meta = ledger.store.block_meta(fork.hash)
        assert fork_meta is not None
        headers = await self._headers_after(url, fork, status.height)
        work = fork_meta[1] + sum(block_work(h.bits) for h in headers)
        if work < status.chain_work:
            raise PeerError(url, "claims more work than its headers carry", invalid=True)
        if work <= ledger.chain_work():
            return
        missing = [h for h in headers if ledger.store.block_meta(h.hash) is None]
        logger.info(
            "sync peer=%s fork_height=%d headers=%d missing=%d",
            url,
            fork.index,
            len(headers),
            len(missing),
        )
        position = 0
        while position < len(missing):
            if ledger.store.block_meta(missing[position].hash) is not None:
                position += 1  # another sync brought it meanwhile
                continue
            start = missing[position].index
            page = await self.client.blocks(url, start, BLOCKS_PAGE)
            if not page:
                raise PeerError(url, f"has no block at height {start}", invalid=True)
            for block in page:
                if position >= len(missing) or block.index != missing[position].index:
                    continue
                if block.hash != missing[position].hash:
                    raise PeerError(url, "its blocks differ from its headers", invalid=True)
                added = self._submit(url, block)
                if added is not None:
                    result.added.append(added)
                position += 1

    def _submit(self, url: str, block: Block) -> BlockResult | None:
        """The block handed to the ledger; None if another sync brought it meanwhile (it was
        stored and announced then: not again)."""
        try:
            return self.ledger.submit_block(block, int(self.clock()), requested=True)
        except ValidationError as exc:
            if exc.reason is Reason.DUPLICATE_BLOCK:
                return None
            self.ledger.log_rejection(
                int(self.clock()), "block", block.hash, str(exc.reason), exc.message, url
            )
            raise PeerError(
                url, f"sent an invalid block: {exc}", invalid=True, reason=BAD_BLOCK
            ) from None

    async def _fork_point(self, url: str, height: int) -> BlockHeader:
        """The highest block of the peer's main chain that we know."""
        store = self.ledger.store
        top = height
        size = FIRST_FORK_PAGE  # usually the fork is at our tip: look there before a whole page
        while top >= 1:
            start = max(1, top - size + 1)
            for header in reversed(await self.client.headers(url, start, top - start + 1)):
                if store.block_meta(header.hash) is not None:
                    return header
            top = start - 1
            size = HEADERS_PAGE
        raise PeerError(url, "shares no block with us, not even genesis", invalid=True)

    async def _headers_after(
        self, url: str, fork: BlockHeader, peer_height: int
    ) -> list[BlockHeader]:
        """The peer's headers above `fork`, linked and with valid proof of work."""
        headers: list[BlockHeader] = []
        previous = fork
        while previous.index < peer_height:
            if len(headers) >= MAX_SYNC_HEADERS:
                raise PeerError(url, f"offers more than {MAX_SYNC_HEADERS} headers", invalid=True)
            wanted = min(HEADERS_PAGE, peer_height - previous.index)
            page = await self.client.headers(url, previous.index + 1, HEADERS_PAGE)
            if len(page) < wanted:
                raise PeerError(
                    url, f"claims height {peer_height} but sent a short page", invalid=True
                )
            for header in page:
                if header.previous_hash != previous.hash:
                    raise PeerError(url, f"broken link at height {header.index}", invalid=True)
                try:
                    validate_header(header, self.ledger.params)
                except ValidationError as exc:
                    raise PeerError(url, f"header {header.index}: {exc}", invalid=True) from None
                headers.append(header)
                previous = header
        return headers
