"""Slow peers and anonymous announcements cannot stall a ledger.

What: four registered peers that answer every page just inside the timeout must not hold
`/nodes/resolve` past its deadline; announcements (`/nodes/resolve` with `miner_node`) from a
slow node must not delay an honest one, must coalesce into one sync per source, and are limited
per client; block announcements on the bus pointing at a server that never answers must not
delay a transaction that comes after them on the bus.

How: one real regtest ledger (`LedgerNode` on a loopback port, `peer_timeout` 1 s unless said,
so a sync and a round of syncs end within SYNC_DEADLINE = 3 s) that has mined two blocks of its
own, stub peers from `tests/service/stubpeers.py` on loopback, and for the bus the session's real
Redis with a second `Bus` publishing as another ledger would. The checks are on the documented
deadlines, with a margin of two.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import web

from pybtc import COIN, REGTEST, Block, Transaction
from pybtc.mining import mine_block
from services.common.bus import Bus, Kind
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode, free_port
from tests.service.stubpeers import Bad, BlackHole, StubPeer, build_chain
from tests.service.test_bad_peers import Answer, call, peers, register_quietly

PEER_TIMEOUT = 1.0
SYNC_DEADLINE = 3 * PEER_TIMEOUT
"""What docs/operations.md promises: one sync, one round of syncs, one announcement's answer."""
NODE_SETTINGS: dict[str, Any] = {
    "peer_timeout": PEER_TIMEOUT,
    "peer_max_failures": 3,
    "sync_interval": 3_600.0,  # no periodic sync in the middle of a test
}
BUS_FETCHES = 4
"""Blocks announced on the bus that a node fetches at once (docs/operations.md)."""
MINER, ALICE = test_key(0), test_key(2)


class SlowStub(StubPeer):
    """A stub that, once armed, sends the right answer on `slow` routes after `delay` s."""

    def __init__(self, chain: list[Block], *, slow: set[str], delay: float) -> None:
        super().__init__(chain)
        self.slow = slow
        self.delay = delay

    async def _answer(self, request: web.Request, route: str, body: Any) -> web.StreamResponse:
        if self.armed and route in self.slow:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        return await super()._answer(request, route, body)


class StartNode(Protocol):
    async def __call__(self, **changes: Any) -> LedgerNode: ...


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def stubs() -> AsyncIterator[list[Any]]:
    """Servers to stop at the end, after the nodes (whose fetches would reconnect to a stub
    closing under them)."""
    started: list[Any] = []
    yield started
    for stub in reversed(started):
        await stub.stop()


@pytest.fixture
async def start_node(
    tmp_path: Path, http: aiohttp.ClientSession, stubs: list[Any]
) -> AsyncIterator[StartNode]:
    """Start a ledger with NODE_SETTINGS (changed by keyword) that has mined two blocks."""
    started: list[LedgerNode] = []

    async def start(**changes: Any) -> LedgerNode:
        node = LedgerNode(tmp_path / f"node{len(started)}", **(NODE_SETTINGS | changes))
        started.append(node)
        await node.start()
        for _ in range(2):
            url = f"{node.url}/mining/template?address={MINER.address}"
            template = await call(http, "GET", url)
            block = mine_block(Block.from_dict(template.body["block"]))
            assert block is not None
            answer = await call(http, "POST", f"{node.url}/mining/submit", json=block.to_dict())
            assert answer.status == 201, answer.body
        return node

    yield start
    for node in started:
        await node.stop()


async def start(stubs: list[Any], stub: Any) -> Any:
    stubs.append(stub)
    await stub.start()
    return stub


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for `condition` (polled); fail the test if it does not hold within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {condition}")
        await asyncio.sleep(0.02)


async def announce(
    http: aiohttp.ClientSession, node: LedgerNode, miner_node: str, bound: float = 4 * SYNC_DEADLINE
) -> Answer:
    """The tutorial's new-block announcement: GET /nodes/resolve {"miner_node": ...}."""
    return await call(
        http, "GET", f"{node.url}/nodes/resolve", json={"miner_node": miner_node}, bound=bound
    )


# -- slow peers ----------------------------------------------------------------------------------


async def test_resolve_answers_within_its_deadline_whatever_slow_peers_do(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession
) -> None:
    """Four registered stubs, each with its own valid 80-block chain (more work than the node's),
    send every headers and blocks page 0.6 × peer_timeout late (inside the timeout, so each
    sync takes its whole deadline, and gets some blocks on the way): /nodes/resolve without
    miner_node answers within its round deadline (not one sync deadline per peer), and no peer
    is counted as failed for being slow.
    """
    node = await start_node()
    slow = []
    for i in range(4):
        chain = build_chain(80, spacing=60 + i)
        stub = await start(stubs, SlowStub(chain, slow={"headers", "blocks"}, delay=0.6))
        await register_quietly(http, node, stub)
        slow.append(stub)
    for stub in slow:
        stub.arm()
    answer = await call(http, "GET", f"{node.url}/nodes/resolve", bound=4 * SYNC_DEADLINE)
    assert answer.status == 200, answer.body
    assert answer.seconds < 2 * SYNC_DEADLINE, answer
    rows = await peers(http, node)
    for stub in slow:
        assert stub.count("GET", "/chain") >= 1, stub.requests  # each was synced from
        assert rows[stub.url]["failures"] == 0, rows[stub.url]


# -- announcements -------------------------------------------------------------------------------


async def test_an_honest_announcement_is_not_held_by_slow_ones(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession
) -> None:
    """Six announcements from six nodes whose headers never come (each sync waits
    peer_timeout: six in a row would take six), then one from an honest node with a longer
    chain: the honest one is answered "Our chain was replaced" with its tip within the
    documented deadline, not after the six (even with an operator token set: announcements
    need none)."""
    node = await start_node(operator_token="s3cret")
    slow = []
    for _ in range(6):
        stub = await start(stubs, StubPeer(build_chain(6), armed=True))
        stub.arm(headers=Bad.SILENT)
        slow.append(stub)
    honest_chain = build_chain(8, spacing=61)
    honest = await start(stubs, StubPeer(honest_chain, armed=True))
    queued = [asyncio.create_task(announce(http, node, stub.url)) for stub in slow]
    await until(lambda: all(stub.count("GET", "/chain") for stub in slow))  # all six waiting
    answer = await announce(http, node, honest.url)
    assert answer.body["message"] == "Our chain was replaced", answer.body
    assert answer.body["new_chain"][0]["hash"] == honest_chain[-1].hash
    assert answer.seconds < SYNC_DEADLINE, answer
    for slow_answer in await asyncio.gather(*queued):
        assert slow_answer.status == 200, slow_answer.body
        assert "within" in slow_answer.body.get("peer_error", ""), slow_answer.body


async def test_announcements_from_one_source_share_one_sync(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession
) -> None:
    """Six announcements at once from one slow node are one sync with it: the node asks its
    /status and its headers once, and every announcement gets that sync's outcome."""
    node = await start_node()
    slow = await start(stubs, StubPeer(build_chain(6), armed=True))
    slow.arm(headers=Bad.SILENT)
    answers = await asyncio.gather(*(announce(http, node, slow.url) for _ in range(6)))
    assert slow.count("GET", "/status") == 1, slow.requests
    assert slow.count("GET", "/chain") == 1, slow.requests
    for answer in answers:
        assert answer.status == 200, answer.body
        assert "within" in answer.body.get("peer_error", ""), answer.body
        assert answer.seconds < 2 * SYNC_DEADLINE, answer


async def test_announcements_are_limited_per_client(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession
) -> None:
    """With PYBTC_ANNOUNCE_BURST 3, a client's fourth announcement naming nodes that are not
    peers is a 429 `too-many-announcements` with Retry-After, also from loopback; the node does
    not contact that source. Announcements naming a registered peer are not counted."""
    node = await start_node(announce_burst=3, announce_rate=0.01)
    closed = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    for url in closed:
        answer = await announce(http, node, url)
        assert answer.status == 200, answer.body
        assert answer.body.get("peer_error"), answer.body
    quiet = await start(stubs, StubPeer(build_chain(6)))
    async with http.get(f"{node.url}/nodes/resolve", json={"miner_node": quiet.url}) as resp:
        body = await resp.json()
        assert resp.status == 429, body
        assert body["reason"] == "too-many-announcements", body
        assert int(resp.headers["Retry-After"]) >= 1
    assert quiet.requests == []
    async with http.get(f"{node.url}/nodes/resolve", params={"miner_node": quiet.url}) as resp:
        assert resp.status == 429, await resp.text()
    await register_quietly(http, node, quiet)
    for _ in range(5):
        answer = await announce(http, node, quiet.url)
        assert answer.status == 200, answer.body
        assert answer.body["message"] == "Our chain is authoritative", answer.body


async def test_the_default_announcement_quota_stops_a_flood(
    start_node: StartNode, http: aiohttp.ClientSession
) -> None:
    """With the default settings (bursts of 20, then 1 a second), thirty announcements in a row
    from one loopback client, each naming another node that is not a peer: the first twenty
    are answered, and the flood then gets 429 `too-many-announcements`."""
    node = await start_node()
    statuses = []
    for _ in range(30):
        url = f"http://127.0.0.1:{free_port()}"
        async with http.get(f"{node.url}/nodes/resolve", json={"miner_node": url}) as resp:
            body = await resp.json()
            statuses.append(resp.status)
            if resp.status == 429:
                assert body["reason"] == "too-many-announcements", body
    assert statuses[:20] == [200] * 20, statuses
    assert statuses.count(429) >= 5, statuses


async def test_strangers_being_synced_are_capped_and_peers_still_heard(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession
) -> None:
    """Sixteen announcements naming sixteen different nodes that are not peers and never answer
    their /status (each sync waits peer_timeout): a seventeenth stranger is answered 429
    `too-many-announcements` at once, without being contacted, while an announcement from a
    registered peer with a longer chain is still synced from at once."""
    node = await start_node(announce_burst=100)
    chain = build_chain(8, spacing=61)
    peer = await start(stubs, StubPeer(chain))
    await register_quietly(http, node, peer)
    strangers = []
    for _ in range(17):
        stranger = await start(stubs, StubPeer(build_chain(6), armed=True))
        stranger.arm(status=Bad.SILENT)
        strangers.append(stranger)
    waiting = [asyncio.create_task(announce(http, node, s.url)) for s in strangers[:16]]
    await until(lambda: all(s.count("GET", "/status") for s in strangers[:16]))
    async with http.get(
        f"{node.url}/nodes/resolve", json={"miner_node": strangers[16].url}
    ) as resp:
        body = await resp.json()
        assert resp.status == 429, body
        assert body["reason"] == "too-many-announcements", body
        assert int(resp.headers["Retry-After"]) >= 1
    assert strangers[16].requests == []
    peer.arm()
    answer = await announce(http, node, peer.url)
    assert answer.body["message"] == "Our chain was replaced", answer.body
    assert answer.seconds < 2 * PEER_TIMEOUT, answer
    for done in await asyncio.gather(*waiting):
        assert "within" in done.body.get("peer_error", ""), done.body


# -- the bus -------------------------------------------------------------------------------------


async def test_bus_block_announcements_never_hold_a_transaction(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession, redis_url: str
) -> None:
    """Three block announcements on the bus naming a server that accepts connections and never
    answers (peer_timeout 5 s, the default), then a valid transaction on the bus: it is in the
    node's mempool within a second or two, not after three timeouts."""
    node = await start_node(redis_url=redis_url, peer_timeout=5.0)
    hole = await start(stubs, BlackHole())
    info = (await call(http, "GET", f"{node.url}/address/{MINER.address}")).body
    tx = Transaction.create(
        MINER,
        ALICE.address,
        COIN,
        fee=1_000,
        nonce=info["next_nonce"],
        timestamp=int(time.time()),
        network_id=REGTEST.network_id,
    )
    async with Bus(redis_url, "regtest", "elsewhere/ledger") as other:
        for _ in range(3):
            block = {"hash": secrets.token_hex(32), "height": 4, "url": hole.url}
            assert await other.publish(Kind.BLOCK, block) is not None
        assert await other.publish(Kind.TX, {"txid": tx.txid, "tx": tx.to_dict()}) is not None
        published = time.monotonic()
        while time.monotonic() - published < 2.0:
            mempool = (await call(http, "GET", f"{node.url}/mempool")).body
            if any(item["txid"] == tx.txid for item in mempool["transactions"]):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"the bus transaction was not admitted within 2 s: {mempool}")
    assert hole.connections >= 1  # the announced blocks were asked for, in the background


async def test_bus_block_fetches_are_few_at_once_and_one_per_hash(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession, redis_url: str
) -> None:
    """Forty block announcements with distinct hashes, and five more of one hash, all naming a
    server that never answers: the node fetches BUS_FETCHES (4) of them side by side, no more,
    and the rest wait or are dropped; the node answers meanwhile."""
    node = await start_node(redis_url=redis_url, peer_timeout=5.0)
    hole, twin = await start(stubs, BlackHole()), await start(stubs, BlackHole())
    async with Bus(redis_url, "regtest", "elsewhere/ledger") as other:
        same = secrets.token_hex(32)
        for _ in range(5):  # one hash, five times: one fetch, from the twin
            await other.publish(Kind.BLOCK, {"hash": same, "height": 4, "url": twin.url})
        for _ in range(40):
            block = {"hash": secrets.token_hex(32), "height": 4, "url": hole.url}
            await other.publish(Kind.BLOCK, block)
        await until(lambda: hole.connections + twin.connections >= BUS_FETCHES)
        await asyncio.sleep(0.5)  # well inside the 5 s peer_timeout: no fetch has ended
        answer = await call(http, "GET", f"{node.url}/status", bound=1.0)
        assert answer.status == 200, answer.body
        assert twin.connections == 1, twin.connections
        assert hole.connections + twin.connections == BUS_FETCHES, hole.connections


class DeafStub(StubPeer):
    """A stub that shakes hands like a ledger but never answers a block announcement (the
    tutorial's GET /nodes/resolve) until it stops."""

    async def _resolve(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        await self._stopping.wait()
        return web.Response(status=204)


async def test_gossip_to_deaf_peers_never_holds_a_sync(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession
) -> None:
    """30 registered peers that never answer the node's block announcements, and 8 blocks
    mined meanwhile: 240 announcements hang, each until its peer_timeout. An honest node's
    announcement is still synced from at once: what the node says to its peers (fire and
    forget) never takes the connections its syncs need."""
    timeout = 6.0
    node = await start_node(peer_timeout=timeout)
    deaf = [await start(stubs, DeafStub([REGTEST.genesis])) for _ in range(30)]
    added = await call(
        http, "POST", f"{node.url}/nodes/register", json={"nodes": [s.url for s in deaf]}
    )
    assert len(added.body["added"]) == 30, added.body
    for _ in range(8):
        template = await call(http, "GET", f"{node.url}/mining/template?address={MINER.address}")
        block = mine_block(Block.from_dict(template.body["block"]))
        assert block is not None
        answer = await call(http, "POST", f"{node.url}/mining/submit", json=block.to_dict())
        assert answer.status == 201, answer.body
    await until(lambda: all(s.count("GET", "/nodes/resolve") for s in deaf))  # all told
    honest_chain = build_chain(14, spacing=61)
    honest = await start(stubs, StubPeer(honest_chain, armed=True))
    answer = await announce(http, node, honest.url)
    assert answer.body["message"] == "Our chain was replaced", answer.body
    assert answer.body["new_chain"][0]["hash"] == honest_chain[-1].hash
    # it waited for no announcement to time out (a sync of 12 blocks takes a fraction of this)
    assert answer.seconds < timeout / 3, answer


async def test_a_bus_block_whose_sync_is_slow_holds_no_fetch_slot(
    start_node: StartNode, stubs: list[Any], http: aiohttp.ClientSession, redis_url: str
) -> None:
    """Four blocks announced on the bus whose parents the node lacks, each from a node whose
    headers never come: the syncs they start run in the background, so a fifth announcement
    is fetched at once, not after the four syncs' deadlines."""
    await start_node(redis_url=redis_url, peer_timeout=4.0)  # a page may take 4 s
    slow = []
    for n in range(BUS_FETCHES):
        stub = await start(stubs, StubPeer(build_chain(6, spacing=60 + n), armed=True))
        stub.arm(headers=Bad.SILENT)
        slow.append(stub)
    fifth = await start(stubs, StubPeer(build_chain(6, spacing=70), armed=True))
    async with Bus(redis_url, "regtest", "elsewhere/ledger") as other:
        for stub in slow:
            tip = stub.chain[-1]
            await other.publish(Kind.BLOCK, {"hash": tip.hash, "height": 6, "url": stub.url})
        await until(lambda: all(stub.count("GET", "/chain") for stub in slow))  # all syncing
        last = fifth.chain[-1]
        await other.publish(Kind.BLOCK, {"hash": last.hash, "height": 6, "url": fifth.url})
        await until(lambda: fifth.count("GET", f"/blocks/{last.hash}") == 1, seconds=2.0)
