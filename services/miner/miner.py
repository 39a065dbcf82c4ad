"""The mining loop: template from the ledger, search on the workers, submit, start again.

A job is dropped the moment it goes stale: a tip change announced by this node's ledger on the
bus wakes the loop at once, new transactions wake it after a short debounce, and a poll of the
ledger's `/status` every few seconds catches any announcement the bus lost. Waking means a new
template from the ledger, which is always built on the ledger's current tip; a nonce found for
an older job is thrown away.

Modes: `auto` mines continuously; `on-demand` mines only when asked. Only the node's own
ledger asks, over HTTP (`POST /mine`, the ledger's tutorial `GET /mine`), and the answer is
the HTTP reply, sent once the ledger has accepted the block. The bus only ever wakes the loop
to fetch a fresh template from the ledger: no message on it makes the miner mine or submit
anything (DESIGN.md §6), and a `mine` request seen there is ignored.

Auto-mine (`auto_mine` seconds, on-demand mode only): a supervised task asks for one block
every `auto_mine` seconds, counted from the last block this miner found (for a request or by
itself) or from the start. A block that arrives from elsewhere does not reset the count: the
switch promises a block of this node's every SECONDS, as regtest boxes do, not a quiet period.
`activity` in /status says at each moment what the miner is doing or waiting for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from pybtc import Block, ValidationError
from pybtc.pow import bits_to_target
from services.common.bus import Bus, Envelope, Kind
from services.common.ledger_client import LedgerClient
from services.common.web import ServiceError
from services.miner.engine import Engine, Job

logger = logging.getLogger(__name__)

STALE_REASONS = frozenset({"low-work", "duplicate-block"})
"""Refusals of a block the chain outran (or that came in another way first), not faults."""

POLL = 0.01
"""Seconds between looks at the workers' results."""
TX_DEBOUNCE = 1.0
STATUS_POLL = 2.0
HEARTBEAT = 1.0
AUTO_MINE_PATIENCE = 300.0
"""Seconds one auto-mined block may take before it is asked for again (and logged)."""
MODES = ("auto", "on-demand")


@dataclass
class MinerStats:
    started: float = field(default_factory=time.time)
    jobs: int = 0
    found: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stale_dropped: int = 0
    last_block: str = ""
    last_error: str = ""


class Miner:
    """Mines blocks for one node, paying `address`."""

    def __init__(
        self,
        ledger: LedgerClient,
        engine: Engine,
        address: str,
        mode: str,
        *,
        node: str,
        bus: Bus | None = None,
        auto_mine: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mining mode is one of {MODES}, not {mode!r}")
        self.ledger = ledger
        self.engine = engine
        self.address = address
        self.mode = mode
        self.node = node
        self.bus = bus
        self.stats = MinerStats()
        self.auto_mine = auto_mine if mode == "on-demand" else 0.0
        self._last_found_at = time.monotonic()
        self._auto_pending = False
        self._ledger_down = False
        self.template: Block | None = None
        self.job: Job | None = None
        self.requests: deque[tuple[int, asyncio.Future[Block]]] = deque()
        """Waiting GET /mine requests: the last job started before each, and its answer."""
        self.wake = asyncio.Event()
        self._debounce: asyncio.TimerHandle | None = None
        self._own_tip = ""  # our accepted block: its tip announcement is not news

    # -- signals from outside ----------------------------------------------------------------
    def refresh(self, why: str) -> None:
        """Drop the current job and start on a fresh template."""
        logger.debug("refresh why=%s", why)
        self.wake.set()

    def transactions_arrived(self) -> None:
        """New transactions: refresh soon, once, however many arrive (auto mode)."""
        if self._debounce is None or self._debounce.cancelled():
            loop = asyncio.get_running_loop()
            self._debounce = loop.call_later(TX_DEBOUNCE, self._debounced)

    def _debounced(self) -> None:
        self._debounce = None
        self.refresh("transactions")

    async def mine_one(self, seconds: float) -> Block:
        """Mine one block for the ledger's `GET /mine` (both modes) on a template fetched after
        this call; the block once the ledger has accepted it. TimeoutError after `seconds`."""
        waiter: asyncio.Future[Block] = asyncio.get_running_loop().create_future()
        request = (self.stats.jobs, waiter)
        self.requests.append(request)
        self.refresh("request")
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), seconds)
        finally:
            if request in self.requests:
                self.requests.remove(request)
            waiter.cancel()

    async def on_bus(self, envelope: Envelope) -> None:
        ledger_origin = f"{self.node}/ledger"
        data = envelope.data
        if envelope.type == Kind.TIP and envelope.origin == ledger_origin:
            if data.get("hash") != self._own_tip:
                self.refresh("tip")
        elif envelope.type == Kind.TX and envelope.origin == ledger_origin and self.mode == "auto":
            self.transactions_arrived()

    # -- the loop ----------------------------------------------------------------------------
    @property
    def wants_work(self) -> bool:
        return self.mode == "auto" or bool(self.requests)

    async def run(self) -> None:
        """Mine until cancelled; ledger outages are waited out with a backoff."""
        backoff = 0.5
        while True:
            if not self.wants_work:
                self.engine.idle()
                self.job = None
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                await self._one_job()
                backoff = 0.5
            except ServiceError as exc:
                self._ledger_down = True
                self.stats.last_error = exc.message
                logger.warning("ledger unavailable error=%s retry_in=%.1fs", exc.message, backoff)
                self.engine.idle()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _one_job(self) -> None:
        self.wake.clear()
        body = await self.ledger.get("/mining/template", address=self.address)
        self._ledger_down = False
        try:
            template = Block.from_dict(body["block"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ServiceError(
                502, "bad-template", f"the ledger sent a bad template: {exc}"
            ) from None
        self.stats.jobs += 1
        job = Job(
            self.stats.jobs, template.header.prefix_bytes(), bits_to_target(template.header.bits)
        )
        self.template, self.job = template, job
        self.engine.submit(job)
        logger.debug(
            "job id=%d height=%d txs=%d", job.job_id, template.index, len(template.transactions)
        )
        while not self.wake.is_set():
            result = self.engine.poll()
            if result is not None and result[0] == job.job_id:
                if result[1] is not None:
                    await self._submit(template.with_nonce(result[1]), job.job_id)
                return  # found (or a slice ran out): next template
            await asyncio.sleep(POLL)
        self.stats.stale_dropped += 1

    async def _submit(self, block: Block, job_id: int) -> None:
        self.stats.found += 1
        status, body = await self.ledger.request("POST", "/mining/submit", json=block.to_dict())
        if status == 201:
            self.stats.accepted += 1
            self.stats.last_block = block.hash
            self._last_found_at = time.monotonic()
            if isinstance(body, dict) and body.get("is_tip"):
                self._own_tip = block.hash
            logger.info("block accepted height=%d hash=%s", block.index, block.hash[:16])
            self._answer(block, job_id)
            return
        reason = body.get("reason", "error") if isinstance(body, dict) else "error"
        self.stats.rejected[str(reason)] += 1
        if reason in STALE_REASONS:  # the chain outran it: every miner loses such races
            logger.info("block stale height=%d reason=%s", block.index, reason)
        else:
            logger.warning("block rejected height=%d reason=%s", block.index, reason)

    def _answer(self, block: Block, job_id: int) -> None:
        """Complete the oldest request made before this block's job started."""
        for request in self.requests:
            last_job_then, waiter = request
            if last_job_then < job_id and not waiter.done():
                waiter.set_result(block)
                self.requests.remove(request)
                return

    # -- helpers run beside the loop --------------------------------------------------------
    async def auto_mine_loop(self) -> None:
        """On-demand mode with auto_mine > 0: one block every auto_mine seconds."""
        while True:
            left = self._last_found_at + self.auto_mine - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
                continue  # a block found meanwhile (a GET /mine) moved the next one on
            self._auto_pending = True
            try:
                block = await self.mine_one(AUTO_MINE_PATIENCE)
                logger.info("auto-mined block height=%d hash=%s", block.index, block.hash[:16])
            except TimeoutError:
                logger.warning("auto-mine found no block within %.0fs", AUTO_MINE_PATIENCE)
            finally:
                self._auto_pending = False

    def activity(self) -> str:
        """What the miner is doing or waiting for, now (for /status)."""
        if self._ledger_down and self.wants_work:
            return "no template: ledger unreachable"
        requests = len(self.requests) - (1 if self._auto_pending else 0)
        if self.wants_work:
            template = self.template if self.job is not None else None
            if template is None:
                return "fetching a template from the ledger"
            if self.mode == "auto":
                why = " (auto mode)"
            elif requests and self._auto_pending:
                why = f" for {requests} GET /mine request(s) and auto-mine"
            elif requests:
                why = f" for {requests} GET /mine request(s)"
            else:
                why = " (auto)"
            return f"mining block {template.index}{why}"
        if self.auto_mine > 0:
            left = max(0.0, self._last_found_at + self.auto_mine - time.monotonic())
            return f"next auto-mined block in {left:.0f} s"
        return "idle: on-demand, waiting for GET /mine"

    async def watch_ledger(self) -> None:
        """Poll the ledger's tip: the bus is a hint, this is the guarantee."""
        while True:
            await asyncio.sleep(STATUS_POLL)
            template = self.template
            try:
                status = await self.ledger.get("/status")
            except ServiceError:
                continue
            # An answer about a template that has been replaced since the request went out is
            # old news (the miner's own block moved the tip meanwhile): only a tip that moved
            # under the current job, and not by this miner, makes it stale.
            tip = status.get("tip")
            if (
                template is not None
                and template is self.template
                and tip != template.previous_hash
                and tip != self._own_tip
            ):
                self.refresh("tip (poll)")

    async def heartbeat(self) -> None:
        """Every HEARTBEAT: replace dead workers, and sample the hash count for the hash rate.
        (It used to announce `ready` on the bus for GET /mine; the ledger now asks over HTTP.)"""
        while True:
            if not self.engine.alive():
                await self._replace_engine()
            self.engine.sample()
            await asyncio.sleep(HEARTBEAT)

    async def _replace_engine(self) -> None:
        """Workers died (the OOM killer, a signal): start a fresh set and resume."""
        old = self.engine
        logger.error("workers died; starting new ones count=%d", old.size)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, old.stop)
        fresh = Engine(old.size)
        await loop.run_in_executor(None, fresh.start)
        self.engine = fresh
        self.refresh("new workers")

    def status(self) -> dict[str, Any]:
        template, job = self.template, self.job
        return {
            "mode": self.mode,
            "address": self.address,
            "workers": self.engine.size,
            "worker_pids": self.engine.pids,
            "job": None
            if template is None or job is None
            else {
                "id": job.job_id,
                "height": template.index,
                "previous_hash": template.previous_hash,
                "bits": template.header.bits,
                "target": f"{job.target:064x}",
                "transactions": len(template.transactions),
            },
            "hash_rate": round(self.engine.hash_rate(), 1),
            "hashes": self.engine.total_hashes(),
            "blocks_found": self.stats.found,
            "blocks_accepted": self.stats.accepted,
            "blocks_rejected": dict(self.stats.rejected),
            "stale_jobs_dropped": self.stats.stale_dropped,
            "requests_pending": len(self.requests),
            "activity": self.activity(),
            "auto_mine": self.auto_mine,
            "last_block": self.stats.last_block,
            "last_error": self.stats.last_error,
            "uptime": round(time.time() - self.stats.started, 1),
        }
