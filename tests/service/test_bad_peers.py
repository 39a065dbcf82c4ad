"""Bad peers: a ledger survives every way another "ledger" can misbehave, and holds it to account.

What: a peer that answers HTML, truncated JSON, a 500, a redirect, a body that never ends, a
byte every 0.2 s, nothing at all, or from a closed port; a peer whose longer chain breaks one
consensus rule (proof of work, link, difficulty, time, coinbase amount, genesis) or that claims
more work than its blocks carry; and every way to register something that is not a peer.

How: each test runs one real regtest ledger (`LedgerNode` on a loopback port, no Redis,
`peer_timeout` 1 s, `peer_max_failures` 3) that has mined two blocks of its own (height 3), and
stub peers from `tests/service/stubpeers.py`: aiohttp apps on loopback ports that serve real
`pybtc` blocks in the ledger's `/status` and `/chain` shapes, or raw TCP servers. A stub is
registered while it looks like a fresh ledger, then armed, then the node is made to contact it
(`/nodes/resolve` with `miner_node` = the stub, or without, to sync with every peer). Each test
then checks that the request answered within a few × peer_timeout without a 5xx, that the node
is healthy and its tip, height and balances are what they were, that the peer was penalised (a
failure counted, or dropped for invalid data) and that `/nodes/resolve` reported `peer_error`.
A stub serving a valid longer chain is adopted: the control that proves the stubs' shapes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import ip_address
from json import loads
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from pybtc import DEVNET, Block
from pybtc.mining import mine_block
from services.common.settings import Settings
from services.node.peers import PeerPolicy, PolicyResolver, address_class
from tests.chainutil import bad_pow, test_key
from tests.service.ledgerutil import LedgerNode, free_port
from tests.service.stubpeers import (
    STUB_MINER,
    Babbler,
    Bad,
    BlackHole,
    StubPeer,
    Tamper,
    broken_link,
    build_chain,
    chain_work,
    from_the_future,
    harder_bits,
    other_genesis,
    overpaying_coinbase,
)

PEER_TIMEOUT = 1.0
BOUND = 4 * PEER_TIMEOUT
"""The longest a request that contacts one bad peer may take."""
QUICK = 0.5
"""The longest a request that must contact nobody may take."""
NODE_SETTINGS: dict[str, Any] = {
    "peer_timeout": PEER_TIMEOUT,
    "peer_max_failures": 3,
    "sync_interval": 3_600.0,  # no periodic sync in the middle of a test
}
MINER = test_key(0)
BAD_HEIGHT = 4
"""The height of the tampered block: blocks 2..3 of the stub's branch are valid, and carry
exactly the work of the node's own blocks 2..3, so they alone never move the node's tip."""


class Server(Protocol):
    """A stub server: a StubPeer, BlackHole or Babbler."""

    async def start(self) -> Any: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


class StartNode(Protocol):
    async def __call__(self, **changes: Any) -> LedgerNode: ...


class StartStub(Protocol):
    async def __call__(self, stub: S) -> S: ...


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of the node under test, and how long it took."""

    status: int
    body: Any
    seconds: float


@dataclass(frozen=True)
class Snapshot:
    """What a bad peer must not change: the tip and the balances on both branches."""

    tip: str
    height: int
    chain_work: str
    balances: tuple[int, ...]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start ledgers with NODE_SETTINGS (changed by keyword); stop them all at the end."""
    started: list[LedgerNode] = []

    async def start(**changes: Any) -> LedgerNode:
        node = LedgerNode(tmp_path / f"node{len(started)}", **(NODE_SETTINGS | changes))
        started.append(node)
        return await node.start()

    yield start
    for node in started:
        await node.stop()


@pytest.fixture
async def start_stub(start_node: StartNode) -> AsyncIterator[StartStub]:
    """Start stub servers; stop them all before the nodes (so no node request stays open)."""
    started: list[Server] = []

    async def start(stub: S) -> S:
        started.append(stub)
        await stub.start()
        return stub

    yield start
    for stub in reversed(started):
        await stub.stop()


@pytest.fixture
async def node(start_node: StartNode, http: aiohttp.ClientSession) -> LedgerNode:
    """A ledger with two blocks of its own (height 3, work 6) mined to test key 0."""
    started = await start_node()
    for _ in range(2):
        template = await call(http, "GET", f"{started.url}/mining/template?address={MINER.address}")
        block = mine_block(Block.from_dict(template.body["block"]))
        assert block is not None
        submitted = await call(http, "POST", f"{started.url}/mining/submit", json=block.to_dict())
        assert submitted.status == 201, submitted.body
    return started


# -- helpers -------------------------------------------------------------------------------------


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    bound: float = BOUND,
) -> Answer:
    """One request to the node; fail the test if it takes more than `bound` seconds or if the
    answer is a 5xx or not JSON."""
    start = time.monotonic()
    try:
        async with (
            asyncio.timeout(bound),
            http.request(
                method,
                url,
                json=json,
                data=data,
                headers={"Content-Type": "application/json"} if data is not None else None,
            ) as resp,
        ):
            text = await resp.text()
            status, content_type = resp.status, resp.content_type
    except TimeoutError:
        pytest.fail(f"{method} {url} did not answer within {bound:.1f}s")
    seconds = time.monotonic() - start
    assert status < 500, f"{method} {url} answered {status}: {text[:500]}"
    assert content_type == "application/json", f"{method} {url} answered {content_type}: {text}"
    return Answer(status, loads(text), seconds)


async def snapshot(http: aiohttp.ClientSession, node: LedgerNode) -> Snapshot:
    status = (await call(http, "GET", f"{node.url}/status")).body
    balances = []
    for key in (MINER, STUB_MINER):
        info = (await call(http, "GET", f"{node.url}/address/{key.address}")).body
        balances += [info["balance"], info["nonce"]]
    return Snapshot(status["tip"], status["height"], status["chain_work"], tuple(balances))


async def assert_unharmed(http: aiohttp.ClientSession, node: LedgerNode, before: Snapshot) -> None:
    """The node answers /healthz 200 and its chain and balances are as they were."""
    async with http.get(f"{node.url}/healthz") as resp:
        assert resp.status == 200, await resp.text()
    assert await snapshot(http, node) == before


async def peers(http: aiohttp.ClientSession, node: LedgerNode) -> dict[str, dict[str, Any]]:
    """The node's peers table, by URL."""
    rows = (await call(http, "GET", f"{node.url}/nodes")).body["peers"]
    return {row["url"]: row for row in rows}


async def register(http: aiohttp.ClientSession, node: LedgerNode, nodes: Any) -> Answer:
    return await call(http, "POST", f"{node.url}/nodes/register", json={"nodes": nodes})


async def register_quietly(http: aiohttp.ClientSession, node: LedgerNode, stub: StubPeer) -> None:
    """Register a quiet stub and wait for the sync the node starts with it to find nothing."""
    answer = await register(http, node, stub.url)
    assert answer.status == 201, answer.body
    assert answer.body["added"] == [stub.url]
    for _ in range(150):
        row = (await peers(http, node)).get(stub.url)
        if row is not None and row["last_ok"] is not None:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail(f"the node's first sync with {stub.url} never finished: {stub.requests}")
    assert row["failures"] == 0, row


async def resolve(
    http: aiohttp.ClientSession, node: LedgerNode, miner_node: str | None = None
) -> Answer:
    """The tutorial's consensus call: an announcement from `miner_node`, or a sync with all."""
    body = {"miner_node": miner_node} if miner_node is not None else None
    answer = await call(http, "GET", f"{node.url}/nodes/resolve", json=body)
    assert answer.status == 200, answer.body
    return answer


async def assert_penalised(
    http: aiohttp.ClientSession, node: LedgerNode, url: str, *, dropped: bool | None
) -> None:
    """`dropped` True: gone for invalid data; False: one failure counted; None: either."""
    row = (await peers(http, node)).get(url)
    if dropped is True:
        assert row is None, f"{url} sent invalid data and is still a peer: {row}"
    elif dropped is False:
        assert row is not None, f"{url} was dropped after one failed contact"
        assert row["failures"] == 1, row
        assert row["last_error"], row
    else:
        assert row is None or row["failures"] >= 1, row


async def rejection_reasons(http: aiohttp.ClientSession, node: LedgerNode) -> list[str]:
    return [
        r["reason"] for r in (await call(http, "GET", f"{node.url}/rejections")).body["rejections"]
    ]


# -- the control ---------------------------------------------------------------------------------


async def test_a_valid_longer_chain_is_adopted(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A stub serving a valid 6-block regtest chain (fork at genesis, more work) is synced from:
    the node's tip becomes the stub's, so the stubs speak the ledger's shapes."""
    chain = build_chain(6)
    stub = await start_stub(StubPeer(chain))
    await register_quietly(http, node, stub)
    stub.arm()
    answer = await resolve(http, node, stub.url)
    assert answer.body["message"] == "Our chain was replaced", answer.body
    assert "peer_error" not in answer.body
    status = (await call(http, "GET", f"{node.url}/status")).body
    assert (status["tip"], status["height"]) == (chain[-1].hash, 6)
    assert int(status["chain_work"], 16) == chain_work(chain)
    row = (await peers(http, node))[stub.url]
    assert (row["failures"], row["height"]) == (0, 6)


# -- misbehaviour on the wire --------------------------------------------------------------------

WIRE: dict[Bad, bool | None] = {
    Bad.HTML: True,
    Bad.TRUNCATED: True,
    Bad.ERROR_500: False,
    Bad.REDIRECT: False,
    Bad.ENDLESS: None,  # the timeout or the byte cap, whichever comes first
    Bad.TRICKLE: False,
    Bad.SILENT: False,
    Bad.HUGE_HEADER: False,
    Bad.GZIP_BOMB: None,  # the byte cap counts what the body inflates to
}
"""Each misbehaviour, and whether it is invalid data (the peer dropped) or one failure."""


@pytest.mark.parametrize("route", ["status", "headers", "blocks"])
@pytest.mark.parametrize("bad", list(WIRE), ids=str)
async def test_a_peer_that_misbehaves_on_the_wire(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession, route: str, bad: Bad
) -> None:
    """A registered stub with a valid longer chain misbehaves on one route (its /status, its
    headers pages or its block pages); /nodes/resolve from it answers in time with peer_error,
    the chain stays, and the peer is penalised. A redirect's target never hears from the node."""
    elsewhere = await start_stub(StubPeer(build_chain(6), armed=True))
    stub = await start_stub(StubPeer(build_chain(6), redirect_to=elsewhere.url))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm(**{route: bad})
    answer = await resolve(http, node, stub.url)
    assert answer.body["message"] == "Our chain is authoritative", answer.body
    assert answer.body.get("peer_error"), answer.body
    assert stub.count("GET", "/status") >= 3  # the handshake, the first sync, this one
    assert elsewhere.requests == [], "the node followed a redirect"
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=WIRE[bad])


async def test_a_registered_peer_that_went_away(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A registered stub stops (its port is closed): /nodes/resolve from it reports peer_error at
    once, and counts one failure."""
    stub = await start_stub(StubPeer(build_chain(6)))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    await stub.stop()
    answer = await resolve(http, node, stub.url)
    assert answer.body.get("peer_error"), answer.body
    assert answer.seconds < PEER_TIMEOUT
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=False)


async def test_the_node_keeps_serving_while_a_peer_is_silent(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """While /nodes/resolve waits on a registered stub that never answers its /status, the node
    answers /healthz, /status and /chain at once: peer I/O never blocks the event loop."""
    stub = await start_stub(StubPeer(build_chain(6)))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm(status=Bad.SILENT)
    waiting = asyncio.create_task(resolve(http, node, stub.url))
    try:
        await asyncio.sleep(0.2)
        for path in ("/healthz", "/status", "/chain?format=headers"):
            answer = await call(http, "GET", node.url + path, bound=0.2)
            assert answer.status == 200, answer.body
        assert not waiting.done()
    finally:
        answer = await waiting
    assert "within" in answer.body.get("peer_error", ""), answer.body
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=False)


async def test_silent_peers_are_checked_together(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """Five registered stubs all go silent: one /nodes/resolve without miner_node (a sync with
    every peer) waits for them side by side, about one peer_timeout, not five, and counts one
    failure for each."""
    stubs = [await start_stub(StubPeer(build_chain(6))) for _ in range(5)]
    for stub in stubs:
        await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    for stub in stubs:
        stub.arm(status=Bad.SILENT)
    answer = await resolve(http, node)
    assert answer.seconds < 2 * PEER_TIMEOUT
    await assert_unharmed(http, node, before)
    for stub in stubs:
        await assert_penalised(http, node, stub.url, dropped=False)


async def test_a_peer_failing_every_sync_is_dropped_after_max_failures(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A registered stub whose /status answers 500: each /nodes/resolve without miner_node (a
    sync with every peer) counts one failure, and the third (peer_max_failures) drops it."""
    stub = await start_stub(StubPeer(build_chain(6)))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm(status=Bad.ERROR_500)
    for failures in (1, 2):
        answer = await resolve(http, node)
        assert answer.body["message"] == "Our chain is authoritative"
        assert (await peers(http, node))[stub.url]["failures"] == failures
    await resolve(http, node)
    assert stub.url not in await peers(http, node)
    await assert_unharmed(http, node, before)


async def test_a_peer_dripping_one_header_per_page_cannot_hold_resolve(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A stub claiming a valid 20-block chain sends its headers one per page, each page 0.6 s
    (inside the 1 s peer_timeout): /nodes/resolve from it must still answer within a few ×
    peer_timeout, instead of one page-time per header of the peer's chain."""
    stub = await start_stub(StubPeer(build_chain(20), drip_delay=0.6 * PEER_TIMEOUT))
    await register_quietly(http, node, stub)
    stub.arm(headers=Bad.DRIP)
    answer = await resolve(http, node, stub.url)
    assert answer.seconds < BOUND


# -- invalid chains ------------------------------------------------------------------------------

INVALID: dict[str, tuple[Tamper, str | None]] = {
    "bad-pow": (bad_pow, None),
    "broken-link": (broken_link, None),
    "bad-difficulty": (harder_bits, "bad-difficulty"),
    "time-too-new": (from_the_future, "time-too-new"),
    "bad-coinbase-amount": (overpaying_coinbase, "bad-coinbase-amount"),
}
"""Each rule, the tamper that breaks it at BAD_HEIGHT, and the reason the node logs when it
gets as far as the block (None: its header gives it away, no block is fetched)."""


@pytest.mark.parametrize("rule", list(INVALID))
async def test_a_longer_chain_breaking_one_rule_is_refused(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession, rule: str
) -> None:
    """A registered stub serves a 6-block chain from genesis (more work than the node's) whose
    block 4 breaks one rule, re-mined so only that rule fails: /nodes/resolve reports
    peer_error, the node keeps its chain and balances, logs the rejection, drops the peer."""
    tamper, reason = INVALID[rule]
    chain = build_chain(6, tamper={BAD_HEIGHT: tamper})
    stub = await start_stub(StubPeer(chain))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm()
    answer = await resolve(http, node, stub.url)
    assert answer.body.get("peer_error"), answer.body
    assert answer.body["message"] == "Our chain is authoritative", answer.body
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=True)
    if reason is not None:
        assert reason in await rejection_reasons(http, node)
        assert reason in answer.body["peer_error"]
    else:
        assert stub.count("GET", "/chain") == sum(
            1 for _, path in stub.requests if "format=headers" in path
        ), "blocks were fetched although a header was invalid"


async def test_an_announcement_from_an_unknown_bad_node_changes_nothing(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A stub that is not a peer announces (/nodes/resolve miner_node) a longer chain with an
    over-paying coinbase: the node reports peer_error, keeps its chain, and does not make the
    announcer its peer."""
    chain = build_chain(6, tamper={BAD_HEIGHT: overpaying_coinbase})
    stub = await start_stub(StubPeer(chain, armed=True))
    before = await snapshot(http, node)
    answer = await resolve(http, node, stub.url)
    assert answer.body.get("peer_error"), answer.body
    await assert_unharmed(http, node, before)
    assert await peers(http, node) == {}


async def test_a_peer_that_turns_to_another_genesis_is_dropped(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A registered stub whose /status then names another genesis: peer_error, dropped."""
    genesis = other_genesis()
    stub = await start_stub(StubPeer(build_chain(6, genesis=genesis), genesis=genesis.hash))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm()
    answer = await resolve(http, node, stub.url)
    assert "genesis" in answer.body.get("peer_error", ""), answer.body
    assert stub.count("GET", "/chain") == 0
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=True)


async def test_a_peer_lying_about_its_genesis_is_dropped(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A registered stub whose /status names the regtest genesis, but whose headers start from
    another genesis: the node finds no common block, reports peer_error, drops the peer."""
    stub = await start_stub(StubPeer(build_chain(6, genesis=other_genesis())))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm()
    answer = await resolve(http, node, stub.url)
    assert answer.body.get("peer_error"), answer.body
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=True)


async def test_a_peer_claiming_more_work_than_its_headers_carry_is_dropped(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A registered stub claims chain_work 2**200 on /status but serves only a 4-block regtest
    chain: the node adds up the headers' work, reports peer_error, drops the peer."""
    stub = await start_stub(StubPeer(build_chain(4), claim_work=2**200))
    await register_quietly(http, node, stub)
    before = await snapshot(http, node)
    stub.arm()
    answer = await resolve(http, node, stub.url)
    assert "work" in answer.body.get("peer_error", ""), answer.body
    await assert_unharmed(http, node, before)
    await assert_penalised(http, node, stub.url, dropped=True)


# -- registration --------------------------------------------------------------------------------


async def assert_refused(
    http: aiohttp.ClientSession, node: LedgerNode, nodes: Any, reason: str | set[str]
) -> Answer:
    """POST /nodes/register `nodes`: a 400 with `reason`, and the node still has no peer."""
    answer = await register(http, node, nodes)
    assert answer.status == 400, answer.body
    reasons = {reason} if isinstance(reason, str) else reason
    assert answer.body["reason"] in reasons, answer.body
    assert answer.body["error"]
    assert await peers(http, node) == {}
    return answer


async def test_register_refuses_loopback_when_only_public_is_allowed(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A node with peer_networks="public" refuses a (perfectly good) loopback stub with
    peer-not-allowed, without contacting it, and refuses announcements from it too."""
    node = await start_node(peer_networks="public")
    stub = await start_stub(StubPeer(build_chain(6), armed=True))
    before = await snapshot(http, node)
    answer = await assert_refused(http, node, stub.url, "peer-not-allowed")
    assert answer.seconds < QUICK
    announced = await call(http, "GET", f"{node.url}/nodes/resolve", json={"miner_node": stub.url})
    assert (announced.status, announced.body["reason"]) == (400, "peer-not-allowed")
    assert stub.requests == []
    await assert_unharmed(http, node, before)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254",
        "169.254.169.254:80",
        "http://[::ffff:169.254.169.254]:80",
        "http://[fe80::1]:5000",
    ],
)
async def test_register_never_contacts_link_local(
    start_node: StartNode, http: aiohttp.ClientSession, url: str
) -> None:
    """A link-local address (cloud metadata) is refused with peer-not-allowed before any
    connection is tried (so at once), by /nodes/register and by /nodes/resolve."""
    node = await start_node()
    answer = await assert_refused(http, node, url, "peer-not-allowed")
    assert answer.seconds < QUICK
    announced = await call(
        http, "GET", f"{node.url}/nodes/resolve", json={"miner_node": url}, bound=QUICK
    )
    assert (announced.status, announced.body["reason"]) == (400, "peer-not-allowed")


async def test_a_name_that_rebinds_to_loopback_is_refused_on_connecting(
    start_node: StartNode,
    start_stub: StartStub,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a name that looked public when it was checked and resolves to loopback
    when the node connects. The check before the request is made to pass (as a rebinding DNS
    server would make it); the node's own HTTP client resolves `localhost` again, refuses the
    loopback address, and the stub behind it hears nothing."""
    node = await start_node(peer_networks="public")
    stub = await start_stub(StubPeer(build_chain(6), armed=True))

    async def looked_public(self: PeerPolicy, url: str) -> None:
        return None

    monkeypatch.setattr(PeerPolicy, "check_connect", looked_public)
    before = await snapshot(http, node)
    answer = await register(http, node, f"http://localhost:{stub.port}")
    assert answer.status == 400, answer.body
    assert "loopback" in answer.body["error"], answer.body
    assert stub.requests == []
    assert await peers(http, node) == {}
    await assert_unharmed(http, node, before)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.1.1", "link-local"),
        ("127.0.0.2", "loopback"),
        ("10.1.2.3", "private"),
        ("93.184.216.34", "public"),
    ],
)
def test_address_classes(address: str, kind: str) -> None:
    """Cloud metadata services are a class of their own, even inside private ranges."""
    assert address_class(ip_address(address)) == kind


async def test_policy_resolver_refuses_any_disallowed_address() -> None:
    """The resolver the node's client connects with returns a name's addresses only when
    every one of them is allowed, and raises an OSError naming the first that is not."""

    class Scripted(AbstractResolver):
        def __init__(self, *addresses: str) -> None:
            self.addresses = addresses

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            return [
                ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
                for a in self.addresses
            ]

        async def close(self) -> None:
            return None

    public = PeerPolicy.from_setting("public", 64, "")
    fine = await PolicyResolver(public, Scripted("93.184.216.34")).resolve("peer.example", 80)
    assert [r["host"] for r in fine] == ["93.184.216.34"]
    for mixed in (("93.184.216.34", "127.0.0.1"), ("169.254.169.254",), ("fd00:ec2::254",)):
        with pytest.raises(OSError, match="PYBTC_PEER_NETWORKS"):
            await PolicyResolver(public, Scripted(*mixed)).resolve("peer.example", 80)
    everything = PeerPolicy.from_setting("loopback,private,public,link-local", 64, "")
    with pytest.raises(OSError, match="metadata"):
        await PolicyResolver(everything, Scripted("169.254.169.254")).resolve("x", 80)


@pytest.mark.parametrize(
    ("host", "networks", "expected"),
    [
        ("127.0.0.1", "", "loopback,private,public"),
        ("localhost", "", "loopback,private,public"),
        ("::1", "", "loopback,private,public"),
        ("0.0.0.0", "", "private,public"),
        ("192.168.1.20", "", "private,public"),
        ("0.0.0.0", "public", "public"),
        ("127.0.0.1", "private", "private"),
    ],
)
def test_default_peer_networks_follow_where_the_node_listens(
    host: str, networks: str, expected: str
) -> None:
    """A node strangers can reach (not listening on loopback alone) refuses loopback peers
    unless the operator names them; an explicit PYBTC_PEER_NETWORKS always wins."""
    settings = Settings.from_env({"PYBTC_HOST": host, "PYBTC_PEER_NETWORKS": networks})
    assert settings.peer_network_names == expected


@pytest.mark.parametrize(
    "form",
    ["credentials", "ftp", "path", "query", "over-long", "port-zero", "port-too-big", "empty"],
)
async def test_register_refuses_a_malformed_url(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession, form: str
) -> None:
    """A peer URL with credentials, another scheme, a path or query, over 200 characters, or a
    port that cannot be, is 400 bad-peer-url; the stub it names hears nothing."""
    node = await start_node()
    stub = await start_stub(StubPeer(build_chain(6), armed=True))
    where = f"127.0.0.1:{stub.port}"
    url = {
        "credentials": f"http://user:secret@{where}",
        "ftp": f"ftp://{where}",
        "path": f"http://{where}/chain",
        "query": f"http://{where}/?start=1",
        "over-long": f"http://{where}/" + "a" * 250,
        "port-zero": "http://127.0.0.1:0",
        "port-too-big": "http://127.0.0.1:65536",
        "empty": "   ",
    }[form]
    answer = await assert_refused(http, node, url, "bad-peer-url")
    assert answer.seconds < QUICK
    assert stub.requests == []


@pytest.mark.parametrize("bad", [Bad.NOT_FOUND, Bad.HTML, Bad.TRUNCATED])
async def test_register_refuses_what_is_not_a_pybtc_ledger(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession, bad: Bad
) -> None:
    """A web server that answers /status with a 404, an HTML page or broken JSON is reachable
    but no pyBTC ledger: 400 peer-handshake-failed, not added."""
    node = await start_node()
    stub = await start_stub(StubPeer(armed=True))
    stub.arm(status=bad)
    await assert_refused(http, node, stub.url, "peer-handshake-failed")
    assert stub.count("GET", "/status") == 1


@pytest.mark.parametrize("other", ["devnet", "another-genesis"])
async def test_register_refuses_a_ledger_of_another_chain(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession, other: str
) -> None:
    """A pyBTC ledger of devnet, or a "regtest" ledger with another genesis: 400
    peer-handshake-failed, not added, and its chain never asked for."""
    node = await start_node()
    if other == "devnet":
        stub = StubPeer([DEVNET.genesis], network="devnet", genesis=DEVNET.genesis.hash)
    else:
        genesis = other_genesis()
        stub = StubPeer(build_chain(3, genesis=genesis), genesis=genesis.hash)
    stub.armed = True
    await start_stub(stub)
    await assert_refused(http, node, stub.url, "peer-handshake-failed")
    assert stub.count("GET", "/chain") == 0


async def test_register_refuses_the_node_itself(
    start_node: StartNode, http: aiohttp.ClientSession
) -> None:
    """The node's own URL, spelt as configured, with a slash, or as localhost: 400 self."""
    node = await start_node()
    for url in (node.url, f"{node.url}/", f"localhost:{node.port}"):
        await assert_refused(http, node, url, "self")


async def test_register_refuses_thousands_at_once(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """5000 URLs in one registration: 400 too-many-peers at once, nobody contacted."""
    node = await start_node()
    stub = await start_stub(StubPeer(armed=True))
    urls = [stub.url] + [f"http://127.0.0.{1 + i // 60000}:{1 + i % 60000}" for i in range(4999)]
    answer = await assert_refused(http, node, urls, "too-many-peers")
    assert answer.seconds < QUICK
    assert stub.requests == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"nodes": 5}',
        b'{"nodes": null}',
        b"{}",
        b'{"nodes": []}',
        b'{"nodes": [5]}',
        b'{"nodes": {"url": "http://127.0.0.1:5000"}}',
        b'{"nodes": true}',
        b'["http://127.0.0.1:5000"]',
        b"",
    ],
    ids=lambda b: b.decode() or "empty",
)
async def test_register_refuses_a_malformed_body(
    start_node: StartNode, http: aiohttp.ClientSession, body: bytes
) -> None:
    """Bodies that are not {"nodes": url or [urls]}: a 4xx JSON error with a reason."""
    node = await start_node()
    answer = await call(http, "POST", f"{node.url}/nodes/register", data=body, bound=QUICK)
    assert 400 <= answer.status < 500, answer.body
    assert answer.body["reason"], answer.body
    assert answer.body["error"], answer.body
    assert await peers(http, node) == {}


@pytest.mark.parametrize("kind", ["closed-port", "black-hole", "babbler", "trickle", "silent"])
async def test_register_refuses_what_does_not_answer(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession, kind: str
) -> None:
    """A closed port, a TCP server that never answers, one that answers in something else than
    HTTP, and an HTTP server that trickles or never answers its /status: registration answers
    400 within peer_timeout and a little, and adds nothing."""
    node = await start_node()
    if kind == "closed-port":
        url = f"http://127.0.0.1:{free_port()}"
    elif kind == "black-hole":
        url = (await start_stub(BlackHole())).url
    elif kind == "babbler":
        url = (await start_stub(Babbler())).url
    else:
        stub = await start_stub(StubPeer(armed=True))
        stub.arm(status=Bad.TRICKLE if kind == "trickle" else Bad.SILENT)
        url = stub.url
    answer = await assert_refused(http, node, url, {"peer-unreachable", "peer-handshake-failed"})
    assert answer.seconds < PEER_TIMEOUT + 1.0
