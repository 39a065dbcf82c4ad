"""Node to node: registration, gossip over the bus and over HTTP, catch-up, consensus.

- `register`: the tutorial's `/nodes/register` — a handshake (`/status`: a pyBTC ledger of our
  network and genesis, and not ourselves) before a peer is added; then, in the background, we
  register back with it and tell our other peers. A peer that knows a URL already answers
  "Already Registered Node" and goes no further, so registration never loops. Each URL new
  here takes one unit of the asking client's quota first; a full book makes room by evicting
  its worst unprotected peer (`PeerBook.victim`).
- Gossip: every transaction and block this ledger accepts is announced on the bus (for ledgers
  sharing the Redis) and over HTTP — transactions relayed to every peer with `"type": "sharing"`
  (only when new here, so relays stop), tip changes announced with the tutorial's
  `/nodes/resolve` call — concurrently, in the background, each with a timeout.
- From the bus: a transaction is admitted like any other, at once; an unknown block is fetched
  from the announcing node in the background (a few fetches at a time, a bounded backlog, one
  per hash), and a block whose parent we lack starts a sync with that node.
- Catch-up and consensus: at start, after a bus reconnect, on `/nodes/resolve` and every
  `sync_interval`, every peer's `/status` is read (its health check) and peers that claim more
  work are synced from (`services.node.sync`), all side by side under one round deadline.
- No peer holds more than its own sync: there is one sync per peer at a time (an announcement
  or a round asking for a peer already syncing joins that sync), and none waits for another.
- A peer's tip in the book (`GET /nodes`) is what it last told: its `/status` (handshake,
  health check, sync), its answer to our tip announcement (the tutorial's `/nodes/resolve`
  answers with the answering node's tip, after it synced from us), and its blocks on the bus
  that are its tip. So after this node mines a block, each peer that takes it is shown at the
  new tip as soon as it has answered, not at the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pybtc import Block, BlockHeader, Reason, Transaction, ValidationError
from services.common.bus import Bus, Envelope, Kind
from services.common.quota import ClientQuota
from services.common.settings import Settings
from services.common.tasks import Supervisor
from services.common.web import ServiceError
from services.node.announce import Announcer
from services.node.jobs import BoundedQueue, Coalesced
from services.node.ledger import BlockResult, Ledger, TxResult
from services.node.peer_client import (
    BAD_BLOCK,
    BAD_CHAIN,
    PeerClient,
    PeerError,
    PeerStatus,
    check_hash,
    check_height,
)
from services.node.peers import CONFIG, PeerBook, PeerPolicy, PolicyResolver, normalize_peer_url
from services.node.refusals import COST_BYTES
from services.node.sync import Syncer, SyncResult

logger = logging.getLogger(__name__)

MAX_REGISTER_BATCH = 64
UNREACHABLE = "peer-unreachable"
REGISTER_LIMITED = "register-rate-limited"
REGISTRATION_REASONS = (
    "self",
    REGISTER_LIMITED,
    "peer-limit",
    "peer-handshake-failed",
    "peer-unreachable",
    "peer-not-allowed",
)
"""Why a URL was not added; the first becomes the 400's reason when nothing was added."""
SYNC_DEADLINE_TIMEOUTS = 3
"""One sync with one peer, and one round with all of them, end within this many peer_timeouts
(the syncs a round started go on in the background, each within its own deadline)."""
MAX_STRANGER_SYNCS = 16
"""Syncs at once with nodes that announced themselves and are not peers: strangers can never
take the connections and the time this node's peers need."""
MAX_ANNOUNCERS = 64
"""Clients remembered per stranger sync, to be charged if it ends in a bad block."""
BUS_FETCHES = 4
"""Blocks announced on the bus fetched at once, ..."""
BUS_BACKLOG = 64
"""... and announced blocks waiting for a fetch; past that an announcement is dropped (the
periodic sync catches up on whatever the bus dropped)."""


@dataclass
class Registration:
    """The outcome of one `/nodes/register` request."""

    added: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)


class Network:
    """This ledger's peers and everything it says to and hears from them."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        announcer: Announcer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.announcer = announcer
        self.clock = clock
        self.self_url = normalize_peer_url(settings.ledger_public_url)
        self.policy = PeerPolicy.from_setting(
            settings.peer_network_names, settings.max_peers, self.self_url
        )
        self.book = PeerBook(ledger.store, settings.peer_max_failures)
        self.register_quota = ClientQuota(
            "new peer URLs",
            settings.peer_register_rate,
            settings.peer_register_burst,
            reason=REGISTER_LIMITED,
            setting="PYBTC_PEER_REGISTER_RATE, PYBTC_PEER_REGISTER_BURST",
        )
        self.session: aiohttp.ClientSession | None = None
        self.gossip_session: aiohttp.ClientSession | None = None
        self.gossip: PeerClient | None = None
        """The client of what this node tells its peers without waiting for an answer."""
        self.client: PeerClient | None = None
        self.syncer: Syncer | None = None
        self.tasks = Supervisor("ledger")
        """Its background work; `start` is given the app's (the one /healthz reports)."""
        self.bus_ledgers: dict[str, None] = {}
        """URLs of the other ledgers heard on the bus (most recent last), for resyncs."""
        self.syncs: Coalesced[SyncResult] = Coalesced(self.spawn, "sync", again=True)
        """The sync running with each peer (or announcer), by URL."""
        self.rounds: Coalesced[list[SyncResult]] = Coalesced(self.spawn, "sync round")
        self.fetches = BoundedQueue(
            self.spawn, "bus block fetch", limit=BUS_FETCHES, backlog=BUS_BACKLOG
        )
        self.announce_quota = ClientQuota(
            "announcements from nodes that are not peers",
            settings.announce_rate,
            settings.announce_burst,
            reason="too-many-announcements",
            setting="PYBTC_ANNOUNCE_RATE, PYBTC_ANNOUNCE_BURST",
        )
        self.deadline = SYNC_DEADLINE_TIMEOUTS * settings.peer_timeout
        """How long one sync, one round of syncs or an announcement's answer may take."""
        self.bad_blocks: ClientQuota | None = None
        """The app's quota of refused blocks per client (/mining/submit's): a sync that ends in
        a block that breaks a rule is charged, as a refused full-size block, to the clients
        that announced that node (not a peer) or to the one that registered it (a peer), so
        announcing or registering liars is no cheaper a way to make this node check bad blocks
        than handing them in."""
        self.bad_sync_cost = 1 + settings.max_body_bytes // COST_BYTES
        self.announcers: dict[str, set[str]] = {}
        """The clients that announced each stranger (not a peer) since its sync began."""

    # -- life cycle ------------------------------------------------------------------------
    async def start(self, bus: Bus | None, tasks: Supervisor | None = None) -> None:
        if tasks is not None:
            self.tasks = tasks
        self.session, self.client = self._peer_client()
        # What this node tells its peers (relays, tip announcements, registrations passed on)
        # is fire and forget, one request per peer per event: peers that never answer can hold
        # every connection of a pool until their timeouts, so it has a pool of its own, and
        # the syncs and handshakes that need answers never wait for one.
        self.gossip_session, self.gossip = self._peer_client()
        self.syncer = Syncer(self.ledger, self.client, self.clock, deadline=self.deadline)
        if bus is not None:
            self.tasks.run("bus gossip", lambda: self._listen(bus))
        initial = [u.strip() for u in self.settings.peers.split(",") if u.strip()]
        self.spawn(self._start_up(initial), "start-up sync")
        self.tasks.run("periodic sync", self._periodic)

    def _peer_client(self) -> tuple[aiohttp.ClientSession, PeerClient]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=PolicyResolver(self.policy)),
            timeout=aiohttp.ClientTimeout(total=self.settings.peer_timeout),
            headers={"User-Agent": "pyBTC-ledger"},
        )
        client = PeerClient(
            session, self.policy, self.ledger.params, timeout=self.settings.peer_timeout
        )
        return session, client

    async def close(self) -> None:
        await self.tasks.close()  # before the sessions its tasks use
        for session in (self.session, self.gossip_session):
            if session is not None:
                await session.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run `coro` once in the background; log (never raise) what goes wrong."""
        self.tasks.spawn(coro, what)

    async def _start_up(self, initial: list[str]) -> None:
        if initial:
            try:
                await self.register(initial)
            except ServiceError as exc:
                logger.warning("start-up peers not registered reason=%s %s", exc.reason, exc)
        await self.resolve()

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_interval)
            await self._register_configured()
            await self.resolve()  # or the round a /nodes/resolve has running: not a second

    def configured(self) -> set[str]:
        """The peers this node's settings name (PYBTC_PEERS), normalized."""
        wanted = set()
        for raw in (p.strip() for p in self.settings.peers.split(",")):
            if raw:
                with contextlib.suppress(ServiceError):
                    wanted.add(normalize_peer_url(raw))
        return wanted

    async def _register_configured(self) -> None:
        """PYBTC_PEERS that are not peers now (down at start, or dropped since): try again."""
        wanted = sorted(self.configured())
        missing = [url for url in wanted if url not in self.book and url != self.self_url]
        if missing:
            try:
                await self.register(missing)
            except ServiceError as exc:
                logger.info("configured peers not registered reason=%s %s", exc.reason, exc)

    # -- registration ----------------------------------------------------------------------
    async def register(
        self, raw: object, client: str | None = None, *, counted: bool = True
    ) -> Registration:
        """Handshake and add the given peer URLs; register back and spread in the background.

        `client` is who asked (None: this node itself, from its settings). Unless not
        `counted`, each URL new here takes one unit of that client's registration quota
        before it is contacted; the peers it adds are counted as its own when the book is
        full and one must make room."""
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise ServiceError(400, "bad-peer-url", "nodes is empty")
        if len(items) > MAX_REGISTER_BATCH:
            raise ServiceError(
                400, "too-many-peers", f"at most {MAX_REGISTER_BATCH} nodes in one registration"
            )
        urls = list(dict.fromkeys(normalize_peer_url(item) for item in items))
        outcome = Registration()
        candidates = []
        for url in urls:
            if url == self.self_url:
                outcome.rejected.append({"url": url, "reason": "self", "error": "this node"})
            elif url in self.book:
                outcome.known.append(url)
            else:
                candidates.append(url)
        limited: list[str] = []
        if client is not None and counted and candidates and self.bad_blocks is not None:
            self.bad_blocks.check(client)  # the peers it registered sent bad blocks lately
        if client is not None and counted and candidates:
            candidates, limited = self._within_quota(client, candidates, outcome)
        results = await asyncio.gather(*(self._handshake(url) for url in candidates))
        for url, (error, status) in zip(candidates, results, strict=True):
            if error is not None:
                outcome.rejected.append({"url": url, **error})
            elif url in self.book:  # a concurrent registration added it meanwhile
                outcome.known.append(url)
            elif len(self.book) >= self.settings.max_peers and not self._make_room(url):
                outcome.rejected.append(
                    {
                        "url": url,
                        "reason": "peer-limit",
                        "error": "this node has enough peers, each of them protected",
                    }
                )
            elif self.book.add(url, client or CONFIG):
                outcome.added.append(url)
                if status is not None:  # what its handshake said
                    self.book.learned_tip(url, status.height, status.tip)
                logger.info("peer added url=%s by=%s", url, client or CONFIG)
        outcome.rejected += [
            {
                "url": url,
                "reason": REGISTER_LIMITED,
                "error": "this client registered too many new peers lately",
            }
            for url in limited
        ]
        if outcome.added:
            self.spawn(self._spread(outcome.added), "register back")
        if not outcome.added and not outcome.known and outcome.rejected:
            first = outcome.rejected[0]
            raise ServiceError(400, first["reason"], f"{first['url']}: {first['error']}")
        return outcome

    def _within_quota(
        self, client: str, candidates: list[str], outcome: Registration
    ) -> tuple[list[str], list[str]]:
        """The candidates `client`'s quota allows (one unit each, in order) and those past it;
        if none is allowed and nothing was known, the request is a 429."""
        allowed = []
        for url in candidates:
            if not self.register_quota.allow(client):
                break
            allowed.append(url)
        if not allowed and not outcome.known:
            self.register_quota.take(client)  # the quota's 429, with Retry-After
        return allowed, candidates[len(allowed) :]

    def _make_room(self, newcomer: str) -> bool:
        """Evict the worst unprotected peer for `newcomer` (PeerBook.victim); False if none."""
        victim = self.book.victim(self.configured())
        if victim is None:
            return False
        self.book.remove(victim, "evicted", f"made room for {newcomer}")
        logger.info("peer evicted url=%s for=%s", victim, newcomer)
        return True

    async def _handshake(self, url: str) -> tuple[dict[str, str] | None, PeerStatus | None]:
        """(why `url` is not a peer, None) or (None, its status)."""
        assert self.client is not None
        try:
            status = await self.client.status(url)
        except PeerError as exc:
            answered = exc.invalid or exc.http_status is not None
            reason = "peer-handshake-failed" if answered else "peer-unreachable"
            if exc.reason == "peer-not-allowed":
                reason = "peer-not-allowed"
            return {"reason": reason, "error": exc.message}, None
        if status.node_id == self.settings.origin:  # our own URL under another name
            return {"reason": "self", "error": "this node, under another name"}, None
        return None, status

    async def _spread(self, added: list[str]) -> None:
        """Register back with each new peer, and tell the other peers about them."""
        assert self.gossip is not None
        client = self.gossip
        others = [u for u in self.book.urls() if u not in added]

        async def post(url: str, nodes: object) -> None:
            try:
                await client.post(url, "/nodes/register", {"nodes": nodes}, expect=(200, 201))
            except PeerError as exc:
                logger.info("registration not passed on url=%s error=%s", url, exc.message)

        jobs = [post(url, self.self_url) for url in added]
        jobs += [post(url, added) for url in others]
        await asyncio.gather(*jobs)
        await asyncio.gather(*(self._sync_quietly(url) for url in added))

    # -- gossip out ------------------------------------------------------------------------
    async def transaction_accepted(self, result: TxResult) -> None:
        """Announce a new transaction on the bus and relay it to every HTTP peer."""
        await self.announcer.transaction(result)
        body = result.tx.to_dict() | {"type": "sharing"}
        for url in self.book.urls():
            self.spawn(self._relay(url, "/transactions/new", body), "relay tx")

    async def block_accepted(
        self, result: BlockResult, *, source: str | None = None, announce: bool = True
    ) -> None:
        """Announce a block on the bus; if it moved our tip, pass on what a reorg re-queued and
        (unless `announce` is False) announce the new tip to every peer but `source`."""
        await self.announcer.block(result)
        change = result.tip_change
        if change is None:
            return
        for txid in change.requeued:  # back in our mempool: the other nodes need it again
            pending = self.ledger.store.mempool_get(txid)
            if pending is not None:
                await self.transaction_accepted(TxResult(pending.tx, True))
        if announce:
            self._announce_tip(exclude=source)

    def _announce_tip(self, exclude: str | None = None) -> None:
        """The tutorial's new-block call, GET /nodes/resolve {"miner_node": us}, to each peer."""
        tip = self.ledger.tip_header()
        announcement = {
            "miner_node": self.self_url,
            "new_nonce": tip.nonce,
            "hash": tip.hash,
            "height": tip.index,
        }
        for url in self.book.urls():
            if url != exclude:
                self.spawn(self._announce(url, announcement), "announce block")

    async def _relay(self, url: str, path: str, body: dict[str, Any]) -> None:
        assert self.gossip is not None
        try:
            await self.gossip.post(url, path, body, expect=(201, 400, 409, 503))
        except PeerError as exc:
            logger.info("relay failed url=%s error=%s", url, exc.message)

    async def _announce(self, url: str, announcement: dict[str, Any]) -> None:
        """Announce our tip to peer `url`; its answer tells its own tip (after it took ours)."""
        assert self.gossip is not None
        try:
            answer = await self.gossip.announce(url, announcement)
        except PeerError as exc:
            logger.info("announcement failed url=%s error=%s", url, exc.message)
            return
        if url not in self.book:
            return
        try:
            tip = answered_tip(url, answer)
        except PeerError as exc:
            self._penalise(url, exc)
            return
        if tip is not None:
            self.book.learned_tip(url, tip.index, tip.hash)

    async def _results_accepted(self, results: list[BlockResult], source: str) -> None:
        """Blocks a sync added: each on the bus, one tip announcement to the other peers."""
        for result in results:
            await self.block_accepted(result, announce=False)
        if any(r.tip_change is not None for r in results):
            self._announce_tip(exclude=source)

    # -- gossip in (the bus) ---------------------------------------------------------------
    async def _listen(self, bus: Bus) -> None:
        async with bus.subscribe(Kind.TX, Kind.BLOCK) as subscription:
            async for envelope in subscription:
                try:
                    await self.on_bus(envelope)
                except Exception:
                    logger.exception("bus message failed type=%s", envelope.type)

    async def on_bus(self, envelope: Envelope) -> None:
        """Handle a transaction or block another ledger announced on the shared Redis."""
        data = envelope.data
        self._heard_on_bus(data.get("url"))
        if envelope.type == Kind.BLOCK:
            self._learn_tip_from_bus(data)
        if envelope.type == Kind.TX:
            try:
                result = self.ledger.submit_transaction(
                    Transaction.from_dict(data.get("tx")), int(self.clock())
                )
            except (ValidationError, ServiceError) as exc:
                logger.debug("bus tx refused origin=%s reason=%s", envelope.origin, exc)
                return
            if result.is_new:
                await self.transaction_accepted(result)
            return
        block_hash, url = data.get("hash"), data.get("url")
        if not isinstance(block_hash, str) or not isinstance(url, str):
            return
        if self.ledger.store.block_meta(block_hash) is not None:
            return
        try:
            url = normalize_peer_url(url)
            check_hash(url, "block hash", block_hash)  # cheap, before it is queued
        except (ServiceError, PeerError) as exc:
            logger.info("bus block not fetched url=%s error=%s", url[:100], exc)
            return
        if block_hash in self.ledger.refused:  # refused for good already: not worth a fetch
            logger.debug("bus block refused before hash=%s url=%s", block_hash[:16], url)
            return
        # Fetching waits on another node: never here, where the next message waits on us.
        queued = self.fetches.submit(block_hash, lambda: self._fetch_block(url, block_hash))
        if queued in ("full", "duplicate"):
            logger.debug("bus block dropped hash=%s url=%s why=%s", block_hash[:16], url, queued)

    async def _fetch_block(self, url: str, block_hash: str) -> None:
        """Get a block announced on the bus from the node that announced it, and take it."""
        if self.ledger.store.block_meta(block_hash) is not None:
            return  # came some other way while it waited
        assert self.client is not None
        try:
            block = await self.client.block(url, block_hash)
        except PeerError as exc:
            logger.info("bus block not fetched url=%s error=%s", url, exc)
            return
        await self.accept_or_sync(block, url)

    async def accept_or_sync(self, block: Block, url: str) -> None:
        """Submit a gossiped block; if its parent is unknown, sync from the node that sent it."""
        try:
            result = self.ledger.submit_block(block, int(self.clock()))
        except ValidationError as exc:
            if exc.reason is Reason.UNKNOWN_PARENT:
                # In the background: a sync may take its whole deadline, and this may be one
                # of the few bus fetch slots, which must never wait on more than one block.
                self.spawn(self._sync_quietly(url), "sync from announcer")
            elif exc.reason is not Reason.DUPLICATE_BLOCK:
                self.ledger.log_rejection(
                    int(self.clock()), "block", block.hash, str(exc.reason), exc.message, url
                )
            return
        except ServiceError as exc:  # low-work: a stale block, not worth storing
            logger.debug("gossiped block not stored hash=%s reason=%s", block.hash[:16], exc.reason)
            return
        await self.block_accepted(result, source=url)

    # -- catch-up and consensus ------------------------------------------------------------
    async def sync_from(self, url: str, *, wait: float | None = None) -> SyncResult:
        """Sync from one node (a peer or an announcer), or join the sync running with it;
        TimeoutError after `wait` seconds (the sync goes on in the background)."""
        return await self.syncs.join(url, lambda: self._sync_and_record(url), wait)

    async def _sync_and_record(self, url: str) -> SyncResult:
        """One sync with `url`: counted in the peer book, what it added announced."""
        assert self.syncer is not None
        announcers = self.announcers.pop(url, set())
        try:
            result = await self.syncer.sync_from(url)
        except PeerError as exc:
            announcers |= self.announcers.pop(url, set())
            if exc.reason == BAD_BLOCK:  # never an honest race, unlike a page that changed
                self._charge_bad_sync(url, announcers)
            if url in self.book:
                # A peer that cannot be reached (down for a restart) is kept, as by a round's
                # health check: else anyone announcing it a few times makes this node forget
                # it. A slow one still counts: it may be claiming work it never delivers.
                self._penalise(url, exc, keep=exc.reason == UNREACHABLE)
            raise
        if url in self.book:
            self.book.ok(url, result.peer_height, result.peer_tip or None)
            self.book.delivered(url, sum(1 for r in result.added if r.tip_change is not None))
        await self._results_accepted(result.added, url)
        if result.partial:
            logger.info("sync continues url=%s height=%d", url, self.ledger.height)
            # Once this sync has ended (the next turn of the loop), or it would join this one.
            asyncio.get_running_loop().call_soon(
                lambda: self.spawn(self._sync_quietly(url), "continue sync")
            )
        return result

    def _charge_bad_sync(self, url: str, announcers: set[str]) -> None:
        """A sync with `url` ended in a block that breaks a rule: charge whoever made this node
        contact it
        (the clients that announced a stranger, or the one that registered a peer) as for a
        refused full-size block."""
        if self.bad_blocks is None:
            return
        registrant = self.book.added_by(url)
        clients = announcers if registrant is None else {registrant} - {CONFIG}
        for client in clients:
            self.bad_blocks.charge(client, self.bad_sync_cost)

    def admit_announcement(self, url: str, client: str) -> None:
        """Count an announcement naming `url` from `client`; 429 past the client's quota, or
        when too many strangers are being synced. Announcements naming a peer always pass."""
        if url in self.book:
            return
        if self.bad_blocks is not None:
            self.bad_blocks.check(client)  # its strangers sent invalid blocks lately
        if url not in self.syncs:  # else it joins the sync running with it
            strangers = sum(1 for running in self.syncs.running if running not in self.book)
            if strangers >= MAX_STRANGER_SYNCS:
                raise ServiceError(
                    429,
                    "too-many-announcements",
                    f"{strangers} announced nodes that are not peers are being synced from; "
                    f"try again in {self.deadline:.0f} s",
                    headers={"Retry-After": str(max(1, round(self.deadline)))},
                )
        self.announce_quota.take(client)  # last: a refusal above costs the client nothing
        announcers = self.announcers.pop(url, set())
        if len(announcers) < MAX_ANNOUNCERS:
            announcers.add(client)
        self.announcers[url] = announcers  # the most recent last
        while len(self.announcers) > 4 * MAX_STRANGER_SYNCS:  # a sync never started: forget
            del self.announcers[next(iter(self.announcers))]

    async def announced(self, url: str) -> SyncResult | None:
        """A new-block announcement from `url`: its sync, or None if it is still running after
        `deadline` seconds (it goes on in the background)."""
        try:
            return await self.sync_from(url, wait=self.deadline)
        except TimeoutError:
            logger.info("announcement sync continues url=%s", url)
            return None

    async def _sync_quietly(self, url: str) -> SyncResult | None:
        try:
            return await self.sync_from(url)
        except PeerError as exc:
            logger.info("sync failed url=%s error=%s", url, exc.message)
            return None

    async def sync_all(self, extra: list[str] | None = None) -> list[SyncResult]:
        """Health-check every peer (and the `extra` ledgers) and sync from those claiming more
        work, all at once; the syncs that ended within `deadline` seconds."""
        assert self.client is not None
        client = self.client
        urls = self.book.urls() + (extra or [])
        ours = self.ledger.chain_work()

        async def check(url: str) -> PeerStatus | None:
            try:
                status = await client.status(url)
            except PeerError as exc:
                # Unreachable (refused, reset, no answer in time) is not a fault: a partition
                # or a restart must not make nodes forget each other. Wrong answers still count.
                self._penalise(url, exc, keep=not exc.invalid and exc.http_status is None)
                return None
            # A peer claiming more work keeps its failures until a sync with it succeeds.
            self.book.ok(url, status.height, status.tip, reset=status.chain_work <= ours)
            return status

        results: list[SyncResult] = []
        leaders: dict[str, asyncio.Future[SyncResult]] = {}
        """The first sync of this round toward each tip: others claiming it wait on it a bit."""

        async def catch_up(url: str) -> None:
            status = await check(url)
            if status is None or status.chain_work <= self.ledger.chain_work():
                return
            leader = leaders.get(status.tip)
            if leader is not None:  # the same chain from another peer: fetch it once
                await asyncio.wait({leader}, timeout=self.settings.peer_timeout)
                if status.chain_work <= self.ledger.chain_work():
                    return
            job = self.syncs.start(url, lambda: self._sync_and_record(url))
            leaders.setdefault(status.tip, job)
            try:
                results.append(await asyncio.shield(job))
            except PeerError as exc:
                logger.info("sync failed url=%s error=%s", url, exc.message)

        # One deadline for the round: a peer that is slow to answer or to sync is left to its
        # own sync in the background (its own deadline, the book's rules), not waited for.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.deadline):
                for outcome in await asyncio.gather(
                    *(catch_up(u) for u in dict.fromkeys(urls)), return_exceptions=True
                ):
                    if isinstance(outcome, Exception):
                        logger.error("sync round failed", exc_info=outcome)
        return results

    async def resolve(self) -> list[SyncResult]:
        """A round with every peer, or the one running (so that `/nodes/resolve` without
        `miner_node`, the start-up and the periodic round cost the peers one round)."""
        return await self.rounds.join("all", self.sync_all)

    def _penalise(self, url: str, exc: PeerError, *, keep: bool = False) -> None:
        """Count `exc` against peer `url` with its reason code (see PeerBook.failed)."""
        if self.book.failed(url, exc.message, reason=exc.reason, invalid=exc.invalid, keep=keep):
            logger.warning("peer dropped url=%s reason=%s error=%s", url, exc.reason, exc.message)

    def _learn_tip_from_bus(self, data: dict[str, Any]) -> None:
        """A peer's block on the bus that is its tip: what it would answer on /status now."""
        if data.get("is_tip") is not True:
            return
        try:
            url = normalize_peer_url(data.get("url"))
        except ServiceError:
            return
        if url == self.self_url or url not in self.book:
            return
        try:
            height = check_height(url, "height", data.get("height"))
            tip = check_hash(url, "block hash", data.get("hash"))
        except PeerError as exc:  # a bus message is a hint, and not signed by the peer
            logger.info("bus tip not taken url=%s error=%s", url, exc.message)
            return
        self.book.learned_tip(url, height, tip)

    def _heard_on_bus(self, url: object) -> None:
        try:
            url = normalize_peer_url(url)
        except ServiceError:
            return
        if url != self.self_url:
            self.bus_ledgers.pop(url, None)
            self.bus_ledgers[url] = None
            while len(self.bus_ledgers) > self.settings.max_peers:
                del self.bus_ledgers[next(iter(self.bus_ledgers))]

    async def resync(self) -> None:
        """After a bus reconnect (or a gap): catch up with every peer and every ledger heard on
        the bus, and take the pending transactions of theirs we lack: what the bus dropped."""
        extra = [url for url in self.bus_ledgers if url not in self.book]
        await self.sync_all(extra)
        await asyncio.gather(*(self._pull_mempool(u) for u in [*self.book.urls(), *extra]))

    async def _pull_mempool(self, url: str) -> None:
        assert self.client is not None
        try:
            txs = await self.client.mempool(url)
        except PeerError as exc:
            logger.info("mempool not pulled url=%s error=%s", url, exc.message)
            return
        for tx in txs:
            try:
                result = self.ledger.submit_transaction(tx, int(self.clock()))
            except (ValidationError, ServiceError):
                continue
            if result.is_new:
                await self.transaction_accepted(result)


def answered_tip(url: str, answer: object) -> BlockHeader | None:
    """The tip in a node's answer to our announcement (`/nodes/resolve`): the last item of its
    `chain` or `new_chain`, a header. None if the answer names none (a node need not say);
    PeerError (invalid) if what it names is not a header."""
    if not isinstance(answer, dict):
        return None
    items = answer.get("new_chain", answer.get("chain"))
    if not isinstance(items, list) or not items:
        return None
    try:
        header = BlockHeader.from_dict(items[-1])
        check_height(url, "tip height", header.index)
    except ValidationError as exc:
        raise PeerError(
            url, f"answered an announcement with a bad tip: {exc}", invalid=True, reason=BAD_CHAIN
        ) from None
    return header
