"""Node to node: ledgers that gossip over a shared Redis or only over HTTP converge.

Every node is a real ledger process (`python -m services.node`, regtest, its own SQLite file
and loopback port); a shared bus is the session's real Redis. Each test uses the fewest nodes
that show its behaviour, narrates its steps in log lines, and waits with `sync_blocks` /
`sync_mempools`, which fail listing every node's height, tip, mempool and peers.

- `test_feature_shared_bus`: two ledgers on one Redis, not registered with each other: blocks
  and a transaction reach the other ledger over the bus alone.
- `test_p2p_http_only`: three ledgers without Redis registered in a line (0-1, 1-2): the
  registration spreads until each knows both others; blocks mined at node0 reach node2; a
  transaction posted at node2 reaches node0 by `"type": "sharing"` relays, which stop.
- `test_p2p_late_joiner`: node0 holds a few hundred blocks; a fresh node1 started with
  `PYBTC_PEERS=node0` catches up on its own at start, headers first (the time is printed).
- `test_p2p_catch_up_announces_once`: after such a catch-up node1 announces its new tip once,
  not once per synced block back to the node it synced from.
- `test_feature_reorg`: two ledgers split from a common prefix each mine a branch (node1's
  longer; a transaction confirmed only on node0's). Joined, both end on node1's branch, node0
  logs the reorg, re-queues the transaction, relays it, and a new block confirms it on both.
- `test_p2p_periodic_catch_up`: node1 (`PYBTC_SYNC_INTERVAL=1`) knows node0, but node0 refuses
  loopback peers and so never announces to node1; node1 still catches up, twice, by itself.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from pybtc import COIN
from tests.chainutil import make_funded_chain, test_key
from tests.functional.conftest import ChildProcesses, LedgerProcess, get_json, mine, send
from tests.functional.p2p import (
    build_chain,
    connect_nodes,
    mempool_txids,
    name,
    peer_urls,
    requests_served,
    start_ledgers,
    status,
    submit_blocks,
    sync_blocks,
    sync_mempools,
    wait_until,
)

logger = logging.getLogger(__name__)

MINER, ALICE, BOB, CAROL = (test_key(i) for i in range(4))
LATE_JOINER_BLOCKS = 300
CATCH_UP_BLOCKS = 50


def tx_status(node: LedgerProcess, txid: str) -> dict[str, object]:
    """`GET /tx/{txid}` (it must be known: confirmed or pending)."""
    body: dict[str, object] = get_json(f"{node.url}/tx/{txid}")
    return body


def test_feature_shared_bus(children: ChildProcesses, tmp_path: Path, redis_url: str) -> None:
    """Two ledgers that share a Redis but never registered each other gossip over the bus.

    node0 mines three blocks through /mining/template + /mining/submit; node1 hears each block
    announced on the bus, fetches it from node0 and connects it. A transfer posted to node0
    reaches node1's mempool the same way, and a block node1 mines with it reaches node0.
    """
    node0, node1 = (
        start_ledgers(
            children, tmp_path, 1, redis_url=redis_url, env={"PYBTC_NODE_ID": f"bus{i}"}, first=i
        )[0]
        for i in range(2)
    )
    assert peer_urls(node0) == peer_urls(node1) == set(), "the nodes must not know each other"

    logger.info("node0 mines 3 blocks; node1 must get them over the bus")
    mine(node0.url, MINER.address, 3)
    assert sync_blocks([node0, node1])["height"] == 4

    logger.info("a transfer posted to node0 must reach node1's mempool over the bus")
    tx = send(node0.url, MINER, ALICE.address, 5 * COIN)
    assert sync_mempools([node0, node1]) == {tx.txid}

    logger.info("node1 mines the transfer; node0 must get the block over the bus")
    mined = mine(node1.url, BOB.address)[0]
    assert tx.txid in {t.txid for t in mined.transactions}
    assert sync_blocks([node0, node1])["tip"] == mined.hash
    assert sync_mempools([node0, node1]) == set()
    for node in (node0, node1):
        assert tx_status(node, tx.txid)["status"] == "confirmed", name(node)
        assert get_json(f"{node.url}/address/{ALICE.address}")["balance"] == 5 * COIN
    assert peer_urls(node0) == peer_urls(node1) == set(), "the bus must not register peers"


def test_p2p_http_only(children: ChildProcesses, tmp_path: Path) -> None:
    """Three ledgers without Redis, registered in a line, become a mesh and gossip over HTTP.

    node0 registers node1 and node1 registers node2 (the tutorial's POST /nodes/register).
    Registration is passed on to known peers and registered back, so each node ends up knowing
    both others. Blocks mined at node0 reach node2 (announced with /nodes/resolve); a transfer
    posted at node2 reaches node0 by relays with `"type": "sharing"`; each node relays it once,
    when it is new there, so the relays stop: 1 post + 3 nodes x 2 peers = 7 requests in all.
    """
    nodes = start_ledgers(children, tmp_path, 3)
    node0, node1, node2 = nodes

    logger.info("connect in a line: node0 -> node1, node1 -> node2")
    assert connect_nodes(node0, node1)["added"] == [node1.url]
    assert connect_nodes(node1, node2)["added"] == [node2.url]

    logger.info("registration spreads until every node knows every other")

    def mesh() -> bool:
        return all(peer_urls(n) == {m.url for m in nodes if m is not n} for n in nodes)

    wait_until(mesh, nodes, "every node knows both others", timeout=10)

    logger.info("node0 mines 3 blocks; they must reach node2")
    blocks = mine(node0.url, MINER.address, 3)
    assert sync_blocks(nodes)["tip"] == blocks[-1].hash

    logger.info("a transfer posted at node2 must reach node0's mempool by 'sharing' relays")
    before = sum(requests_served(n, "/transactions/new") for n in nodes)
    tx = send(node2.url, MINER, ALICE.address, 7 * COIN)
    assert sync_mempools(nodes) == {tx.txid}

    logger.info("the relays stop: each node has the transfer once and relayed it once")
    for node in nodes:
        assert mempool_txids(node) == [tx.txid], name(node)
        assert status(node)["mempool_size"] == 1, name(node)
    expected = 1 + len(nodes) * (len(nodes) - 1)

    def relays_done() -> bool:
        return sum(requests_served(n, "/transactions/new") for n in nodes) - before >= expected

    wait_until(relays_done, nodes, f"{expected} POST /transactions/new in all", timeout=10)
    time.sleep(0.5)  # a loop would keep posting
    served = {name(n): requests_served(n, "/transactions/new") for n in nodes}
    assert sum(served.values()) - before == expected, served

    logger.info("node1 mines the transfer; every node confirms it")
    mined = mine(node1.url, BOB.address)[0]
    assert sync_blocks(nodes)["tip"] == mined.hash
    assert sync_mempools(nodes) == set()


def test_p2p_late_joiner(children: ChildProcesses, tmp_path: Path) -> None:
    """A fresh node started with PYBTC_PEERS catches up on a long chain by itself, headers first.

    The chain (LATE_JOINER_BLOCKS blocks on genesis) is built in-process with pybtc and
    submitted to node0. node1 then starts empty with PYBTC_PEERS=node0: it registers, reads
    node0's headers, fetches the blocks it lacks and ends on node0's tip.
    """
    (node0,) = start_ledgers(children, tmp_path, 1)

    logger.info("build %d blocks in-process and submit them to node0", LATE_JOINER_BLOCKS)
    blocks = build_chain(LATE_JOINER_BLOCKS, MINER.address)
    submit_blocks(node0, blocks)
    assert status(node0)["tip"] == blocks[-1].hash

    logger.info("start node1 with PYBTC_PEERS=node0 and time its catch-up")
    started = time.monotonic()
    (node1,) = start_ledgers(children, tmp_path, 1, env={"PYBTC_PEERS": node0.url}, first=1)
    up = time.monotonic() - started
    best = sync_blocks([node0, node1], timeout=30)
    took = time.monotonic() - started
    assert best["height"] == LATE_JOINER_BLOCKS + 1
    message = (
        f"late joiner caught up {LATE_JOINER_BLOCKS} blocks in {took:.2f}s from process start "
        f"({took - up:.2f}s after /healthz answered)"
    )
    logger.info(message)
    print(message)

    logger.info("it synced headers first: one pass over all %d headers", LATE_JOINER_BLOCKS)
    passes = re.findall(r"sync peer=\S+ fork_height=(\d+) headers=(\d+) missing=(\d+)", node1.log())
    assert (
        "1",
        str(LATE_JOINER_BLOCKS),
        str(LATE_JOINER_BLOCKS),
    ) in passes, passes
    assert peer_urls(node1) == {node0.url}
    wait_until(lambda: peer_urls(node0) == {node1.url}, [node0, node1], "registered back", 5)


def test_p2p_catch_up_announces_once(children: ChildProcesses, tmp_path: Path) -> None:
    """A node that catches up announces its new tip once, not once per block it synced.

    node1 starts with PYBTC_PEERS=node0 and syncs CATCH_UP_BLOCKS blocks from it. Its peers
    should hear about the result at most once (node0, where the blocks came from, need not hear
    at all): every `/nodes/resolve` announcement makes the receiver contact the announcer.
    """
    (node0,) = start_ledgers(children, tmp_path, 1)
    submit_blocks(node0, build_chain(CATCH_UP_BLOCKS, MINER.address))
    before = requests_served(node0, "/nodes/resolve")

    logger.info("node1 catches up %d blocks from node0", CATCH_UP_BLOCKS)
    (node1,) = start_ledgers(children, tmp_path, 1, env={"PYBTC_PEERS": node0.url}, first=1)
    sync_blocks([node0, node1])
    time.sleep(1.0)  # announcements go out in the background

    announced = requests_served(node0, "/nodes/resolve") - before
    logger.info("node0 received %d announcements from node1", announced)
    assert announced <= 1, (
        f"node1 announced {announced} times to node0 after one catch-up of {CATCH_UP_BLOCKS} "
        "blocks (one /nodes/resolve per synced block, back to the peer that sent them)"
    )


def test_feature_reorg(children: ChildProcesses, tmp_path: Path) -> None:
    """Joined after a split, two nodes follow the most work; the loser re-queues and relays.

    Both nodes get the same 2-block prefix (paying MINER). Split (they never registered),
    node0 confirms a transfer MINER -> ALICE in a 2-block branch; node1 mines 3 empty blocks.
    node0 then registers node1: both must end on node1's branch, node0's GET /reorgs must show
    the 2-block reorg with the transfer re-queued, the transfer must be pending again at node0
    and relayed to node1, and the next block node1 mines must confirm it on both.
    """
    nodes = start_ledgers(children, tmp_path, 2)
    node0, node1 = nodes
    prefix = make_funded_chain(blocks=2).chain.main_chain()[1:]
    for node in nodes:
        submit_blocks(node, prefix)
    fork = sync_blocks(nodes)

    logger.info("split: node0 confirms a transfer in a 2-block branch")
    tx = send(node0.url, MINER, ALICE.address, 3 * COIN)
    branch0 = mine(node0.url, BOB.address, 2)
    assert tx.txid in {t.txid for t in branch0[0].transactions}
    assert tx_status(node0, tx.txid)["status"] == "confirmed"

    logger.info("split: node1 mines a longer branch of 3 blocks without it")
    branch1 = mine(node1.url, CAROL.address, 3)
    assert status(node1)["mempool_size"] == 0

    logger.info("join: node0 registers node1; both must end on node1's branch")
    connect_nodes(node0, node1)
    best = sync_blocks(nodes)
    assert best["tip"] == branch1[-1].hash
    assert best["height"] == fork["height"] + 3

    logger.info("node0 logged the reorg and put the transfer back in its mempool")
    reorgs = get_json(f"{node0.url}/reorgs")["reorgs"]
    assert len(reorgs) == 1, reorgs
    assert reorgs[0]["old_tip"] == branch0[-1].hash
    assert reorgs[0]["new_tip"] == branch1[-1].hash
    assert reorgs[0]["depth"] == 2
    assert reorgs[0]["fork_height"] == fork["height"]
    assert reorgs[0]["requeued"] == [tx.txid]
    assert get_json(f"{node1.url}/reorgs")["reorgs"] == []
    assert tx_status(node0, tx.txid)["status"] == "pending"
    assert get_json(f"{node0.url}/address/{ALICE.address}")["balance"] == 0

    logger.info("the re-queued transfer must be relayed so that any node can mine it again")
    assert sync_mempools(nodes, timeout=10) == {tx.txid}

    logger.info("node1 mines the next block: the transfer is confirmed on both")
    mined = mine(node1.url, CAROL.address)[0]
    assert tx.txid in {t.txid for t in mined.transactions}
    assert sync_blocks(nodes)["tip"] == mined.hash
    assert sync_mempools(nodes) == set()
    for node in nodes:
        assert tx_status(node, tx.txid)["block_hash"] == mined.hash, name(node)
        assert get_json(f"{node.url}/address/{ALICE.address}")["balance"] == 3 * COIN


def test_p2p_periodic_catch_up(children: ChildProcesses, tmp_path: Path) -> None:
    """Nobody announces to node1, yet it catches up by itself every PYBTC_SYNC_INTERVAL.

    node0 allows only private-range peers (PYBTC_PEER_NETWORKS=private), so it refuses node1's
    register-back on loopback and never announces its blocks to it. node1 starts with
    PYBTC_PEERS=node0 and PYBTC_SYNC_INTERVAL=1: its periodic sync must bring it to node0's tip,
    once and again after more blocks.
    """
    (node0,) = start_ledgers(children, tmp_path, 1, env={"PYBTC_PEER_NETWORKS": "private"})
    (node1,) = start_ledgers(
        children,
        tmp_path,
        1,
        env={"PYBTC_PEERS": node0.url, "PYBTC_SYNC_INTERVAL": "1"},
        first=1,
    )
    nodes = [node0, node1]
    wait_until(lambda: peer_urls(node1) == {node0.url}, nodes, "node1 knows node0", 5)
    refused = f"registration not passed on url={node0.url}"
    wait_until(lambda: refused in node1.log(), nodes, "node0 refused node1's register-back", 5)
    assert peer_urls(node0) == set(), "node0 must not know node1 (nobody announces to it)"

    for round_ in (1, 2):
        logger.info("round %d: node0 mines 4 blocks without telling node1", round_)
        blocks = mine(node0.url, MINER.address, 4)
        started = time.monotonic()
        assert sync_blocks(nodes, timeout=5)["tip"] == blocks[-1].hash
        logger.info("round %d: node1 caught up in %.2fs", round_, time.monotonic() - started)
    assert peer_urls(node0) == set()
