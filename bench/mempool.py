"""Mempool reads on a full pool: the mining order's figures at the policy's 5,000 pending.

One ledger (`python -m services.node`, regtest, its own embedded Redis) is funded with 100
wallets, then takes 5,000 signed transfers (50 per wallet, each wallet's in nonce order, fees
spread so that the mining order interleaves the senders) over one keep-alive connection. Each
POST changes the pool, and its 201 carries `mempool_position` and `blocks_to_wait`: the
ledger places the newcomer in the order it keeps (services/node/mempoolview.py) rather than
ordering 5,000 rows again, and the latency of the last 100, at 4,900 to 5,000 pending, shows
what that costs. Then every read of the order is timed on a fresh connection, the whole body read:
`GET /mempool` (the first page, the last page, a page of 500), `GET /tx/{txid}` of a pending
transaction in the middle of the order, `GET /mempool/blocks`, `GET /fees` and the block
template (1,999 transactions), each after the pool stopped changing (the order is computed
once per change, so these read the same one).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from bench.chainbuild import ChainBuilder, Ledger, bench_key
from bench.common import Figure, alternate, say, timed_get
from bench.intake import LedgerAlone, fund
from pybtc import REGTEST, Transaction

WALLETS = 100
PER_WALLET = 50
POOL = WALLETS * PER_WALLET
"""The ledger's default PYBTC_MEMPOOL_MAX_COUNT."""
FUNDS = 10_000_000
SECTION = f"Mempool reads (a full pool of {POOL:,} pending, one ledger)"


def signed_pool() -> list[Transaction]:
    """5,000 transfers in arrival order: round r carries every wallet's nonce r."""
    keys = [bench_key(2000 + i) for i in range(WALLETS)]
    sink = bench_key(999).address
    fees = random.Random(18)
    return [
        Transaction.create(
            key,
            sink,
            1,
            fee=fees.randrange(1_000, 20_000),
            nonce=nonce,
            timestamp=int(time.time()),
            network_id=REGTEST.network_id,
        )
        for nonce in range(PER_WALLET)
        for key in keys
    ]


def run(work: Path, rounds: int) -> list[Figure]:
    say(f"mempool: one ledger filled to {POOL:,} pending transactions")
    node = LedgerAlone(work, "mempool")
    try:
        node.wait()
        keys = [bench_key(2000 + i) for i in range(WALLETS)]
        builder = ChainBuilder(REGTEST.genesis.header, fund={k.address: FUNDS for k in keys})
        fund(node.url, list(builder.blocks(2)))
        pool = signed_pool()
        ledger = Ledger(node.url)
        posts: list[float] = []
        try:
            for tx in pool:
                start = time.perf_counter()
                status, body = ledger.request("POST", "/transactions/new", tx.to_dict())
                posts.append((time.perf_counter() - start) * 1000)
                if status != 201:
                    raise RuntimeError(f"a transfer was refused: {body}")
            status, page = ledger.request("GET", f"/mempool?offset={POOL // 2}&limit=1")
        finally:
            ledger.close()
        if status != 200 or not isinstance(page, dict) or page["count"] != POOL:
            raise RuntimeError(f"the pool is not full: {page}")
        middle = page["transactions"][0]["txid"]
        url = node.url
        miner = bench_key(998).address
        sides = {
            "GET /mempool, first 100": lambda: timed_get(f"{url}/mempool"),
            "GET /mempool, last 100": lambda: timed_get(f"{url}/mempool?offset={POOL - 100}"),
            "GET /mempool?limit=500": lambda: timed_get(f"{url}/mempool?limit=500"),
            "GET /tx/{txid}, pending, middle": lambda: timed_get(f"{url}/tx/{middle}"),
            "GET /mempool/blocks": lambda: timed_get(f"{url}/mempool/blocks"),
            "GET /fees": lambda: timed_get(f"{url}/fees"),
            "GET /mining/template (1,999 txs)": lambda: timed_get(
                f"{url}/mining/template?address={miner}"
            ),
        }
        samples = alternate(sides, max(3, rounds // 5), 5)
    finally:
        node.stop()
    last = posts[-100:]
    figures = [
        Figure(
            SECTION,
            "POST /transactions/new at 4,900–5,000 pending",
            "ms",
            last,
            higher_is_better=False,
            note="keep-alive; each 201 places the newcomer in the kept order (one pass)",
        ),
        Figure(
            SECTION,
            "POST /transactions/new at 0–100 pending",
            "ms",
            posts[:100],
            higher_is_better=False,
            note="the same, on a nearly empty pool",
        ),
    ]
    figures += [
        Figure(SECTION, name, "ms", values, higher_is_better=False)
        for name, values in samples.items()
    ]
    say("  " + json.dumps({f.name: round(f.median, 1) for f in figures}))
    return figures
