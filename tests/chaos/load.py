"""The chaos run's traffic: signed transfers offered to the nodes, and readers of every page.

`TxLoad` (a thread) signs transfers from twelve funded keys, each homed on one node, and offers
them the two ways users do: straight to the ledger (`POST /transactions/new`, after
`GET /address/{a}` for the next nonce), or through the node's wallet service like the browser
wallet (`GET /api/address/{a}`, then `POST /api/broadcast` with its CSRF token). When the home
node does not answer at all, the sender fails over to another node, as a wallet pointed at a
second node would: with a nonce read there, which may already be taken by a transfer pending at
the home node (a real double spend, which the network must settle with a recorded reason).
Every transfer answered 201 is kept; every other answer is counted by status and reason; every
offer and its answer is a line of the run's `transfers.jsonl`.

`Readers` (a thread) reads the explorers' and wallets' pages at random, and `follow_events`
(coroutines on the switchboard's loop) keep each explorer's and wallet's live-update stream
(`GET /events`) open, reconnecting after every kill, and count what they receive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import aiohttp

from pybtc import COIN, PrivateKey, Transaction
from tests.chainutil import test_key
from tests.chaos.cluster import NO_ANSWER, PARAMS, REWARD_KEYS, Node
from tests.functional.conftest import Reply, http

logger = logging.getLogger(__name__)

SENDERS = [*REWARD_KEYS, *(test_key(100 + i) for i in range(9))]
"""Sender i is homed on node i % 3; the first three are the miners' reward keys, which pay the
others until the money has spread (a sender without the coins for a transfer is skipped)."""
SINKS = [test_key(200 + i).address for i in range(4)]
"""Only ever receive."""
TIMEOUT = 10.0


@dataclass(frozen=True)
class Ack:
    """A transfer some node answered 201 for."""

    tx: Transaction
    node: str
    via: str
    at: float
    """Seconds into the chaos."""


@dataclass
class LoadStats:
    offered: int = 0
    acked: dict[str, Ack] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    """`<status> <reason>` of every answer but 201."""
    no_answer: Counter[str] = field(default_factory=Counter)
    """Offers that got no HTTP answer (refused connection, reset, timeout), by node."""
    unanswered: list[str] = field(default_factory=list)
    """Transfers posted that got no answer: they may have been admitted all the same."""
    skipped: int = 0
    """Turns of a sender without the coins for a transfer (not offered)."""
    failovers: int = 0
    too_many_requests: int = 0


class WalletClient:
    """The browser wallet's side of the wallet API: a cookie jar and the CSRF token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(CookieJar())
        )
        self.token = ""

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if method == "POST":
            if not self.token:
                self.token = json.loads(self.request("GET", "/api/csrf").text)["token"]
            headers["X-CSRF-Token"] = self.token
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                return Reply(response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, exc.read().decode())


class TxLoad(threading.Thread):
    """Offers a signed transfer every `interval` seconds until stopped."""

    def __init__(self, nodes: list[Node], seed: int, interval: float, journal: Path) -> None:
        super().__init__(name="tx load", daemon=True)
        self.journal = journal
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.interval = interval
        self.stats = LoadStats()
        self.stopping = threading.Event()
        self.wallets = {n.name: WalletClient(n.services["wallet"].url) for n in nodes}
        self.errors: list[str] = []
        self.began = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)

    def run(self) -> None:
        self.began = time.monotonic()
        try:
            while not self.stopping.is_set():
                self.offer_one()
                self.stopping.wait(self.interval)
        except Exception as exc:  # reported, never silent: the run fails on it
            logger.exception("the load thread failed")
            self.errors.append(f"load thread: {type(exc).__name__}: {exc}")

    def offer_one(self) -> None:
        index = self.rng.randrange(len(SENDERS))
        sender = SENDERS[index]
        home = self.nodes[index % len(self.nodes)]
        others = [n for n in self.nodes if n is not home]
        self.rng.shuffle(others)
        for attempt, node in enumerate([home, *others]):
            via = "wallet" if self.rng.random() < 0.3 else "ledger"
            try:
                self._offer(sender, node, via)
            except NO_ANSWER as exc:
                self.stats.no_answer[f"{node.name}/{via}"] += 1
                logger.debug("no answer node=%s via=%s error=%s", node.name, via, exc)
                continue
            if attempt:
                self.stats.failovers += 1
            return

    def _offer(self, sender: PrivateKey, node: Node, via: str) -> None:
        wallet = self.wallets[node.name]
        if via == "wallet":
            info = wallet.request("GET", f"/api/address/{sender.address}")
        else:
            info = http("GET", f"{node.url}/address/{sender.address}", timeout=TIMEOUT)
        if info.status != 200:
            self.stats.too_many_requests += info.status == 429
            raise ConnectionError(f"{node.name} {via} cannot tell the nonce: {info.status}")
        account = info.json()
        spendable = account["unconfirmed_balance"]
        # Rich senders (the miners' keys) spread the money; the others pass on small change.
        amount = self.rng.randrange(COIN // 10, COIN) if spendable > 10 * COIN else 0
        amount = amount or self.rng.randrange(1_000, 50_000)
        fee = self.rng.randrange(1_000, 2_000)
        if spendable < amount + fee:
            self.stats.skipped += 1
            return
        recipient = self.rng.choice([k.address for k in SENDERS if k is not sender] + SINKS)
        tx = Transaction.create(
            sender,
            recipient,
            amount,
            fee=fee,
            nonce=account["next_nonce"],
            timestamp=int(time.time()),
            network_id=PARAMS.network_id,
        )
        self.stats.offered += 1
        try:
            if via == "wallet":
                reply = wallet.request("POST", "/api/broadcast", tx.to_dict())
            else:
                url = f"{node.url}/transactions/new"
                reply = http("POST", url, json_body=tx.to_dict(), timeout=TIMEOUT)
        except NO_ANSWER:
            self.stats.unanswered.append(tx.txid)
            raise
        at = time.monotonic() - self.began
        if reply.status == 201:
            self.stats.acked[tx.txid] = Ack(tx, node.name, via, at)
        else:
            self._refused(reply)
        self._write(tx, node, via, at, reply)

    def _write(self, tx: Transaction, node: Node, via: str, at: float, reply: Reply) -> None:
        """One line per offer in the journal, for the post-mortem of a failed run."""
        line = {
            "at": round(at, 3),
            "node": node.name,
            "via": via,
            "status": reply.status,
            "answer": reply.text[:300],
            "tx": tx.to_dict(),
        }
        with self.journal.open("a") as journal:
            journal.write(json.dumps(line) + "\n")

    def _refused(self, reply: Reply) -> None:
        if reply.status == 429:
            self.stats.too_many_requests += 1
        try:
            reason = reply.json().get("reason", "?")
        except (ValueError, AttributeError):
            reason = "?"
        self.stats.refused[f"{reply.status} {reason}"] += 1


# -- readers ---------------------------------------------------------------------------------


EXPLORER_PAGES = ("/", "/blocks", "/mempool", "/forks", "/network", "/api/summary", "/charts")
WALLET_PAGES = ("/", "/api/params")


class Readers(threading.Thread):
    """Reads a random explorer or wallet page every `interval` seconds; counts the answers."""

    def __init__(self, nodes: list[Node], load: TxLoad, seed: int, interval: float) -> None:
        super().__init__(name="readers", daemon=True)
        self.nodes = nodes
        self.load = load
        self.rng = random.Random(seed)
        self.interval = interval
        self.answers: Counter[str] = Counter()
        """`<kind> <status class>`, e.g. `explorer 2xx`, `wallet none` (no answer)."""
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)

    def pages(self) -> tuple[list[str], list[str]]:
        """Every explorer and wallet page worth reading now (with a recent txid and address)."""
        address = self.rng.choice(SENDERS).address
        explorer, wallet = list(EXPLORER_PAGES), list(WALLET_PAGES)
        explorer.append(f"/address/{address}")
        wallet.append(f"/api/address/{address}")
        acked = list(self.load.stats.acked)[-50:]
        if acked:
            txid = self.rng.choice(acked)
            explorer.append(f"/tx/{txid}")
            wallet.append(f"/api/tx/{txid}")
        return explorer, wallet

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                self.read_one()
        except Exception as exc:  # reported, never silent: the run fails on it
            logger.exception("the readers failed")
            self.errors.append(f"readers: {type(exc).__name__}: {exc}")

    def read_one(self) -> None:
        node = self.rng.choice(self.nodes)
        kind = self.rng.choice(("explorer", "wallet"))
        explorer, wallet = self.pages()
        path = self.rng.choice(explorer if kind == "explorer" else wallet)
        try:
            reply = http("GET", node.services[kind].url + path, timeout=TIMEOUT)
        except NO_ANSWER:
            self.answers[f"{kind} none"] += 1
            return
        self.answers[f"{kind} {reply.status // 100}xx"] += 1
        if reply.status >= 500:
            logger.info("%s %s%s -> %d", node.name, kind, path, reply.status)


async def follow_events(url: str, counts: Counter[str], key: str) -> None:
    """Keep `GET url` (an SSE stream) open, reconnecting a second after each loss; count the
    events received under `key` and the reconnections under `key + " reconnects"`."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=40)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url) as response:
                    async for line in response.content:
                        if line.startswith(b"event:"):
                            counts[key] += 1
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                pass
            counts[f"{key} reconnects"] += 1
            await asyncio.sleep(1.0)
