"""Hostile peers: no value a peer sends can crash a task or fill the node, and no one client can
take over the peer book.

What: a registered peer whose `/status` carries a height outside int64, a negative, a float or
a bool; a tip with a lone UTF-16 surrogate, in capitals, or of 20 MB; a node id of 10,000
characters or with a control character; chain work that is not hex; a height its chain work
cannot carry. And a client that registers 70 fake peers (stubs that pass the handshake and then
never answer again, and URLs that never answer at all) in front of an honest peer.

How: real regtest ledgers on loopback ports (`LedgerNode`, the fixtures and checks of
`test_bad_peers.py`) and stub peers (`tests/service/stubpeers.py`); `LyingStub` answers its
`/status` with one field replaced by raw JSON text, so `"\\ud800"` reaches the node as the bytes a
hostile peer would send. Distinct clients are distinct `X-Forwarded-For` addresses sent through a
node that trusts loopback as its proxy (`PYBTC_TRUSTED_PROXIES`), as behind a reverse proxy.
Each test checks what the node answers (never a 5xx), what it keeps (`GET /nodes`: the peer
gone with its reason code in `dropped`, the table small) and that it goes on syncing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.service import test_bad_peers
from tests.service.ledgerutil import LedgerNode, free_port
from tests.service.stubpeers import StubPeer, build_chain
from tests.service.test_bad_peers import (
    NODE_SETTINGS,
    StartNode,
    StartStub,
    call,
    peers,
    register_quietly,
    resolve,
)

# The fixtures of test_bad_peers.py: one node and stub set-up for both files.
http = test_bad_peers.http
node = test_bad_peers.node
start_node = test_bad_peers.start_node
start_stub = test_bad_peers.start_stub

NODES_SMALL = 64 * 1024
"""GET /nodes of a full book (64 peers) with every value at its cap is well under this."""
LIE = "__lie__"


class LyingStub(StubPeer):
    """A stub whose /status, once armed, has `field` replaced by the raw JSON text `lie`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field = ""
        self.lie = ""

    def tell(self, field: str, lie: str) -> None:
        self.field, self.lie = field, lie
        self.arm()

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if not (self.armed and self.field):
            return await super()._status(request)
        self.requests.append((request.method, request.path_qs))
        if self.field == "*":
            raw = self.lie
        else:
            raw = json.dumps(self.status_body() | {self.field: LIE}).replace(f'"{LIE}"', self.lie)
        return web.Response(body=raw.encode(), content_type="application/json")


LIES: dict[str, tuple[str, str, str]] = {
    "height-2**63": ("height", str(2**63), "peer-bad-height"),
    "height-below-int64": ("height", str(-(2**63) - 1), "peer-bad-height"),
    "height-negative": ("height", "-1", "peer-bad-height"),
    "height-float": ("height", "6.0", "peer-bad-height"),
    "height-bool": ("height", "true", "peer-bad-height"),
    "height-string": ("height", '"6"', "peer-bad-height"),
    "height-implausible": ("height", "1000000", "peer-implausible-height"),
    "tip-surrogate": ("tip", '"\\ud800"', "peer-bad-hash"),
    "tip-surrogate-64": ("tip", '"\\udfff' + "a" * 63 + '"', "peer-bad-hash"),
    "tip-uppercase": ("tip", '"' + "AB" * 32 + '"', "peer-bad-hash"),
    "tip-20MB": ("tip", '"' + "a" * 20_000_000 + '"', "peer-too-large"),
    "tip-number": ("tip", "5", "peer-bad-hash"),
    "chain-work-not-hex": ("chain_work", '"zz"', "peer-bad-hash"),
    "node-id-10k": ("node_id", '"' + "x" * 10_000 + '"', "peer-bad-text"),
    "node-id-control": ("node_id", '"stub\\u0000\\n"', "peer-bad-text"),
    "network-surrogate": ("network", '"\\udfff"', "peer-bad-text"),
    "not-an-object": ("*", "[1, 2, 3]", "peer-bad-status"),
}
"""Each lie: the /status field, the raw JSON put there, and the reason the node records."""


async def nodes_text(http: aiohttp.ClientSession, node: LedgerNode) -> str:
    async with http.get(f"{node.url}/nodes") as resp:
        assert resp.status == 200
        return await resp.text()


async def dropped(http: aiohttp.ClientSession, node: LedgerNode) -> dict[str, dict[str, Any]]:
    """The node's latest drops and evictions, by URL (the last one of each)."""
    body = (await call(http, "GET", f"{node.url}/nodes")).body
    return {row["url"]: row for row in body["dropped"]}


@pytest.mark.parametrize("lie", list(LIES))
async def test_a_lying_status_penalises_the_peer_and_never_fails_a_sync(
    node: LedgerNode, start_stub: StartStub, http: aiohttp.ClientSession, lie: str
) -> None:
    """A registered stub (with a valid longer chain) lies in one /status field: /nodes/resolve
    answers 200 every time (with every peer, twice, and as an announcement from the liar), the
    liar is dropped with the lie's reason code, /nodes stays small, nothing of the lie is kept."""
    field, raw, reason = LIES[lie]
    stub = await start_stub(LyingStub(build_chain(6)))
    await register_quietly(http, node, stub)
    before = (await call(http, "GET", f"{node.url}/status")).body
    stub.tell(field, raw)
    for _ in range(2):  # a sync with every peer; then again, without the liar
        answer = await resolve(http, node)
        assert answer.body["message"] == "Our chain is authoritative", answer.body
    assert stub.url not in await peers(http, node)
    gone = (await dropped(http, node))[stub.url]
    assert gone["reason"] == reason, gone
    announced = await resolve(http, node, stub.url)
    assert announced.body.get("peer_error"), announced.body
    text = await nodes_text(http, node)
    assert len(text) < NODES_SMALL
    json.dumps(json.loads(text), ensure_ascii=False).encode()  # no lone surrogate kept
    assert "x" * 40 not in text
    after = (await call(http, "GET", f"{node.url}/status")).body
    assert (after["tip"], after["height"]) == (before["tip"], before["height"])


@pytest.mark.parametrize("lie", ["height-2**63", "tip-20MB", "node-id-10k", "tip-surrogate"])
async def test_a_lying_status_is_refused_at_the_handshake(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession, lie: str
) -> None:
    """A stub lying from the start is refused by POST /nodes/register (400
    peer-handshake-failed), never added."""
    node = await start_node()
    field, raw, _ = LIES[lie]
    stub = await start_stub(LyingStub(build_chain(3)))
    stub.tell(field, raw)
    answer = await call(http, "POST", f"{node.url}/nodes/register", json={"nodes": stub.url})
    assert (answer.status, answer.body["reason"]) == (400, "peer-handshake-failed"), answer.body
    assert await peers(http, node) == {}


async def test_the_periodic_sync_survives_a_lying_peer(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """With a 0.3 s sync interval, a peer whose /status says height 2**63 is dropped by the
    periodic sync, which goes on asking the honest peer next to it."""
    node = await start_node(sync_interval=0.3)
    honest = await start_stub(StubPeer())
    liar = await start_stub(LyingStub(build_chain(6)))
    await register_quietly(http, node, honest)
    await register_quietly(http, node, liar)
    liar.tell("height", str(2**63))
    await wait_for(lambda: liar_gone(http, node, liar.url), "the liar to be dropped")
    asked = honest.count("GET", "/status")
    await wait_for(
        lambda: _true(honest.count("GET", "/status") >= asked + 3), "the periodic sync to go on"
    )
    assert (await dropped(http, node))[liar.url]["reason"] == "peer-bad-height"


async def liar_gone(http: aiohttp.ClientSession, node: LedgerNode, url: str) -> bool:
    return url in await dropped(http, node)


async def _true(value: bool) -> bool:
    return value


async def wait_for(check: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"waited {seconds:.0f}s for {what}")


def test_an_old_peers_table_is_migrated_and_cleaned(tmp_path: Path) -> None:
    """A database from before the checks (the first peers schema, a 1 MB tip, a negative
    height, a 10,000-character error) opens with the new columns and without those values."""
    from services.node.peers import PeerBook
    from services.node.store import Store

    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE peers (url TEXT PRIMARY KEY, added_at INTEGER NOT NULL, last_ok INTEGER, "
        "failures INTEGER NOT NULL, last_error TEXT, height INTEGER, tip TEXT);"
    )
    db.execute(
        "INSERT INTO peers VALUES ('http://127.0.0.1:5001', 1, 2, 0, ?, -5, ?)",
        ("e" * 10_000, "f" * 1_000_000),
    )
    db.commit()
    db.close()
    store = Store(path)
    try:
        (row,) = PeerBook(store).describe()
        assert (row["tip"], row["height"], len(row["last_error"])) == (None, None, 300)
        assert (row["delivered"], row["last_delivered"], row["last_reason"]) == (0, None, None)
        PeerBook(store)  # opening it again changes nothing
    finally:
        store.close()


# -- the peer book -------------------------------------------------------------------------------

ATTACKER = "198.51.100.66"
HONEST = "203.0.113.5"
BOOK_SETTINGS: dict[str, Any] = {"trusted_proxies": "127.0.0.1", "peer_timeout": 3.0}


async def register_as(
    http: aiohttp.ClientSession, node: LedgerNode, nodes: Any, client: str | None = None
) -> tuple[int, dict[str, Any], Any]:
    """POST /nodes/register from `client` (an X-Forwarded-For through the trusted proxy)."""
    headers = {"X-Forwarded-For": client} if client else {}
    async with http.post(
        f"{node.url}/nodes/register", json={"nodes": nodes}, headers=headers
    ) as resp:
        assert resp.status < 500, await resp.text()
        return resp.status, await resp.json(), resp.headers


async def wait_tip(http: aiohttp.ClientSession, node: LedgerNode, tip: str) -> None:
    async def there() -> bool:
        return bool((await call(http, "GET", f"{node.url}/status")).body["tip"] == tip)

    await wait_for(there, f"the node's tip to be {tip[:16]}")


async def test_one_client_cannot_fill_the_book(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """One client registers 70 fakes — 66 stubs that pass the handshake (half of them then
    never answer again) and 4 closed ports — into a book of 64 (its quota raised, to see the
    book alone). An honest peer registered by another client is added, not refused
    `peer-limit`, and synced from; ten more fakes then evict fakes, never the honest peer."""
    node = await start_node(**BOOK_SETTINGS, peer_register_burst=200)
    fakes = [await start_stub(StubPeer()) for _ in range(66)]
    closed = [f"http://127.0.0.1:{free_port()}" for _ in range(4)]
    for i, url in enumerate([s.url for s in fakes[:40]] + closed + [s.url for s in fakes[40:]]):
        status, body, _ = await register_as(http, node, url, ATTACKER)
        assert status == (400 if url in closed else 201), (i, body)
    book = await peers(http, node)
    assert len(book) == 64
    assert fakes[0].url not in book  # the attacker's own oldest
    assert fakes[1].url not in book
    silent = {s.url for s in fakes[2::2]}
    for stub in fakes[2::2]:
        await stub.stop()
    await resolve(http, node)  # a health check: the silent fakes count a failure (and stay)
    chain = build_chain(6)
    honest = await start_stub(StubPeer(chain, armed=True))
    status, body, _ = await register_as(http, node, honest.url, HONEST)
    assert (status, body["added"]) == (201, [honest.url]), body
    await wait_tip(http, node, chain[-1].hash)
    more = [await start_stub(StubPeer()) for _ in range(10)]
    for stub in more:
        status, body, _ = await register_as(http, node, stub.url, ATTACKER)
        assert status == 201, body
    book = await peers(http, node)
    assert len(book) == 64
    assert honest.url in book
    assert book[honest.url]["delivered"] == 5, book[honest.url]
    evicted = [
        url for url, row in (await dropped(http, node)).items() if row["reason"] == "evicted"
    ]
    assert evicted[:2] == [fakes[0].url, fakes[1].url]
    assert len(evicted) == 2 + 1 + 10
    assert len(await nodes_text(http, node)) < NODES_SMALL
    assert set(evicted[2:]) <= silent  # those that stopped answering go first


async def test_peers_that_delivered_blocks_are_protected(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """In a book of 4, two peers that delivered blocks (one added by the attacker itself) and a
    configured peer stay whatever the attacker registers; once every slot is protected, a
    newcomer is refused `peer-limit`."""
    configured = await start_stub(StubPeer())
    node = await start_node(**BOOK_SETTINGS, max_peers=4, peers=configured.url)
    await wait_for(lambda: has_peer(http, node, configured.url), "the configured peer")
    first, second = build_chain(5), build_chain(7)
    deliverers = [
        await start_stub(StubPeer(first, armed=True)),
        await start_stub(StubPeer(second, armed=True)),
    ]
    status, body, _ = await register_as(http, node, deliverers[0].url, HONEST)
    assert status == 201, body
    await wait_tip(http, node, first[-1].hash)
    status, body, _ = await register_as(http, node, deliverers[1].url, ATTACKER)
    assert status == 201, body
    await wait_tip(http, node, second[-1].hash)
    fakes = [await start_stub(StubPeer()) for _ in range(5)]
    for stub in fakes:
        status, body, _ = await register_as(http, node, stub.url, ATTACKER)
        assert status == 201, body
    book = await peers(http, node)
    assert set(book) == {configured.url, *(d.url for d in deliverers), fakes[-1].url}
    configured_row = book[configured.url]
    assert configured_row["delivered"] == 0
    # Now fill the last slot with a third deliverer: every slot is protected.
    third = build_chain(9)
    deliverer = await start_stub(StubPeer(third, armed=True))
    status, body, _ = await register_as(http, node, deliverer.url, HONEST)
    assert status == 201, body
    await wait_tip(http, node, third[-1].hash)
    late = await start_stub(StubPeer())
    status, body, _ = await register_as(http, node, late.url, ATTACKER)
    assert (status, body["reason"]) == (400, "peer-limit"), body
    assert set(await peers(http, node)) == {
        configured.url,
        *(d.url for d in [*deliverers, deliverer]),
    }


async def has_peer(http: aiohttp.ClientSession, node: LedgerNode, url: str) -> bool:
    return url in await peers(http, node)


async def test_the_registration_quota_stops_a_flood(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """With the default quota (bursts of 32 new URLs), one client (loopback, as in the attack)
    registering 71 new URLs one by one is answered 429 `register-rate-limited` with Retry-After
    from the 33rd on, and its URLs are not contacted; another client is not held back."""
    # 31 handshakes at once below: a generous timeout, the machine may be busy
    node = await start_node(trusted_proxies="127.0.0.1", peer_timeout=10.0)
    stubs = [await start_stub(StubPeer()) for _ in range(39)]
    closed = [f"http://127.0.0.1:{free_port()}" for _ in range(32)]  # the stubs' are taken
    answers = [await register_as(http, node, url) for url in closed + [s.url for s in stubs]]
    statuses = [a[0] for a in answers]
    assert statuses[:32] == [400] * 32, statuses
    assert statuses.count(429) >= 35, statuses  # a token comes back every 10 s
    _, body, headers = answers[-1]
    assert body["reason"] == "register-rate-limited", body
    assert int(headers["Retry-After"]) >= 1
    assert "PYBTC_PEER_REGISTER_RATE" in body["error"]
    limited = [s for s, a in zip(stubs, answers[32:], strict=True) if a[0] == 429]
    assert all(s.requests == [] for s in limited)
    stubs = [s for s in stubs if s in limited]
    status, body, _ = await register_as(http, node, stubs[0].url, HONEST)
    assert (status, body["added"]) == (201, [stubs[0].url]), body
    # A batch holding more new URLs than are left: those past the quota are rejected by name.
    status, body, _ = await register_as(http, node, [s.url for s in stubs[1:]], HONEST)
    assert status == 201, body
    assert 31 <= len(body["added"]) <= 32, body  # 31 left, and one more every 10 s
    assert {r["reason"] for r in body["rejected"]} == {"register-rate-limited"}, body
    assert len(body["added"]) + len(body["rejected"]) == len(stubs) - 1


async def test_the_operator_is_not_held_to_the_quota(
    start_node: StartNode, http: aiohttp.ClientSession
) -> None:
    """With an operator token set only the operator can register, and its registrations are not
    counted: 40 new URLs are each tried (400 peer-unreachable), none refused 429."""
    node = await start_node(operator_token="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    for _ in range(40):
        url = f"http://127.0.0.1:{free_port()}"
        async with http.post(
            f"{node.url}/nodes/register", json={"nodes": url}, headers=bearer
        ) as resp:
            assert (resp.status, (await resp.json())["reason"]) == (400, "peer-unreachable")


async def test_nine_nodes_registering_as_pybtc_up_does_never_meet_the_quota(
    tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Nine ledgers on loopback, each configured with the first (as `pybtc up --nodes 9` runs
    them), with the default quota: registration, register-back and passing-on make every node
    a peer of every other, and no registration is refused 429."""
    settings = NODE_SETTINGS | {"peer_timeout": 5.0}  # the machine may be busy
    first = LedgerNode(tmp_path / "n0", **settings)
    others = [LedgerNode(tmp_path / f"n{k}", **settings, peers=first.url) for k in range(1, 9)]
    nodes = [first, *others]
    with caplog.at_level(logging.INFO, logger="services.node.network"):
        try:
            for each in nodes:
                await each.start()

            async def meshed() -> bool:
                for each in nodes:
                    if len(await peers(http, each)) < len(nodes) - 1:
                        return False
                return True

            await wait_for(meshed, "every node to be a peer of every other", seconds=60)
        finally:
            for each in nodes:
                await each.stop()
    refused = [r.getMessage() for r in caplog.records if "HTTP 429" in r.getMessage()]
    assert refused == []


@pytest.mark.parametrize(
    "url", ["http://ex\x00ample:5000", "ex\u200bample:5000", "http://a\x7fb:1", "http://a\u2028b:1"]
)
def test_a_peer_url_with_control_characters_is_refused(url: str) -> None:
    """A host with a control or invisible character (from a registration or a bus message) is
    a bad-peer-url before it is resolved, stored or written to a log line."""
    from services.common.web import ServiceError
    from services.node.peers import normalize_peer_url

    with pytest.raises(ServiceError) as refused:
        normalize_peer_url(url)
    assert refused.value.reason == "bad-peer-url"
