"""After the chaos: settle the network, then check what must hold, as figures.

`settle` lets the network come to rest by itself: with every process back and the cut healed,
the auto miners go on until every mempool is empty; then the miners are stopped (SIGTERM) and
the ledgers must agree on one tip with empty mempools. A transfer still pending somewhere (a reorg
put it back after the miners stopped) gets that node's miner started again until the node's
mempool is empty; two tips of equal work (the miners stopped between two blocks of the same
height: each node keeps the one it saw first, rightly) get one more block from node0's miner.
Tips of unequal work must converge by themselves. If the network does
not settle within the timeout, the failure lists every node's height, tip, mempool and peers.

`check_transactions` accounts for every transfer answered 201: confirmed on the common chain,
or dropped by some ledger with a recorded reason (`GET /tx/{txid}` says `dropped` and gives the
fate's reason), or else lost. `check_databases` runs on the stopped nodes' SQLite files:
`PRAGMA integrity_check`, the sum of all balances against the sum of subsidies of the chain's
height (accounts, not UTXOs: fees move coins, only coinbases create them), no negative balance.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.cluster import NO_ANSWER, PARAMS, Cluster, Node, integrity_check
from tests.chaos.load import Ack
from tests.functional.conftest import get_json, http, log_tail
from tests.functional.p2p import mempool_txids, status

logger = logging.getLogger(__name__)

POLL = 0.2
STUCK = 5.0
"""Seconds a transfer may stay pending on resting nodes before the check mines it a block."""


NONCE_TAKEN = ("bad-nonce", "replaced")
"""Drop reasons that say another transfer of the same sender took this one's nonce."""


class SettleError(AssertionError):
    """The network did not come to rest: same tip, empty mempools."""


def describe(cluster: Cluster, logs: bool = True) -> str:
    """One line per node (height, tip, mempool, peers), and the end of each ledger's log."""
    lines = []
    for node in cluster.nodes:
        try:
            s = status(node)
            pool = mempool_txids(node)
            peers = sorted(p["url"] for p in get_json(f"{node.url}/nodes")["peers"])
            lines.append(
                f"{node.name} height={s['height']} tip={s['tip'][:16]} mempool={len(pool)} "
                f"{sorted(t[:8] for t in pool)[:10]} peers={peers}"
            )
        except (*NO_ANSWER, AssertionError) as exc:
            lines.append(f"{node.name} unreachable: {type(exc).__name__}: {exc}")
        if logs:
            tail = log_tail(node.ledger.log_path, 8).splitlines()
            lines += [f"    | {text}" for text in tail]
    return "\n".join(lines)


def wait_until(predicate: Callable[[], bool], cluster: Cluster, what: str, timeout: float) -> float:
    """Poll until `predicate` holds; the seconds it took. SettleError with every node's state."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except (*NO_ANSWER, AssertionError) as exc:
            logger.debug("%s: %s", what, exc)
        if time.monotonic() - start > timeout:
            raise SettleError(f"{what}: not within {timeout:.0f}s\n{describe(cluster)}")
        time.sleep(POLL)


@dataclass
class Settled:
    seconds: float
    tip: str
    height: int
    miners_restarted: Counter[str]
    """Why a miner was started again after the stop, and how often."""
    miner_exit_codes: dict[str, int | None]


def settle(cluster: Cluster, timeout: float) -> Settled:
    """Bring the resting network to one tip with empty mempools (see the module docstring)."""
    start = time.monotonic()
    nodes = cluster.nodes
    logger.info("settle: the miners go on until every mempool is empty")
    wait_until(
        lambda: all(status(n)["mempool_size"] == 0 for n in nodes),
        cluster,
        "every mempool empty (miners running)",
        timeout,
    )
    codes = {n.services["miner"].name: n.services["miner"].stop() for n in nodes}
    logger.info("settle: miners stopped %s; waiting for one tip", codes)
    extra: Counter[str] = Counter()
    since: dict[str, float] = {}

    def waited(what: str) -> bool:
        """True once `what` has been seen for STUCK seconds in a row."""
        return time.monotonic() - since.setdefault(what, time.monotonic()) > STUCK

    def at_rest() -> bool:
        states = {n.name: status(n) for n in nodes}
        pools = {n.name: mempool_txids(n) for n in nodes}
        if len({s["tip"] for s in states.values()}) == 1 and not any(pools.values()):
            return True
        for node in nodes:
            if not pools[node.name]:
                since.pop(f"pending {node.name}", None)
            elif waited(f"pending {node.name}"):
                logger.info("settle: %d pending on %s", len(pools[node.name]), node.name)
                extra["a transfer put back after the stop"] += 1
                _mine_until(cluster, node, _empty_mempool(node), timeout)
                since.clear()
                return False
        best = max(int(s["chain_work"], 16) for s in states.values())
        ties = {s["tip"] for s in states.values() if int(s["chain_work"], 16) == best}
        if len(ties) < 2:
            since.pop("tie", None)
        elif waited("tie"):  # equal work: each keeps the first seen until a block breaks it
            logger.info("settle: a tie between %s: one more block", sorted(t[:16] for t in ties))
            extra["a tie between branches of equal work"] += 1
            height = states[nodes[0].name]["height"]
            _mine_until(cluster, nodes[0], lambda: status(nodes[0])["height"] > height, timeout)
            since.clear()
        return False

    wait_until(at_rest, cluster, "one tip and empty mempools (miners stopped)", timeout)
    best = status(nodes[0])
    return Settled(time.monotonic() - start, best["tip"], best["height"], extra, codes)


def _empty_mempool(node: Node) -> Callable[[], bool]:
    return lambda: status(node)["mempool_size"] == 0


def _mine_until(cluster: Cluster, node: Node, done: Callable[[], bool], timeout: float) -> None:
    """Start the node's miner again until `done`, then stop it."""
    miner = node.services["miner"]
    cluster.start(miner)
    try:
        wait_until(done, cluster, f"{node.name}'s miner started again", timeout)
    finally:
        miner.stop()


# -- transactions ------------------------------------------------------------------------------


@dataclass
class TxAccount:
    """Where every acknowledged transfer ended up."""

    confirmed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """By the reason the ledger recorded."""
    dropped_consistent: int = 0
    """Dropped because its nonce was taken, and that nonce is indeed used on the final chain."""
    lost: list[str] = field(default_factory=list)
    unacked_posted: int = 0
    """Posted with no answer (a timeout, a reset): maybe admitted, maybe not."""
    unacked_confirmed: int = 0
    by_way: Counter[str] = field(default_factory=Counter)


def tx_view(node: Node, txid: str) -> dict[str, Any] | None:
    reply = http("GET", f"{node.url}/tx/{txid}")
    if reply.status == 404:
        return None
    assert reply.status == 200, f"{node.name} GET /tx/{txid} -> {reply.status} {reply.text}"
    body: dict[str, Any] = reply.json()
    return body


def check_transactions(cluster: Cluster, acked: dict[str, Ack], unanswered: list[str]) -> TxAccount:
    """Confirmed, dropped with a reason, or lost: every transfer some node answered 201."""
    account = TxAccount()
    first, nodes = cluster.nodes[0], cluster.nodes
    nonces: dict[str, int] = {}
    for txid, ack in acked.items():
        account.by_way[ack.via] += 1
        view = tx_view(first, txid)
        if view is not None and view["status"] == "confirmed":
            account.confirmed += 1
            continue
        views = {n.name: tx_view(n, txid) for n in nodes}
        reasons = [
            v["fate"]["reason"]
            for v in views.values()
            if v is not None and v["status"] == "dropped"
        ]
        sender = ack.tx.sender
        if sender not in nonces:
            nonces[sender] = get_json(f"{first.url}/address/{sender}")["nonce"]
        if reasons:
            account.dropped[str(reasons[0])] += 1
            if reasons[0] in NONCE_TAKEN and nonces[sender] > ack.tx.nonce:
                account.dropped_consistent += 1
            continue
        seen = {name: (v["status"] if v else "unknown") for name, v in views.items()}
        used = "used by another confirmed transfer" if nonces[sender] > ack.tx.nonce else "free"
        account.lost.append(
            f"{txid} acked by {ack.node} via {ack.via} at +{ack.at:.1f}s: sender "
            f"{sender[:12]} nonce {ack.tx.nonce} ({used}); seen as {seen}"
        )
    account.unacked_posted = len(unanswered)
    for txid in unanswered:
        view = tx_view(first, txid)
        if view is not None and view["status"] == "confirmed":
            account.unacked_confirmed += 1
    return account


# -- databases -------------------------------------------------------------------------------


@dataclass
class DbFacts:
    """One stopped node's database."""

    integrity: str
    height: int
    tip: str
    supply: int
    expected_supply: int
    accounts: int
    negative: int
    lowest_balance: int
    blocks: int
    reorgs: int
    deepest_reorg: int


def check_database(node: Node) -> DbFacts:
    """Facts of a stopped ledger's SQLite file (opened read-only after its integrity check)."""
    integrity = integrity_check(node.db_path)
    db = sqlite3.connect(f"file:{node.db_path}?mode=ro", uri=True)
    try:
        height, tip = db.execute(
            "SELECT height, hash FROM main_chain ORDER BY height DESC LIMIT 1"
        ).fetchone()
        supply, accounts, lowest = db.execute(
            "SELECT SUM(balance), COUNT(*), MIN(balance) FROM accounts"
        ).fetchone()
        negative = db.execute("SELECT COUNT(*) FROM accounts WHERE balance < 0").fetchone()[0]
        blocks = db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        reorgs, deepest = db.execute(
            "SELECT COUNT(*), COALESCE(MAX(depth), 0) FROM reorgs"
        ).fetchone()
    finally:
        db.close()
    return DbFacts(
        integrity,
        height,
        tip,
        supply,
        PARAMS.total_supply(height),
        accounts,
        negative,
        lowest,
        blocks,
        reorgs,
        deepest,
    )
