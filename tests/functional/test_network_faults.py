"""Faults in a small network: a partition, a ledger killed with kill -9, Redis killed, a liar.

Every node is real processes on loopback (`python -m services.node`, with
`python -m services.miner` where the bus matters), driven over HTTP; waits use `sync_blocks` /
`sync_mempools`, which fail listing every node's height, tip, mempool and peers.

- `test_partition_heals_to_most_work`: three ledgers that gossip over HTTP only, each reached
  through a proxy the test owns (`netproxy.Switchboard`), are cut 1 + 2. Both sides mine, the
  pair more; a transfer is confirmed only on the single node's side, another only on the
  pair's. Healed, every node reorgs to the pair's chain, the single node's transfer is back in
  every mempool, and one more block confirms it: no acknowledged transfer is lost.
- `test_partition_longer_than_peer_max_failures_heals`: two ledgers cut for longer than
  PYBTC_PEER_MAX_FAILURES sync rounds (the default 5); healed, they must converge again.
- `test_kill9_ledger_rejoins_and_catches_up`: a ledger killed with SIGKILL while its peer mines
  restarts on the same data, rejoins, catches up, and still holds the transfer it had accepted.
- `test_redis_restart_under_load`: nodes (ledger + miner) on one Redis, with a loop posting
  signed transfers and mining; redis-server is SIGKILLed and started again on its port. The
  ledgers report degraded and then ok, every acknowledged transfer is kept, the nodes converge
  again on tips and mempools, and each node's `GET /mine` works again. Twice: with the nodes
  also registered over HTTP (as `pybtc up --nodes N` runs them), and with the bus alone.
- `test_redis_outage_seen_by_every_service`: one whole node (ledger, miner, explorer, wallet);
  while Redis is down `GET /mine` still mines (it asks the miner over HTTP), and every
  service's `/healthz` shows the bus degraded, then ok once Redis is back.
- `test_a_lying_peer_does_not_stall_two_honest_nodes`: a stub registered with one of two real
  ledgers (registration spreads it to the other) claims the most work and then never answers
  its headers; the honest pair keeps converging on blocks and transfers, and both drop it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybtc import COIN, Block, PrivateKey, Transaction
from pybtc.mining import mine_block
from tests.chainutil import test_key
from tests.functional.conftest import (
    ChildProcesses,
    KillableRedis,
    LedgerProcess,
    child_env,
    free_port,
    get_json,
    http,
    mine,
    send,
    wait_for,
)
from tests.functional.netproxy import Front, LoopThread, Switchboard
from tests.functional.p2p import (
    assert_same_balances,
    connect_nodes,
    describe,
    healthz,
    mempool_txids,
    mine_empty,
    mine_on_demand,
    name,
    peer_urls,
    start_ledgers,
    start_node,
    status,
    sync_blocks,
    sync_mempools,
    sync_peers,
    tx_view,
    wait_until,
)
from tests.service.stubpeers import Bad, StubPeer
from tests.service.stubpeers import build_chain as stub_chain

logger = logging.getLogger(__name__)

MINER, ALICE, BOB, CAROL = (test_key(i) for i in range(4))
SINK = test_key(5)
"""Only receives (the load's transfers)."""
PEER_MAX_FAILURES = 5
"""PYBTC_PEER_MAX_FAILURES's default."""


# -- partitions ------------------------------------------------------------------------------


def register(node: LedgerProcess, url: str) -> None:
    """The tutorial's `POST /nodes/register {"nodes": url}` at `node`; it must add `url`."""
    reply = http("POST", f"{node.url}/nodes/register", json_body={"nodes": url})
    assert reply.status == 201, f"register {url} at {name(node)}: {reply.status} {reply.text}"
    assert reply.json()["added"] == [url], reply.text


def start_behind_proxies(
    children: ChildProcesses,
    tmp_path: Path,
    board: Switchboard,
    count: int,
    env: dict[str, str],
) -> tuple[list[LedgerProcess], dict[str, Front]]:
    """`count` ledgers without Redis, each publishing its proxy's URL as its own."""
    nodes, fronts = [], {}
    for i in range(count):
        node = LedgerProcess(children, tmp_path / f"node{i}", extra_env=env)
        front = board.front(name(node), node.port)
        node.extra_env["PYBTC_PUBLIC_URL"] = front.url
        node.start()
        assert node.proc is not None
        board.identify(name(node), node.proc.pid)
        nodes.append(node)
        fronts[name(node)] = front
    return nodes, fronts


def test_partition_heals_to_most_work(children: ChildProcesses, tmp_path: Path) -> None:
    """Split 1 + 2, both sides mine and confirm a transfer, heal: the most work wins everywhere
    and the losing side's transfer is re-queued, relayed and confirmed again.

    PYBTC_SYNC_INTERVAL=1 so that, once healed, the single node catches up within a second by
    its periodic sync (nothing else would tell it: the pair mines nothing after the heal), and
    PYBTC_PEER_MAX_FAILURES is high so that this test is about the reorg alone (forgetting
    peers during a long cut is the next test's subject).
    """
    env = {"PYBTC_SYNC_INTERVAL": "1", "PYBTC_PEER_MAX_FAILURES": "1000"}
    with Switchboard() as board:
        nodes, fronts = start_behind_proxies(children, tmp_path, board, 3, env)
        node0, node1, node2 = nodes

        logger.info("register node0 and node2 with node1: a full mesh, through the proxies")
        for node in (node0, node2):
            register(node1, fronts[name(node)].url)
        sync_peers(nodes, lambda n: fronts[name(n)].url)

        logger.info("common prefix: node0 mines 2 blocks paying MINER")
        mine(node0.url, MINER.address, 2)
        fork = sync_blocks(nodes)

        logger.info("split: node0 | node1 + node2")
        board.split(["node0"], ["node1", "node2"])

        logger.info("node0 (the losing side) confirms MINER -> ALICE in a 2-block branch")
        lost_tx = send(node0.url, MINER, ALICE.address, 3 * COIN)
        branch0 = mine(node0.url, BOB.address, 2)
        assert lost_tx.txid in {t.txid for t in branch0[0].transactions}

        logger.info("node1 and node2 (the winning side) mine 3 blocks; CAROL pays BOB on it")
        mine(node1.url, CAROL.address)
        sync_blocks([node1, node2])
        won_tx = send(node2.url, CAROL, BOB.address, 2 * COIN)
        sync_mempools([node1, node2])
        mine(node2.url, CAROL.address)
        sync_blocks([node1, node2])
        branch1 = mine(node1.url, CAROL.address)
        pair = sync_blocks([node1, node2])
        assert pair["height"] == fork["height"] + 3

        logger.info("the cut is real: neither side heard of the other's blocks or transfers")
        assert status(node0)["tip"] == branch0[-1].hash
        assert tx_view(node0, lost_tx.txid)["status"] == "confirmed"
        for node in (node1, node2):
            assert http("GET", f"{node.url}/blocks/{branch0[-1].hash}").status == 404
            assert lost_tx.txid not in mempool_txids(node)
        refused = sum(n for (a, b), n in board.refused.items() if "node0" in (a, b))
        logger.info("connections refused across the cut: %d", refused)
        assert refused > 0, f"nobody tried to cross the cut: {board.refused}"

        logger.info("heal: every node must reorg to the pair's chain (the most work)")
        board.join()
        best = sync_blocks(nodes, timeout=30)
        assert best["tip"] == branch1[-1].hash
        reorgs = get_json(f"{node0.url}/reorgs")["reorgs"]
        assert [(r["depth"], r["requeued"]) for r in reorgs] == [(2, [lost_tx.txid])], reorgs

        logger.info("the losing side's transfer is pending again, on every node")
        assert sync_mempools(nodes, timeout=30) == {lost_tx.txid}

        logger.info("one more block on the winning side confirms it; nothing acknowledged is lost")
        confirming = mine(node2.url, CAROL.address)[0]
        assert lost_tx.txid in {t.txid for t in confirming.transactions}
        assert sync_blocks(nodes)["tip"] == confirming.hash
        assert sync_mempools(nodes) == set()
        for tx in (lost_tx, won_tx):
            for node in nodes:
                assert tx_view(node, tx.txid)["status"] == "confirmed", (name(node), tx.txid)
        agreed = assert_same_balances(nodes, [a.address for a in (MINER, ALICE, BOB, CAROL)])
        assert agreed[ALICE.address][0] == 3 * COIN
        assert agreed[BOB.address][0] == 2 * COIN  # branch0's rewards to BOB were undone
        assert "?" not in {client for client, _ in board.forwarded}, board.forwarded
        logger.info("%s", describe(nodes))


def test_partition_longer_than_peer_max_failures_heals(
    children: ChildProcesses, tmp_path: Path
) -> None:
    """Two ledgers cut for longer than PYBTC_PEER_MAX_FAILURES (default 5) sync rounds must
    still converge once the cut heals.

    Each sync round (PYBTC_SYNC_INTERVAL=1) reads the other's /status through the cut and
    counts a failure. The test waits until each node has failed to reach the other at least
    PEER_MAX_FAILURES times (seen in `GET /nodes`; a node that dropped the other counts too),
    heals the cut, and expects node0 to catch up with node1's longer branch.
    """
    env = {"PYBTC_SYNC_INTERVAL": "1"}
    with Switchboard() as board:
        nodes, fronts = start_behind_proxies(children, tmp_path, board, 2, env)
        node0, node1 = nodes
        register(node1, fronts["node0"].url)
        sync_peers(nodes, lambda n: fronts[name(n)].url)
        mine(node0.url, MINER.address)
        sync_blocks(nodes)

        logger.info("split node0 | node1; node1 mines 2 blocks, node0 one")
        board.split(["node0"], ["node1"])
        mine(node1.url, CAROL.address, 2)
        mine(node0.url, BOB.address)

        def failed_enough(node: LedgerProcess, other: LedgerProcess) -> bool:
            peers = {p["url"]: p for p in get_json(f"{node.url}/nodes")["peers"]}
            peer = peers.get(fronts[name(other)].url)
            return peer is None or peer["failures"] >= PEER_MAX_FAILURES

        wait_until(
            lambda: failed_enough(node0, node1) and failed_enough(node1, node0),
            nodes,
            f"{PEER_MAX_FAILURES} failed contacts each way",
            timeout=30,
        )
        logger.info("after %d failed contacts each way:\n%s", PEER_MAX_FAILURES, describe(nodes))

        logger.info("heal: node0 must catch up with node1's longer branch")
        board.join()
        best = sync_blocks(nodes, timeout=20)
        assert best["height"] == 4


# -- a ledger killed with kill -9 ------------------------------------------------------------


def test_kill9_ledger_rejoins_and_catches_up(children: ChildProcesses, tmp_path: Path) -> None:
    """node1, killed with SIGKILL while node0 mines on, restarts on the same data and port:
    it still knows node0, catches up with the blocks it missed, still holds the transfer it
    had accepted, and its next block reaches node0.

    The two ledgers gossip over HTTP only. node0 mines empty blocks while node1 is down (a miner
    may leave the mempool alone), so the transfer stays pending everywhere and node1's mempool
    is what the kill could have lost.
    """
    nodes = start_ledgers(children, tmp_path, 2)
    node0, node1 = nodes
    connect_nodes(node0, node1)
    sync_peers(nodes)
    mine(node0.url, MINER.address, 2)
    sync_blocks(nodes)

    logger.info("node1 accepts a transfer; it reaches node0")
    tx = send(node1.url, MINER, ALICE.address, 4 * COIN)
    assert sync_mempools(nodes) == {tx.txid}

    logger.info("kill -9 node1; node0 mines 10 empty blocks meanwhile")
    assert node1.kill() == -signal.SIGKILL
    missed = mine_empty(node0, BOB.address, 10)
    assert tx_view(node0, tx.txid)["status"] == "pending"

    logger.info("restart node1 on the same data: it must rejoin and catch up by itself")
    node1.start()
    assert sync_blocks(nodes, timeout=30)["tip"] == missed[-1].hash
    caught_up = f"sync peer={node0.url} fork_height=3 headers=10 missing=10"
    assert caught_up in node1.log_path.read_text(), "node1 did not sync what it missed"
    assert peer_urls(node1) == {node0.url}
    assert peer_urls(node0) == {node1.url}

    logger.info("its mempool survived the kill")
    assert tx_view(node1, tx.txid)["status"] == "pending"
    assert sync_mempools(nodes) == {tx.txid}

    logger.info("node1 mines the transfer; node0 adopts the block")
    mined = mine(node1.url, CAROL.address)[0]
    assert tx.txid in {t.txid for t in mined.transactions}
    assert sync_blocks(nodes)["tip"] == mined.hash
    assert sync_mempools(nodes) == set()
    assert assert_same_balances(nodes, [ALICE.address])[ALICE.address][0] == 4 * COIN


# -- Redis killed and restarted --------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[KillableRedis]:
    redis = KillableRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class Load:
    """A thread posting signed transfers to the nodes in turn, mining a block every few, until
    stopped; each sender key only ever posts to one node, so nonces never race. Records every
    transfer answered 201; any other answer is an error the test reports."""

    def __init__(self, nodes: list[LedgerProcess], senders: list[PrivateKey]) -> None:
        assert len(senders) % len(nodes) == 0, "sender i posts to node i % len(nodes) only"
        self.nodes = nodes
        self.senders = senders
        self.acked: dict[str, Transaction] = {}
        self.blocks = 0
        self.errors: list[str] = []
        self.running = threading.Event()
        self.idle = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self.running.set()
        self.thread.start()

    def pause(self) -> None:
        """Stop after the step in progress, and wait for it."""
        self.running.clear()
        assert self.idle.wait(30), "the load loop hung"

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.stopping.set()
        self.running.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the load loop hung"
        assert not self.errors, f"the ledgers refused or failed under load: {self.errors[:5]}"
        logger.info("load: %d transfers acknowledged, %d blocks", len(self.acked), self.blocks)

    def _run(self) -> None:
        step = 0
        while not self.stopping.is_set():
            if not self.running.is_set():
                self.idle.set()
                self.running.wait()
                self.idle.clear()
                continue
            node = self.nodes[step % len(self.nodes)]
            key = self.senders[step % len(self.senders)]
            try:
                tx = send(node.url, key, SINK.address, 1_000 + step)
                self.acked[tx.txid] = tx
                if step % 4 == 3:
                    self._mine(node)
            except Exception as exc:  # reported by stop()
                self.errors.append(f"{name(node)} step {step}: {type(exc).__name__}: {exc}")
            step += 1
            time.sleep(0.03)

    def _mine(self, node: LedgerProcess) -> None:
        """Template, solve, submit: accepted (201), whether or not a gossiped block won."""
        body = get_json(f"{node.url}/mining/template?address={MINER.address}")
        block = mine_block(Block.from_dict(body["block"]))
        assert block is not None
        reply = http("POST", f"{node.url}/mining/submit", json_body=block.to_dict())
        assert reply.status == 201, reply.text
        self.blocks += 1


def wait_health(
    urls: dict[str, str], wanted: str, nodes: list[LedgerProcess], timeout: float = 30.0
) -> None:
    """Until every service's /healthz status is `wanted`; fail with every service's checks."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {what: healthz(url) for what, url in urls.items()}
        if all(body["status"] == wanted for body in seen.values()):
            logger.info("every /healthz is %s: %s", wanted, sorted(urls))
            return
        if time.monotonic() > deadline:
            lines = [f"{what}: {body['status']} {body['checks']}" for what, body in seen.items()]
            pytest.fail(
                f"not every /healthz is {wanted} within {timeout:.0f}s:\n"
                + "\n".join(lines)
                + f"\n{describe(nodes)}"
            )
        time.sleep(0.1)


@pytest.mark.parametrize("topology", ["bus+http", "bus-only"])
def test_redis_restart_under_load(
    children: ChildProcesses, tmp_path: Path, own_redis: KillableRedis, topology: str
) -> None:
    """Two nodes (ledger + on-demand miner) on one Redis, under a load of transfers and blocks;
    redis-server is killed with SIGKILL and started again on the same port.

    - While Redis is down the ledgers keep answering every transfer and block (201), and their
      /healthz says degraded; once it is back, ok again.
    - With the load paused and Redis back, the nodes converge on tips and mempools by
      themselves: every service re-syncs after a reconnect (DESIGN.md §2), whatever the bus
      dropped while it was down.
    - Under load again, then quiet: same tips, same mempools; `GET /mine` works on each node
      (each miner reconnected both ways) and every acknowledged transfer is confirmed or
      pending on every node.

    `bus+http`: the nodes are also registered with each other (as `pybtc up --nodes N` runs
    them), so HTTP gossip goes on through the outage. `bus-only`: nothing but the bus.
    """
    nodes: list[LedgerProcess] = []
    for i in range(2):
        ledger, _ = start_node(
            children, tmp_path, i, redis_url=own_redis.url, miner_address=MINER.address
        )
        nodes.append(ledger)
    node0, node1 = nodes
    if topology == "bus+http":
        connect_nodes(node0, node1)
        sync_peers(nodes)
    health = {f"{name(n)}/ledger": n.url for n in nodes}
    senders = [test_key(10 + i) for i in range(4)]
    for key in senders:
        mine(node0.url, key.address, 2)
    sync_blocks(nodes)

    load = Load(nodes, senders)
    load.start()
    wait_until(lambda: len(load.acked) >= 20, nodes, "20 transfers under load", timeout=30)

    logger.info("kill redis-server under load")
    own_redis.kill()
    wait_health(health, "degraded", nodes)
    acked = len(load.acked)
    wait_until(lambda: len(load.acked) >= acked + 20, nodes, "load goes on", timeout=30)

    logger.info("pause the load, start redis-server again on its port")
    load.pause()
    own_redis.start()
    wait_health(health, "ok", nodes)
    logger.info("with nothing new, the nodes must converge by re-syncing after the reconnect")
    sync_blocks(nodes, timeout=20)
    sync_mempools(nodes, timeout=20)

    logger.info("load again, then quiet: the nodes converge")
    acked = len(load.acked)
    load.resume()
    wait_until(lambda: len(load.acked) >= acked + 20, nodes, "load after restart", timeout=30)
    load.stop()
    sync_blocks(nodes, timeout=20)
    pending = sync_mempools(nodes, timeout=20)

    logger.info("GET /mine on each node: each miner hears its ledger again")
    for node in nodes:
        mined = mine_on_demand(node)
        pending -= {tx["txid"] for tx in mined["transactions"]}
        assert sync_blocks(nodes)["tip"] == mined["hash"]
    assert sync_mempools(nodes) == pending
    for node in nodes:
        chain = get_json(f"{node.url}/chain")["chain"]
        confirmed = {tx["txid"] for block in chain for tx in block["transactions"]}
        lost = load.acked.keys() - confirmed - pending
        assert not lost, f"{name(node)} lost {len(lost)} acknowledged transfers: {sorted(lost)}"
    logger.info(
        "redis restart: %d transfers acknowledged, %d pending at the end, none lost",
        len(load.acked),
        len(pending),
    )


class BrowserService:
    """`python -m services.explorer` or `services.wallet` for a node, on its own port."""

    def __init__(
        self, children: ChildProcesses, ledger: LedgerProcess, service: str, redis_url: str
    ) -> None:
        self.port = free_port()
        self.log_path = ledger.data_dir / f"{service}.log"
        env = child_env(
            PYBTC_NETWORK="regtest",
            PYBTC_DATA_DIR=str(ledger.data_dir),
            PYBTC_HOST="127.0.0.1",
            PYBTC_LEDGER_URL=ledger.url,
            PYBTC_REDIS_URL=redis_url,
            PYBTC_NODE_ID=name(ledger),
            **{f"PYBTC_{service.upper()}_PORT": str(self.port)},
        )
        proc = children.spawn(
            [sys.executable, "-m", f"services.{service}"], env=env, log_path=self.log_path
        )
        wait_for(f"{self.url}/healthz", proc, self.log_path, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_redis_outage_seen_by_every_service(
    children: ChildProcesses, tmp_path: Path, own_redis: KillableRedis
) -> None:
    """One whole node (ledger, miner, explorer, wallet) on its Redis; redis-server is killed.

    While Redis is down, `GET /mine` still mines: the ledger asks its miner over HTTP, and the
    miner polls the ledger for its tip, so nothing about it needs the bus. Every service's
    /healthz shows the bus degraded, and ok again once redis-server is back on its port; then
    `GET /mine` works again and the explorer and wallet log their reconnect.
    """
    ledger, miner = start_node(
        children,
        tmp_path,
        0,
        redis_url=own_redis.url,
        miner_address=MINER.address,
        env={"PYBTC_MINE_TIMEOUT": "10"},
    )
    explorer, wallet = (
        BrowserService(children, ledger, service, own_redis.url)
        for service in ("explorer", "wallet")
    )
    health = {
        "ledger": ledger.url,
        "miner": miner.url,
        "explorer": explorer.url,
        "wallet": wallet.url,
    }
    wait_health(health, "ok", [ledger])
    mine_on_demand(ledger)

    logger.info("kill redis-server; GET /mine at once")
    own_redis.kill()
    height = get_json(f"{ledger.url}/status")["height"]
    reply = http("GET", f"{ledger.url}/mine", timeout=30)
    logger.info("GET /mine with Redis down -> %d %s", reply.status, reply.text[:200])
    assert reply.status == 200, f"GET /mine with the bus down: {reply.status} {reply.text}"
    assert reply.json()["index"] == height + 1

    logger.info("every service reports the bus degraded")
    wait_health(health, "degraded", [ledger])

    logger.info("start redis-server again: every service reconnects")
    own_redis.start()
    wait_health(health, "ok", [ledger])
    mine_on_demand(ledger)
    for service in (explorer, wallet):
        assert "bus reconnected" in service.log_path.read_text(), service.log_path.name


# -- a hostile peer --------------------------------------------------------------------------


@pytest.fixture
def stub_loop() -> Iterator[LoopThread]:
    """An event loop in a thread of the test process, for stub servers; closed at teardown."""
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


def test_a_lying_peer_does_not_stall_two_honest_nodes(
    children: ChildProcesses, tmp_path: Path, stub_loop: LoopThread
) -> None:
    """A stub peer that claims far more work than anyone and never answers its headers is
    registered with node0, which passes it on to node1. Every sync round (PYBTC_SYNC_INTERVAL=1)
    each node tries the liar first (the most work first) and waits PYBTC_PEER_TIMEOUT (1 s) for
    nothing. Meanwhile blocks mined on node0 and a transfer posted at node1 must still reach the
    other node, and both nodes must drop the liar after PYBTC_PEER_MAX_FAILURES (5) failed syncs.

    The stub is `tests.service.stubpeers.StubPeer`, the in-process tests' liar, served from a
    loop in a thread of the test process.
    """
    env = {"PYBTC_SYNC_INTERVAL": "1", "PYBTC_PEER_TIMEOUT": "1"}
    nodes = start_ledgers(children, tmp_path, 2, env=env)
    node0, node1 = nodes
    connect_nodes(node0, node1)
    sync_peers(nodes)
    mine(node0.url, MINER.address, 2)
    sync_blocks(nodes)

    loop = stub_loop
    liar = loop.call(lambda: StubPeer(stub_chain(6), claim_work=10**9))
    loop.run(liar.start())
    try:
        logger.info("register the liar (still looking like a fresh ledger) with node0")
        register(node0, liar.url)
        wait_until(
            lambda: all(liar.url in peer_urls(n) for n in nodes),
            nodes,
            "node0 passed the liar on to node1",
            timeout=15,
        )
        loop.call(lambda: liar.arm(headers=Bad.SILENT))
        logger.info("armed: it claims 10**9 work and never answers /chain")

        logger.info("node0 mines 3 blocks; node1 posts a transfer: both must converge")
        blocks = mine(node0.url, MINER.address, 3)
        tx = send(node1.url, MINER, ALICE.address, 2 * COIN)
        assert sync_blocks(nodes, timeout=30)["tip"] == blocks[-1].hash
        assert sync_mempools(nodes, timeout=30) == {tx.txid}
        mined = mine(node1.url, BOB.address)[0]
        assert sync_blocks(nodes, timeout=30)["tip"] == mined.hash
        assert assert_same_balances(nodes, [ALICE.address])[ALICE.address][0] == 2 * COIN
        for node in nodes:
            assert healthz(node.url)["checks"]["storage"]["ok"], name(node)

        logger.info("both nodes must drop the liar after repeated failed syncs")
        wait_until(
            lambda: all(liar.url not in peer_urls(n) for n in nodes),
            nodes,
            f"both nodes dropped the liar {liar.url}",
            timeout=30,
        )
        logger.info(
            "dropped after %d /chain requests", loop.call(lambda: liar.count("GET", "/chain"))
        )
        sync_peers(nodes)  # the honest pair still knows each other, and only each other
    finally:
        loop.run(liar.stop())
