"""The tutorial's last chapter on three whole nodes: register, send, mine, converge.

Each node is a real ledger process with its on-demand miner service (`python -m services.node`
and `python -m services.miner`, regtest, its own data dir and ports, the miner paying MINER's
key so that the test can spend the reward). The story is the tutorial's: node0 is registered
with node1 by hand (`POST /nodes/register`), then node2 with node1, and registration spreads
until each knows both others; `GET /mine` on node0 funds MINER; a transfer signed by MINER and
posted to node2 reaches every mempool; `GET /mine` on node1 confirms it; every node adopts each
block and every node reports the same balances.

It runs twice, once per way nodes gossip (DESIGN.md §2):

- `http`: each node has a Redis of its own (its ledger and miner need one for `GET /mine`), so
  nodes only hear each other over the tutorial's HTTP calls: `"type": "sharing"` relays and
  `/nodes/resolve` announcements.
- `bus`: the nodes share one Redis and nobody registers anybody (every `GET /nodes` stays
  empty). Transactions travel whole inside the bus message: the other ledgers receive no HTTP
  request for them. Blocks do not: the bus carries a block's hash and the announcing ledger's
  URL, and each other ledger fetches the block from that URL (`GET /blocks/{hash}`), so nodes
  that gossip over the bus must still reach each other's ledgers over HTTP; the test counts
  those fetches on the miner's ledger.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybtc import COIN, REGTEST
from services.common.embedded_redis import EmbeddedRedis
from tests.chainutil import test_key
from tests.functional.conftest import ChildProcesses, LedgerProcess, send
from tests.functional.p2p import (
    assert_same_balances,
    connect_nodes,
    mine_on_demand,
    name,
    peer_urls,
    requests_answered,
    requests_served,
    start_node,
    sync_blocks,
    sync_mempools,
    sync_peers,
    tx_view,
)

logger = logging.getLogger(__name__)

NODES = 3
MINER, ALICE = test_key(0), test_key(1)
AMOUNT = 7 * COIN


@pytest.fixture(params=["http", "bus"])
def bus_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The Redis URL of each node: one private Redis each (`http`) or one shared (`bus`)."""
    with contextlib.ExitStack() as stack:
        if request.param == "http":
            servers = [
                stack.enter_context(
                    EmbeddedRedis(data_dir=tmp_path / f"redis{i}", password=f"story-{i}")
                )
                for i in range(NODES)
            ]
            yield [server.url for server in servers]
        else:
            shared = stack.enter_context(
                EmbeddedRedis(data_dir=tmp_path / "redis", password="story")
            )
            yield [shared.url] * NODES


def test_tutorial_story(children: ChildProcesses, tmp_path: Path, bus_urls: list[str]) -> None:
    """Three nodes: register by hand, a signed transfer reaches every mempool, `GET /mine` on
    one node, every node adopts the block and agrees on the balances (see the module doc)."""
    over_bus = len(set(bus_urls)) == 1
    nodes: list[LedgerProcess] = []
    for i, url in enumerate(bus_urls):
        ledger, _ = start_node(children, tmp_path, i, redis_url=url, miner_address=MINER.address)
        nodes.append(ledger)
    node0, node1, node2 = nodes

    if over_bus:
        logger.info("one shared bus, no HTTP registration at all")
    else:
        logger.info("register node0 with node1, then node2 with node1, by hand")
        assert connect_nodes(node1, node0)["added"] == [node0.url]
        assert connect_nodes(node1, node2)["added"] == [node2.url]
        logger.info("registration spreads: node0 and node2 learn of each other")
        sync_peers(nodes)

    logger.info("GET /mine on node0: its miner funds MINER; every node adopts the block")
    funding = mine_on_demand(node0)
    assert funding["index"] == 2
    assert sync_blocks(nodes)["tip"] == funding["hash"]

    logger.info("a transfer signed by MINER, posted to node2, must reach every mempool")
    posted_before = {name(n): requests_served(n, "/transactions/new") for n in nodes}
    tx = send(node2.url, MINER, ALICE.address, AMOUNT)
    assert sync_mempools(nodes) == {tx.txid}
    for node in nodes:
        assert tx_view(node, tx.txid)["status"] == "pending", name(node)
    if over_bus:
        posted = {name(n): requests_served(n, "/transactions/new") for n in nodes}
        relayed = {k: posted[k] - posted_before[k] for k in posted}
        logger.info("POST /transactions/new per node: %s (only the one the test made)", relayed)
        assert relayed == {"node0": 0, "node1": 0, "node2": 1}, "the bus carries the whole tx"

    logger.info("GET /mine on node1 confirms the transfer; every node adopts the block")
    fetched_before = requests_answered(node1, "/blocks/{hash}")
    mined = mine_on_demand(node1)
    assert tx.txid in {t["txid"] for t in mined["transactions"]}
    assert sync_blocks(nodes)["tip"] == mined["hash"]
    assert sync_mempools(nodes) == set()

    logger.info("every node confirms the transfer in the same block and agrees on balances")
    for node in nodes:
        view = tx_view(node, tx.txid)
        assert (view["status"], view["block_hash"]) == ("confirmed", mined["hash"]), name(node)
    reward = REGTEST.subsidy(2) + REGTEST.subsidy(3)
    agreed = assert_same_balances(nodes, [MINER.address, ALICE.address])
    assert agreed[ALICE.address] == (AMOUNT, 0)
    assert agreed[MINER.address] == (reward - AMOUNT, 1)  # the fee came back to MINER's miner

    if over_bus:
        fetches = requests_answered(node1, "/blocks/{hash}") - fetched_before
        logger.info("node1's block was fetched over HTTP %d times from node1's ledger", fetches)
        assert fetches >= NODES - 1, "each other ledger fetches an announced block by its URL"
        for node in nodes:
            assert peer_urls(node) == set(), f"{name(node)}: the bus must not register peers"
    else:
        sync_peers(nodes)  # still a full mesh: nobody was dropped
