"""The tutorial's `GET /mine`, answered by this node's own miner service, asked over HTTP.

The ledger asks its miner directly (`POST <PYBTC_MINER_URL>/mine`, with the operator token when
one is set) and the miner answers once the ledger has accepted the block it mined for the
request. The bus plays no part: a message on it is a hint and never by itself makes a service
act on state (DESIGN.md §6), so neither a forged `mine` request nor a forged `mined` answer can
mine a block or complete a request.

The miner's answer is not trusted either: it names a block hash, and the request completes only
if this ledger has that block connected on its main chain above the tip it had when the request
started. An answer that does not check out is logged and the miner is asked again until the
deadline. No miner listening is an immediate 503 `no-miner`; no block in time is a 504
`mine-timeout`; nothing the miner sends makes a 5xx of another kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import aiohttp

from pybtc import Block
from services.common.settings import Settings
from services.common.web import ServiceError
from services.node.ledger import Ledger

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
"""Seconds to reach the miner: a miner that is not running is refused at once."""
MAX_ANSWER_BYTES = 4096
"""The most of the miner's answer read (it is a hash and a height)."""
HASH = re.compile(r"[0-9a-f]{64}")


def no_miner(detail: str) -> ServiceError:
    return ServiceError(
        503,
        "no-miner",
        f"no miner service of this node answered ({detail}); start it with pybtc up, or "
        "python -m services.miner, and check PYBTC_MINER_URL; nothing was mined",
    )


class MineDesk:
    """Asks this node's miner for one block and checks the answer against the ledger."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.url = settings.miner_internal_url.rstrip("/") + "/mine"
        self.token = settings.operator_token
        self.ledger = ledger

    async def mine_one(self, seconds: float) -> Block:
        """One block mined by this node's miner after the call, connected on the main chain."""
        logger.info("mine request waiting for the miner url=%s timeout=%.0fs", self.url, seconds)
        started = time.monotonic()
        try:
            block = await self._mine_one(seconds)
        except ServiceError as exc:
            logger.info(
                "mine request ended without a block reason=%s after=%.1fs",
                exc.reason,
                time.monotonic() - started,
            )
            raise
        logger.info(
            "mine request done height=%d hash=%s after=%.1fs",
            block.index,
            block.hash[:16],
            time.monotonic() - started,
        )
        return block

    async def _mine_one(self, seconds: float) -> Block:
        start_height = self.ledger.height
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            block_hash = await self._ask(left)
            block = self._connected(block_hash, start_height)
            if block is not None:
                return block
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        raise ServiceError(504, "mine-timeout", f"the miner found no block within {seconds:.0f}s")

    def _connected(self, block_hash: str, start_height: int) -> Block | None:
        """The block if it is on this ledger's main chain above `start_height`, else None."""
        stored = self.ledger.store.get_block(block_hash)
        if stored is None:
            logger.warning("miner named an unknown block hash=%s", block_hash[:16])
            return None
        block = stored.block
        if block.index <= start_height or not self.ledger.store.is_main(block.hash, block.index):
            logger.warning(
                "miner's block is not a new main-chain block hash=%s height=%d start=%d",
                block.hash[:16],
                block.index,
                start_height,
            )
            return None
        return block

    async def _ask(self, seconds: float) -> str:
        """POST the request to the miner; the hash it answers (shape checked only)."""
        headers = {"User-Agent": "pyBTC-ledger"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # The miner gives up after `seconds` and says so (504); the margin lets its answer in.
        timeout = aiohttp.ClientTimeout(
            total=seconds + CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT
        )
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
                session.post(self.url, json={"timeout": seconds}, allow_redirects=False) as resp,
            ):
                raw = b""
                while len(raw) < MAX_ANSWER_BYTES and (
                    chunk := await resp.content.read(MAX_ANSWER_BYTES - len(raw))
                ):
                    raw += chunk
                status = resp.status
        except aiohttp.ConnectionTimeoutError:  # an address where nothing answers
            raise no_miner(f"no connection within {CONNECT_TIMEOUT:.0f}s") from None
        except TimeoutError:
            raise ServiceError(
                504, "mine-timeout", f"the miner found no block within {seconds:.0f}s"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise no_miner(f"{type(exc).__name__}") from None
        except aiohttp.ClientError as exc:
            logger.warning("miner request failed error=%s", exc)
            raise no_miner("a broken answer") from None
        if status == 504:
            raise ServiceError(
                504, "mine-timeout", f"the miner found no block within {seconds:.0f}s"
            )
        if status != 200:
            logger.warning("miner refused the request status=%d body=%r", status, raw[:200])
            raise no_miner(f"it answered {status}")
        try:
            block_hash = json.loads(raw).get("hash")
        except (ValueError, AttributeError):
            block_hash = None
        if not isinstance(block_hash, str) or not HASH.fullmatch(block_hash):
            logger.warning("miner answered without a block hash body=%r", raw[:200])
            raise no_miner("an answer without a block hash")
        return block_hash
