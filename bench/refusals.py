"""What refusing a block costs a ledger: the issue's big block at a wrong height, the same block
sent again, a bad proof of work, and a weak side block, each POSTed to `/mining/submit`.

The ledger app runs in this process (aiohttp's test server, regtest, SQLite in a temporary
directory, no Redis), so the figures are the CPU seconds (`time.process_time`) and wall
milliseconds of one whole request as the ledger's event loop spends them; the client side
only sends bytes serialized beforehand. The big block carries 1,999 validly signed transfers
from keys that own nothing (about 0.92 MB). Run it on a checkout before and after a change:

    .venv/bin/python -m bench.refusals
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from pybtc import REGTEST, Block, BlockHeader, Transaction
from pybtc.mining import mine_block
from services.common.settings import Settings
from services.node.app import create_app
from tests.chainutil import bad_pow, block_at, test_key, unfunded_transfers

MINER = test_key(0)
SENDS = 5


def block_on(parent: BlockHeader, txs: Sequence[Transaction], index: int | None = None) -> Block:
    """A mined block on `parent`; at `index` instead of the next height if given."""
    height = parent.index + 1 if index is None else index
    return block_at(parent, txs, index=height, miner=MINER.address)


async def timed(client: TestClient, raw: bytes) -> tuple[int, str, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    resp = await client.post(
        "/mining/submit", data=raw, headers={"Content-Type": "application/json"}
    )
    body = await resp.json()
    return (
        resp.status,
        str(body.get("reason", "")),
        time.process_time() - cpu,
        (time.perf_counter() - wall) * 1000,
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(network="regtest", data_dir=Path(tmp))
        if hasattr(settings, "bad_blocks_per_minute"):  # the resends are the point here
            settings = settings.with_(bad_blocks_per_minute=0)
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            parent = REGTEST.genesis.header
            for _ in range(9):  # tip at height 10
                resp = await client.get("/mining/template", params={"address": MINER.address})
                template = Block.from_dict((await resp.json())["block"])
                mined = mine_block(template)
                assert mined is not None
                assert (await client.post("/mining/submit", json=mined.to_dict())).status == 201
                parent = mined.header
            big = unfunded_transfers(1_999)
            cases = {
                "big block, wrong height": block_on(parent, big, index=parent.index + 5),
                "big block, bad proof of work": bad_pow(block_on(parent, big)),
                "big side block at height 2": block_on(REGTEST.genesis.header, big),
            }
            print(f"{'case':34} {'send':>4} {'status':>6} {'reason':18} {'cpu s':>7} {'ms':>7}")
            for name, block in cases.items():
                raw = json.dumps(block.to_dict()).encode()
                cpus = []
                for send in range(1, SENDS + 1):
                    status, reason, cpu, ms = await timed(client, raw)
                    cpus.append(cpu)
                    print(f"{name:34} {send:>4} {status:>6} {reason:18} {cpu:7.3f} {ms:7.1f}")
                print(f"{name:34} median cpu {statistics.median(cpus):.3f} s, {len(raw):,} bytes")
            await status_under_load(client, cases["big block, wrong height"])
        finally:
            await client.close()


async def status_under_load(client: TestClient, block: Block, seconds: float = 5.0) -> None:
    """`GET /status` every 0.1 s while four senders keep POSTing `block`."""
    raw = json.dumps(block.to_dict()).encode()
    headers = {"Content-Type": "application/json"}
    stop = time.perf_counter() + seconds
    sent = [0]

    async def sender() -> None:
        while time.perf_counter() < stop:
            async with client.post("/mining/submit", data=raw, headers=headers) as resp:
                await resp.read()
            sent[0] += 1

    async def probe() -> list[float]:
        times = []
        while time.perf_counter() < stop:
            start = time.perf_counter()
            async with client.get("/status") as resp:
                await resp.read()
            times.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.1)
        return times

    *_, times = await asyncio.gather(*(sender() for _ in range(4)), probe())
    print(
        f"/status under 4 senders of the wrong-height block: median {statistics.median(times):.0f}"
        f" ms, max {max(times):.0f} ms ({len(times)} probes, {sent[0]} blocks refused)"
    )


if __name__ == "__main__":
    asyncio.run(main())
