"""Three-node networks for the benchmarks: block and transaction propagation, pyBTC beside the
tutorial, and a fresh node's catch-up sync.

pyBTC's three nodes are `pybtc up --nodes 3` (whole nodes: ledger, miner, explorer, wallet),
each started on its own copy of a chain snapshot (`bench/fixture.py`), over one shared Redis
(`--bus shared`: gossip on the bus and over HTTP) or one Redis each (`--bus per-node`: HTTP
only). Every ledger announces each tip change and each accepted transaction on its bus, naming
itself; the benchmark listens on every bus and stamps each announcement as it arrives, so a
block's propagation is the time from the miner's node announcing the new tip to the last of
the other two announcing the same tip, and a transaction's is the time from node 1 announcing
it (just before its 201) to the last of the other two announcing it. The blocks are built
here (regtest proof of work, five signed transfers each) and handed to node 1 through
`POST /mining/submit`, the miner's own path into its ledger.

The tutorial's three nodes are `seed_node.py` with `SEED_FIX=content_type,resolve_loop` (as
written, peers never adopt a block), registered with each other by its `/nodes/register`,
each holding the same chain; a block is mined with its `GET /mine`, which tells each peer in
turn and waits for it (see bench/tutorial.py for how the moment of mining is read).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import redis

from bench.chainbuild import ChainBuilder, Ledger
from bench.common import drain, get, say
from bench.tutorial import TutorialNode
from pybtc import REGTEST, PrivateKey, Transaction
from tests.upnode import UpNode

TIMEOUT = 60.0


class Stamps:
    """Arrival times of the tip and tx announcements on one or more buses."""

    def __init__(self, redis_urls: list[str]) -> None:
        self.seen: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self.arrived = threading.Condition()
        self.threads = []
        for url in redis_urls:
            pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(
                **{
                    f"pybtc:{REGTEST.name}:tip": self._on_message,
                    f"pybtc:{REGTEST.name}:tx": self._on_message,
                }
            )
            self.threads.append(pubsub.run_in_thread(sleep_time=0.01, daemon=True))

    def _on_message(self, message: dict[str, object]) -> None:
        at = time.time()
        envelope = json.loads(message["data"])  # type: ignore[arg-type]
        data = envelope["data"]
        key = data.get("hash") or data.get("txid")
        with self.arrived:
            self.seen[(envelope["type"], key)].setdefault(data["url"], at)
            self.arrived.notify_all()

    def wait(self, kind: str, key: str, urls: list[str]) -> dict[str, float]:
        with self.arrived:  # woken by each arrival: no polling loop beside what is measured
            arrived = self.arrived.wait_for(
                lambda: all(u in self.seen.get((kind, key), {}) for u in urls), TIMEOUT
            )
            got = dict(self.seen.get((kind, key), {}))
        if arrived:
            return got
        raise RuntimeError(
            f"{kind} {key[:16]} not announced by every node in {TIMEOUT:.0f}s: {got}"
        )

    def close(self) -> None:
        for thread in self.threads:
            thread.stop()


class PyBTCNetwork:
    """`pybtc up --nodes 3` on copies of a snapshot, with a listener on every bus."""

    def __init__(self, work: Path, snapshot: Path, bus: str, nodes: int = 3) -> None:
        self.root = work / f"net-{bus}-{snapshot.stem}"
        shutil.rmtree(self.root, ignore_errors=True)
        for k in range(1, nodes + 1):
            (self.root / f"node{k}").mkdir(parents=True)
            shutil.copy(snapshot, self.root / f"node{k}" / f"ledger-{REGTEST.name}.sqlite3")
        self.bus = bus
        self.net = UpNode(self.root, nodes=nodes, bus=bus)
        self.urls = [self.net.ledger_url(k) for k in range(1, nodes + 1)]
        self.stamps: Stamps | None = None
        self.sent_txs = 0

    def wait(self) -> None:
        self.net.wait_ready(120)
        drain(self.net.proc, self.net.lines)
        redis_urls = sorted(
            {
                m.group(1)
                for line in self.net.lines
                if (m := re.search(r"bus\s+(redis://\S+)", line))
            }
        )
        self.stamps = Stamps(redis_urls)
        deadline = time.monotonic() + TIMEOUT
        while True:  # every node knows every other one (node 1 passes the others on)
            counts = [len(json.loads(get(f"{u}/nodes")[1])["peers"]) for u in self.urls]
            if all(c >= len(self.urls) - 1 for c in counts):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the nodes did not all register with each other: {counts}")
            time.sleep(0.2)
        time.sleep(1.0)  # let the start-up syncs and template refreshes settle

    def block(self, block_dict: dict[str, object], block_hash: str) -> float:
        """Hand a block to node 1; seconds until the other nodes announce it as their tip."""
        assert self.stamps is not None
        ledger = Ledger(self.urls[0])
        try:
            status, body = ledger.request("POST", "/mining/submit", block_dict)
        finally:
            ledger.close()
        if status != 201:
            raise RuntimeError(f"node 1 refused the block: {body}")
        got = self.stamps.wait("tip", block_hash, self.urls)
        return max(got[u] for u in self.urls[1:]) - got[self.urls[0]]

    def transaction(self, key: PrivateKey, recipient: str) -> float:
        """Post a signed transaction to node 1; seconds from node 1 announcing it (which it
        does just before answering 201) until the other nodes announce it (it is in their
        mempools). Node 1's own announcement is the start, not the moment this client reads
        the 201, so both ends are stamped the same way."""
        assert self.stamps is not None
        tx = Transaction.create(
            key,
            recipient,
            1,
            fee=1_000,
            nonce=self.sent_txs,
            timestamp=int(time.time()),
            network_id=REGTEST.network_id,
        )
        ledger = Ledger(self.urls[0])
        try:
            status, body = ledger.request("POST", "/transactions/new", tx.to_dict())
        finally:
            ledger.close()
        if status != 201:
            raise RuntimeError(f"node 1 refused the transaction: {body}")
        self.sent_txs += 1
        got = self.stamps.wait("tx", tx.txid, self.urls)
        return max(got[u] for u in self.urls[1:]) - got[self.urls[0]]

    def stop(self) -> None:
        if self.stamps is not None:
            self.stamps.close()
        self.net.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class TutorialNetwork:
    """Three `seed_node.py` with SEED_FIX, the same chain in each, registered together."""

    def __init__(self, work: Path, chain_file: Path) -> None:
        self.nodes = [
            TutorialNode(work, chain_file, fixes="content_type,resolve_loop") for _ in range(3)
        ]

    def wait(self) -> None:
        for node in self.nodes:
            node.wait()
        first = Ledger(self.nodes[0].url)
        try:
            for other in self.nodes[1:]:
                status, body = first.request("POST", "/nodes/register", {"nodes": other.url})
                if status != 201:
                    raise RuntimeError(f"tutorial registration failed: {status} {body}")
        finally:
            first.close()

    def mine(self) -> float:
        """GET /mine on node 1: seconds from its new block to every peer having decided."""
        status, body = get(f"{self.nodes[0].url}/mine")
        done = time.time()
        if status != 200:
            raise RuntimeError(f"tutorial /mine answered {status}: {body[:200]!r}")
        mined = [json.loads(get(f"{n.url}/_bench/mined")[1]) for n in self.nodes]
        lengths = {m["length"] for m in mined}
        if len(lengths) != 1:
            raise RuntimeError(f"the tutorial's peers did not adopt the block: lengths {lengths}")
        return done - float(mined[0]["at"])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def catch_up(work: Path, snapshot: Path, height: int) -> tuple[float, int]:
    """A fresh node joins a node holding `snapshot` (HTTP only): seconds from its ledger's
    first answer to having every block, and the blocks it fetched in that time."""
    root = work / "catch-up"
    shutil.rmtree(root, ignore_errors=True)
    for k in (1, 2):
        (root / f"node{k}").mkdir(parents=True)
    shutil.copy(snapshot, root / "node1" / f"ledger-{REGTEST.name}.sqlite3")
    net = UpNode(root, nodes=2, bus="per-node")
    drain(net.proc, net.lines)
    fresh = net.ledger_url(2)
    try:
        start = first = None
        deadline = time.monotonic() + 1800
        last_said = 0.0
        while time.monotonic() < deadline:
            try:
                now_height = int(json.loads(get(f"{fresh}/status", timeout=10)[1])["height"])
            except (OSError, KeyError, ValueError):
                time.sleep(0.05)
                continue
            now = time.monotonic()
            if start is None:
                start, first = now, now_height
            if now_height >= height:
                assert first is not None
                return now - start, height - first
            if now - last_said > 10:
                say(f"  catch-up: height {now_height:,}/{height:,}")
                last_said = now
            time.sleep(0.05)
        raise RuntimeError(f"the fresh node did not reach height {height} in time")
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)


def next_block(builder: ChainBuilder) -> tuple[dict[str, object], str]:
    block = next(iter(builder.blocks(1)))
    return block.to_dict(), block.hash
