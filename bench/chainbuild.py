"""Large regtest chains for benchmarks, built quickly and imported through a node's real API.

`ChainBuilder` makes valid regtest blocks in this process (trivial proof of work, real Ed25519
signatures): each block pays its coinbase to a funder key and carries `txs_per_block` signed
transfers from that key to a ring of recipients, so addresses have real histories.
`import_blocks` hands them one by one to a running ledger's `POST /mining/submit` over one
keep-alive connection: the node validates and stores every block exactly as it would a
miner's. Nothing here is timed; the benchmarks time what they measure afterwards.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from pybtc import REGTEST, Block, BlockHeader, PrivateKey, Transaction
from pybtc.encoding import sha256
from pybtc.mining import build_block, mine_block


def bench_key(n: int) -> PrivateKey:
    """The n-th deterministic benchmark key."""
    return PrivateKey(sha256(f"pybtc bench key {n}".encode()))


class ChainBuilder:
    """Blocks on regtest from `tip` on: coinbase to `funder`, then signed transfers."""

    def __init__(
        self,
        tip: BlockHeader,
        *,
        txs_per_block: int = 2,
        recipients: int = 50,
        fund: dict[str, int] | None = None,
    ) -> None:
        self.tip = tip
        self.funder = bench_key(0)
        self.recipients = [bench_key(i).address for i in range(1, recipients + 1)]
        self.txs_per_block = txs_per_block
        self.nonce = 0
        self.funded = False  # the first block funds the key; transfers start in the next one
        self.fund = dict(fund or {})
        """Addresses paid once, in the first block with transfers (before the ring's)."""

    def _transfer(self, recipient: str, amount: int) -> Transaction:
        tx = Transaction.create(
            self.funder,
            recipient,
            amount,
            fee=1_000,
            nonce=self.nonce,
            timestamp=self.tip.timestamp,
            network_id=REGTEST.network_id,
        )
        self.nonce += 1
        return tx

    def blocks(self, count: int) -> Iterator[Block]:
        for _ in range(count):
            txs = []
            if self.funded:
                txs += [self._transfer(address, amount) for address, amount in self.fund.items()]
                self.fund = {}
                for _ in range(self.txs_per_block):
                    recipient = self.recipients[self.nonce % len(self.recipients)]
                    txs.append(self._transfer(recipient, 1_000 + self.nonce))
            block = build_block(
                REGTEST,
                self.tip,
                bits=self.tip.bits,
                transactions=txs,
                miner_address=self.funder.address,
                timestamp=self.tip.timestamp + 1,
            )
            mined = mine_block(block)
            assert mined is not None
            self.tip = mined.header
            self.funded = True
            yield mined


class Ledger:
    """A keep-alive JSON connection to a ledger."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def tip(self) -> BlockHeader:
        status, body = self.request("GET", "/status")
        assert status == 200, body
        assert isinstance(body, dict)
        status, view = self.request("GET", f"/blocks/{body['tip']}")
        assert status == 200, view
        assert isinstance(view, dict)
        return Block.from_dict(view["block"]).header

    def close(self) -> None:
        self.conn.close()


def import_blocks(url: str, count: int, builder: ChainBuilder | None = None) -> ChainBuilder:
    """Build `count` blocks on the ledger's tip and submit them; progress on stderr."""
    ledger = Ledger(url)
    try:
        builder = builder or ChainBuilder(ledger.tip())
        start = time.monotonic()
        for i, block in enumerate(builder.blocks(count), 1):
            status, body = ledger.request("POST", "/mining/submit", block.to_dict())
            if status != 201:
                raise RuntimeError(f"block {block.index} refused: {body}")
            if i % 500 == 0 or i == count:
                rate = i / (time.monotonic() - start)
                print(
                    f"  imported {i}/{count} blocks (height {block.index}, {rate:.0f} blocks/s)",
                    file=sys.stderr,
                    flush=True,
                )
        return builder
    finally:
        ledger.close()
