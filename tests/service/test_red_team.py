"""What a second attack on the issue 16 defences found, each hole as a test of the fix.

How: real regtest ledgers on loopback (`LedgerNode`, the fixtures of `test_bad_peers.py`), the
clients told apart by `X-Forwarded-For` through a trusted proxy (127.0.0.1), as in
`test_hostile_peers.py`: that is how a node behind a reverse proxy sees the Internet.

- One IPv6 client is its /64: a machine on the Internet is handed a /64 (at least) and may send
  from any address in it, so quotas counted per address gave it 2**64 fresh ones (the
  registration quota, the announcement quota, the bad-block quota, the request limits, the
  faucet, and the peer book's count of peers per client). Likewise every loopback address is the
  one machine: a program on it can send from any address of 127.0.0.0/8.
- Unreachable is no fault, on every path: announcements naming a peer are not limited (an
  honest peer announces each of its blocks), and each one's failed sync counted as a wrong
  answer, so anyone could make a node forget a peer that was down for a restart, even one that
  had delivered its blocks (and was protected from eviction).
- Bad blocks cost their sender the same whichever way they come: a client announcing nodes
  that are not peers, each serving a fresh invalid block (a fresh 0.9 MB one each time cost
  the ledger 0.4 s of CPU, and /status waited up to 3.7 s), had only the announcement quota
  (bursts of 20) where /mining/submit would have refused it after two; registering such
  nodes as peers had only the registration quota (bursts of 32).
- Blocks found invalid when connected (on the tip: an unfunded transfer is checked only then)
  were stored for good, about 0.93 MB each for 1,999 transfers: 28 of them made a database
  of 4 MB weigh 31 MB. Now only the last few are kept. The reorg log had no bound either.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from pybtc import REGTEST
from pybtc.mining import build_block
from services.common.limits import client_of
from services.node.sidebranches import INVALID_KEPT
from services.node.store import REORGS_KEPT, Store
from tests.service import test_bad_peers
from tests.service.ledgerutil import LedgerNode, free_port
from tests.service.stubpeers import StubPeer, build_chain, overpaying_coinbase
from tests.service.test_bad_peers import NODE_SETTINGS, StartNode, StartStub, peers
from tests.service.test_block_refusals import (
    MINER,
    _mined,
    ledger_of,
    post,
    tip,
    unfunded_transfers,
)
from tests.service.test_hostile_peers import ATTACKER, HONEST, register_as, wait_for, wait_tip

http = test_bad_peers.http
start_node = test_bad_peers.start_node
start_stub = test_bad_peers.start_stub

PROXIED = {"trusted_proxies": "127.0.0.1", "peer_timeout": 3.0}


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::1", "loopback"),
        ("127.0.0.1", "loopback"),
        ("127.45.0.9", "loopback"),
        ("::ffff:127.0.0.2", "loopback"),
        ("::2", "::/64"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(address: str, client: str) -> None:
    assert client_of(ipaddress.ip_address(address)) == client


async def test_one_ipv6_client_cannot_escape_the_registration_quota(
    start_node: StartNode, http: aiohttp.ClientSession
) -> None:
    """34 new peer URLs registered from 34 addresses of one /64: the 33rd on are 429
    `register-rate-limited` (the burst is 32), as from one address; another /64 is not held
    back, and an IPv4 client seen through a dual-stack socket is the same IPv4 client."""
    node = await start_node(**PROXIED)
    statuses = []
    for i in range(34):
        url = f"http://127.0.0.1:{free_port()}"  # closed: refused, but the quota is taken
        status, body, _ = await register_as(http, node, url, f"2001:db8:1:2::{i + 1:x}")
        statuses.append((status, body.get("reason")))
    assert [s for s, _ in statuses[:32]] == [400] * 32, statuses
    assert statuses[32:] == [(429, "register-rate-limited")] * 2, statuses
    status, body, _ = await register_as(
        http, node, f"http://127.0.0.1:{free_port()}", "2001:db8:1:3::1"
    )
    assert status == 400, body
    assert body["reason"] != "register-rate-limited", body
    for _ in range(32):
        status, body, _ = await register_as(
            http, node, f"http://127.0.0.1:{free_port()}", "198.51.100.7"
        )
        assert status == 400, body
    status, body, _ = await register_as(
        http, node, f"http://127.0.0.1:{free_port()}", "::ffff:198.51.100.7"
    )
    assert (status, body["reason"]) == (429, "register-rate-limited"), body


async def test_a_program_on_the_machine_is_one_client_whatever_its_loopback_address(
    start_node: StartNode, http: aiohttp.ClientSession
) -> None:
    """34 new peer URLs registered from 34 source addresses of 127.0.0.0/8 (a real socket
    bound to each): the 33rd on are 429 `register-rate-limited`, as from 127.0.0.1 alone."""
    node = await start_node(peer_timeout=3.0)
    statuses = []
    for i in range(34):
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{i + 2}", 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"{node.url}/nodes/register", json={"nodes": f"http://127.0.0.1:{free_port()}"}
            ) as resp,
        ):
            statuses.append((resp.status, (await resp.json())["reason"]))
    assert [s for s, _ in statuses[:32]] == [400] * 32, statuses
    assert statuses[32:] == [(429, "register-rate-limited")] * 2, statuses


async def test_announcing_a_peer_that_is_down_does_not_make_the_node_forget_it(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """A peer that delivered blocks goes down (a restart). Another client announces it twice
    PYBTC_PEER_MAX_FAILURES times: each announcement's sync fails (`peer_error`), and the peer
    stays in the book with what it delivered, as after a round's health check."""
    node = await start_node(**PROXIED)
    chain = build_chain(5)
    honest = await start_stub(StubPeer(chain, armed=True))
    status, body, _ = await register_as(http, node, honest.url, HONEST)
    assert (status, body["added"]) == (201, [honest.url]), body
    await wait_tip(http, node, chain[-1].hash)
    await honest.stop()
    for _ in range(2 * NODE_SETTINGS["peer_max_failures"]):
        async with http.get(
            f"{node.url}/nodes/resolve",
            params={"miner_node": honest.url},
            headers={"X-Forwarded-For": ATTACKER},
        ) as resp:
            answer = await resp.json()
        assert resp.status == 200, answer
        assert "peer_error" in answer, answer
    book = await peers(http, node)
    assert honest.url in book, book
    assert book[honest.url]["delivered"] == len(chain) - 1, book[honest.url]
    assert book[honest.url]["last_reason"] == "peer-unreachable", book[honest.url]


async def announce_as(
    http: aiohttp.ClientSession, node: LedgerNode, url: str, client: str
) -> tuple[int, dict[str, Any]]:
    """GET /nodes/resolve?miner_node=`url` from `client` (through the trusted proxy)."""
    async with http.get(
        f"{node.url}/nodes/resolve",
        params={"miner_node": url},
        headers={"X-Forwarded-For": client},
    ) as resp:
        assert resp.status < 500, await resp.text()
        return resp.status, await resp.json()


async def test_announcing_strangers_with_bad_blocks_meets_the_bad_block_quota(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """One client announces 20 nodes that are not peers (within its announcement burst), each
    serving a fresh invalid block (a coinbase paying one unit too much) on a chain claiming
    more work. The first two are fetched and refused, as two refused full-size blocks at
    /mining/submit would be counted (PYBTC_BAD_BLOCK_BURST 20, 11 each); the others are 429
    `too-many-bad-blocks` and never contacted. Another client's stranger is still synced."""
    node = await start_node(**PROXIED)
    liars = [
        await start_stub(
            StubPeer(build_chain(3, spacing=60 + i, tamper={2: overpaying_coinbase}), armed=True)
        )
        for i in range(20)
    ]
    answers = [await announce_as(http, node, liar.url, ATTACKER) for liar in liars]
    assert [a[0] for a in answers[:2]] == [200, 200], answers[:2]
    assert all("peer_error" in body for _, body in answers[:2]), answers[:2]
    assert [a for a in answers[2:] if a[0] != 429] == [], answers
    assert {body["reason"] for _, body in answers[2:]} == {"too-many-bad-blocks"}, answers
    assert [liar.requests for liar in liars[2:]] == [[]] * 18
    chain = build_chain(4)
    honest = await start_stub(StubPeer(chain, armed=True))
    status, body = await announce_as(http, node, honest.url, HONEST)
    assert (status, body["length"]) == (200, len(chain)), body


async def test_registering_peers_with_bad_blocks_meets_the_bad_block_quota(
    start_node: StartNode, start_stub: StartStub, http: aiohttp.ClientSession
) -> None:
    """One client registers, one by one, nodes that pass the handshake and then serve a fresh
    invalid block: each is synced from, refused and dropped. After two, that client's
    registrations of new URLs are 429 `too-many-bad-blocks` and the liars are not contacted;
    another client's registration is not held back."""
    node = await start_node(**PROXIED)
    liars = [
        await start_stub(
            StubPeer(build_chain(3, spacing=60 + i, tamper={2: overpaying_coinbase}), armed=True)
        )
        for i in range(6)
    ]
    statuses = []
    for liar in liars:
        status, body, _ = await register_as(http, node, liar.url, ATTACKER)
        statuses.append((status, body.get("reason")))
        if status == 201:
            await wait_for(
                lambda url=liar.url: dropped_now(http, node, url), "the liar to be dropped"
            )
    assert [s for s, _ in statuses[:2]] == [201, 201], statuses
    assert statuses[2:] == [(429, "too-many-bad-blocks")] * 4, statuses
    assert [liar.requests for liar in liars[2:]] == [[]] * 4
    honest = await start_stub(StubPeer())
    status, body, _ = await register_as(http, node, honest.url, HONEST)
    assert (status, body["added"]) == (201, [honest.url]), body


async def dropped_now(http: aiohttp.ClientSession, node: LedgerNode, url: str) -> bool:
    async with http.get(f"{node.url}/nodes") as resp:
        body = await resp.json()
    return any(row["url"] == url for row in body["dropped"])


# -- blocks found invalid when connected ---------------------------------------------------------


async def test_blocks_found_invalid_on_the_tip_are_not_kept_without_bound(
    ledger_client: TestClient,
) -> None:
    """18 blocks on the tip, each paying transfers their senders cannot pay (a rule checked
    only when the block is connected, so each was stored first): every one is refused
    `insufficient-funds`, and only the last INVALID_KEPT stay stored (each could be a
    megabyte, and the tip, standing still, never prunes them by depth). The first one sent
    again is refused from memory and not stored again."""
    parent = await tip(ledger_client)
    blocks = [
        _mined(
            build_block(
                REGTEST,
                parent,
                bits=parent.bits,
                transactions=unfunded_transfers(5),
                miner_address=MINER.address,
                timestamp=parent.timestamp + 1 + i,
            )
        )
        for i in range(INVALID_KEPT + 2)  # within the bad-block burst (20), the resend too
    ]
    for block in blocks:
        status, body = await post(ledger_client, block)
        assert (status, body["reason"]) == (400, "insufficient-funds"), body
    stored = [(await ledger_client.get(f"/blocks/{b.hash}")).status for b in blocks]
    assert stored == [404] * 2 + [200] * INVALID_KEPT, stored
    status, body = await post(ledger_client, blocks[0])
    assert (status, body["reason"]) == (400, "insufficient-funds"), body
    assert (await ledger_client.get(f"/blocks/{blocks[0].hash}")).status == 404
    assert ledger_of(ledger_client).store.invalid_blocks() == [b.hash for b in blocks[2:]]


def test_the_reorg_log_is_bounded(tmp_path: Path) -> None:
    """Two branches taking the tip in turn, each one block ahead (next to free on regtest), log
    a reorg each time: the ledger's SQLite keeps the last REORGS_KEPT, newest first."""
    store = Store(tmp_path / "ledger.sqlite3")
    try:
        with store.transaction():
            for i in range(REORGS_KEPT + 3):
                store.log_reorg(i, 1, 1, f"{i:064x}", f"{i + 1:064x}", [], [])
        assert store.db.execute("SELECT COUNT(*) FROM reorgs").fetchone()[0] == REORGS_KEPT
        assert [r["at"] for r in store.reorgs(2)] == [REORGS_KEPT + 2, REORGS_KEPT + 1]
    finally:
        store.close()
