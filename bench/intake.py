"""Transaction intake: signed transactions per second into one pyBTC ledger over HTTP, beside the
tutorial's node taking its unsigned bodies, and the ceiling of this load on this machine.

Sixteen concurrent clients (aiohttp, in this process; one connection each, kept alive where
the server allows) post `POST /transactions/new` as fast as the answers come, each client
waiting for its answer before the next request. The targets alternate round by round:

- the pyBTC ledger (`python -m services.node`, regtest) with its Redis: transactions signed
  beforehand by 128 funded wallets (8 per client, each wallet's in nonce order), every one
  verified (Ed25519), checked against the sender's balance and pending nonces, stored in
  SQLite (WAL, synchronous=FULL) and announced on the bus before the 201;
- the same on a whole node (`pybtc up`: the miner, explorer and wallet services also receive
  every announcement, on the same two cores);
- the tutorial's node (`seed_node.py`): `{"sender", "recipient", "amount"}`, appended to a list
  without any check;
- the intake ceiling: a trivial aiohttp endpoint that parses the JSON body and answers 201,
  which shows what the clients and HTTP alone cost on this machine.

Between rounds each pyBTC ledger's mempool is mined away: its `/mining/template` is mined here
(regtest proof of work) and handed back through `POST /mining/submit`, as its miner would.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.chainbuild import ChainBuilder, Ledger, bench_key
from bench.common import Figure, Proc, drain, percentile, ratio_at_least, say, wait_http
from bench.tutorial import TutorialNode
from pybtc import REGTEST, Block, PrivateKey, Transaction
from pybtc.mining import mine_block
from services.common.embedded_redis import EmbeddedRedis
from tests.upnode import UpNode, free_port

CLIENTS = 16
WALLETS_PER_CLIENT = 8
FUNDS = 10_000_000  # base units per wallet: ten thousand transfers of 1 + the 1,000 fee

TRIVIAL = r"""
import sys
from aiohttp import web

async def post(request):
    await request.json()
    return web.json_response({"message": "ok"}, status=201)

app = web.Application()
app.router.add_post("/transactions/new", post)
app.router.add_get("/", lambda request: web.json_response({}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@dataclass
class Round:
    seconds: float
    latencies_ms: list[float]
    refused: int

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


async def _load(url: str, per_client: list[list[bytes]], expect: int) -> Round:
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    refused = 0
    connector = aiohttp.TCPConnector(limit=len(per_client))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(bodies: list[bytes]) -> None:
            nonlocal refused
            for body in bodies:
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != expect:
                        refused += 1
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(client(bodies) for bodies in per_client))
        seconds = time.perf_counter() - start
    return Round(seconds, latencies, refused)


def load(url: str, per_client: list[list[bytes]], expect: int = 201) -> Round:
    return asyncio.run(_load(url, per_client, expect))


class Wallets:
    """128 funded wallets; `bodies(n)` signs the next n transfers of each client, in order."""

    def __init__(self) -> None:
        self.keys = [bench_key(1000 + i) for i in range(CLIENTS * WALLETS_PER_CLIENT)]
        self.nonces = [0] * len(self.keys)
        self.sink = bench_key(999).address

    def bodies(self, per_client: int) -> list[list[bytes]]:
        out = []
        for c in range(CLIENTS):
            bodies = []
            for i in range(per_client):
                w = c * WALLETS_PER_CLIENT + i % WALLETS_PER_CLIENT
                key: PrivateKey = self.keys[w]
                tx = Transaction.create(
                    key,
                    self.sink,
                    1,
                    fee=1_000,
                    nonce=self.nonces[w],
                    timestamp=int(time.time()),
                    network_id=REGTEST.network_id,
                )
                self.nonces[w] += 1
                bodies.append(json.dumps(tx.to_dict()).encode())
            out.append(bodies)
        return out


def tutorial_bodies(per_client: int) -> list[list[bytes]]:
    return [
        [
            json.dumps({"sender": f"wallet_{c}", "recipient": "wallet_x", "amount": 1}).encode()
            for _ in range(per_client)
        ]
        for c in range(CLIENTS)
    ]


def mine_away(ledger_url: str) -> int:
    """Mine the ledger's templates here until its mempool is empty; the blocks it took."""
    ledger = Ledger(ledger_url)
    miner = bench_key(998).address
    blocks = 0
    try:
        while True:
            status, body = ledger.request("GET", "/mempool?limit=1")
            assert status == 200, body
            assert isinstance(body, dict)
            if body["count"] == 0:
                return blocks
            status, template = ledger.request("GET", f"/mining/template?address={miner}")
            assert status == 200, template
            assert isinstance(template, dict)
            mined = mine_block(Block.from_dict(template["block"]))
            assert mined is not None
            status, answer = ledger.request("POST", "/mining/submit", mined.to_dict())
            if status != 201:
                raise RuntimeError(f"the mined template was refused: {answer}")
            blocks += 1
    finally:
        ledger.close()


class LedgerAlone:
    """The ledger service by itself, with its own embedded Redis (the bus it announces on);
    its files under `work` are named after `stage`."""

    def __init__(self, work: Path, stage: str = "intake") -> None:
        self.redis = EmbeddedRedis(data_dir=work / f"{stage}-redis", persist=False).start()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        data = work / f"{stage}-ledger"
        data.mkdir()
        env = {
            "PYBTC_NETWORK": REGTEST.name,
            "PYBTC_DATA_DIR": str(data),
            "PYBTC_LEDGER_PORT": str(port),
            "PYBTC_REDIS_URL": self.redis.url,
            "PYBTC_PEERS": "",
            "PYBTC_LOG_LEVEL": "WARNING",
        }
        self.proc = Proc([sys.executable, "-m", "services.node"], work / f"{stage}-ledger.log", env)
        self.proc.start()

    def wait(self) -> None:
        wait_http(f"{self.url}/healthz", self.proc)

    def stop(self) -> None:
        self.proc.stop()
        self.redis.stop()


def fund(url: str, blocks: list[Block]) -> None:
    ledger = Ledger(url)
    try:
        for block in blocks:
            status, body = ledger.request("POST", "/mining/submit", block.to_dict())
            if status != 201:
                raise RuntimeError(f"funding block refused: {body}")
    finally:
        ledger.close()


def run(work: Path, rounds: int, per_client: int, verify: list[float]) -> list[Figure]:
    say(f"intake: {rounds} rounds of {CLIENTS} x {per_client} requests per target")
    alone = LedgerAlone(work)
    node = UpNode(work / "intake-node")
    tutorial = TutorialNode(work)
    trivial_port = free_port()
    trivial = Proc([sys.executable, "-c", TRIVIAL, str(trivial_port)], work / "trivial.log")
    trivial.start()
    try:
        alone.wait()
        node.wait_ready()
        drain(node.proc, node.lines)
        tutorial.wait()
        wait_http(f"http://127.0.0.1:{trivial_port}/", trivial)
        wallets = {"ledger": Wallets(), "node": Wallets()}
        builder = ChainBuilder(
            REGTEST.genesis.header, fund={k.address: FUNDS for k in wallets["node"].keys}
        )
        funding = list(builder.blocks(2))  # block 1 pays the funder; block 2 funds the wallets
        fund(alone.url, funding)
        fund(node.url, funding)

        targets = {
            "ledger": (f"{alone.url}/transactions/new", wallets["ledger"].bodies, alone.url),
            "node": (f"{node.url}/transactions/new", wallets["node"].bodies, node.url),
            "tutorial": (f"{tutorial.url}/transactions/new", tutorial_bodies, None),
            "ceiling": (f"http://127.0.0.1:{trivial_port}/transactions/new", tutorial_bodies, None),
        }
        results: dict[str, list[Round]] = {name: [] for name in targets}
        for r in range(rounds + 1):  # round 0 warms up every target and is not counted
            for name, (url, make, ledger_url) in targets.items():
                result = load(url, make(per_client if r else 20))
                if result.refused:
                    raise RuntimeError(f"{name}: {result.refused} requests were not answered 201")
                if r:
                    results[name].append(result)
                if ledger_url is not None:
                    mine_away(ledger_url)
            if r:
                line = ", ".join(f"{n} {results[n][-1].rate:,.0f}/s" for n in results)
                say(f"  intake round {r}/{rounds}: {line}")
    finally:
        for proc in (alone, tutorial, trivial):
            proc.stop()
        node.stop()

    def rates(name: str) -> list[float]:
        return [r.rate for r in results[name]]

    def lat(name: str, q: float) -> list[float]:
        return [percentile(r.latencies_ms, q) for r in results[name]]

    section = "Transaction intake (16 concurrent clients over HTTP)"
    intake = Figure(
        section,
        "ledger: transactions accepted/s",
        "/s",
        rates("ledger"),
        rates("tutorial"),
        goal="≥ 4× the tutorial",
        check=ratio_at_least(4.0),
        note="pyBTC: signed, verified, checked, stored, announced; tutorial: unsigned, unchecked",
    )
    p99 = Figure(
        section,
        "ledger: latency p99",
        "ms",
        lat("ledger", 99),
        lat("tutorial", 99),
        higher_is_better=False,
        goal="no worse than the tutorial",
        check=ratio_at_least(1.0),
    )
    p50 = Figure(
        section,
        "ledger: latency p50",
        "ms",
        lat("ledger", 50),
        lat("tutorial", 50),
        higher_is_better=False,
    )
    whole = Figure(
        section,
        "whole node (pybtc up): transactions accepted/s",
        "/s",
        rates("node"),
        rates("tutorial"),
        note="miner, explorer and wallet also take every announcement, on the same cores",
    )
    whole_p99 = Figure(
        section,
        "whole node: latency p99",
        "ms",
        lat("node", 99),
        lat("tutorial", 99),
        higher_is_better=False,
    )
    ceiling_rate = statistics.median(rates("ceiling"))
    ceiling = Figure(
        "Intake ceiling (same run)",
        "trivial aiohttp endpoint, requests/s",
        "/s",
        rates("ceiling"),
        note=f"the ledger's intake is {intake.median / ceiling_rate:.0%} of it",
    )
    verify_figure = Figure(
        "Intake ceiling (same run)",
        "Ed25519 verifications/s, one core",
        "/s",
        verify,
        note=f"the ledger's intake is {intake.median / statistics.median(verify):.0%} of it",
    )
    return [intake, p50, p99, whole, whole_p99, ceiling, verify_figure]
