"""Refused blocks cost little, and blocks nobody asked for on weaker branches cost no disk.

Each test runs the real ledger app (SQLite in tmp_path, the session's real Redis) and sends it
real signed, mined regtest blocks over HTTP. How much checking a block cost is read from the
ledger's own counts (`Ledger.checks`: blocks that reached the header rules and the transaction
rules; `Ledger.refused.hits`: blocks answered from the memory of refusals), never from timing.
The big block is the issue's: 1,999 signed transfers from keys that own nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pybtc import REGTEST, Block, BlockHeader
from pybtc.mining import build_block, mine_block
from services.common.bus import Bus, Kind
from services.node.app import create_app
from services.node.keys import BAD_BLOCKS, LEDGER
from services.node.ledger import Ledger
from services.node.refusals import COST_BYTES
from tests.chainutil import bad_pow, block_at, child_block, test_key, unfunded_transfers
from tests.service.ledgerutil import ledger_settings, mine
from tests.service.stubpeers import StubPeer

MINER = test_key(0)
PATH = "/mining/submit"


def big_block(parent: BlockHeader, *, index: int | None = None) -> Block:
    """A mined block on `parent` carrying the unfunded transfers; at `index` instead of the
    next height if given (its coinbase numbered for that height: only the height is wrong)."""
    height = parent.index + 1 if index is None else index
    return block_at(parent, unfunded_transfers(), index=height, miner=MINER.address)


def _mined(block: Block) -> Block:
    mined = mine_block(block)
    assert mined is not None
    return mined


def ledger_of(client: TestClient) -> Ledger:
    return client.app[LEDGER]


async def tip(client: TestClient) -> BlockHeader:
    status = await (await client.get("/status")).json()
    view = await (await client.get(f"/blocks/{status['tip']}")).json()
    return Block.from_dict(view["block"]).header


async def post(client: TestClient, block: Block | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = block.to_dict() if isinstance(block, Block) else block
    resp = await client.post(PATH, json=body)
    return resp.status, await resp.json()


async def test_a_refused_block_sent_again_is_answered_from_memory(
    ledger_client: TestClient,
) -> None:
    """The big block at a wrong height is refused `bad-index` without its transactions being
    checked, and each time it is sent again with the same reason from the memory of refusals;
    a block whose fault is in a transaction (checked once) is not checked again either."""
    await mine(ledger_client, MINER.address, 3)
    ledger = ledger_of(ledger_client)
    parent = await tip(ledger_client)
    wrong_height = big_block(parent, index=parent.index + 5)
    before = dict(ledger.checks)
    answers = [await post(ledger_client, wrong_height) for _ in range(4)]
    assert {(status, body["reason"]) for status, body in answers} == {(400, "bad-index")}
    assert ledger.checks["body"] == before["body"]  # its transactions were never checked
    assert ledger.checks["header"] == before["header"] + 1  # its header once, then memory
    assert ledger.refused.hits == 3
    assert "refused before" in answers[-1][1]["error"]

    forged = list(unfunded_transfers(5))
    forged[-1] = replace(forged[-1], signature="00" * 64)
    bad_signature = _mined(
        build_block(
            REGTEST,
            parent,
            bits=parent.bits,
            transactions=forged,
            miner_address=MINER.address,
            timestamp=parent.timestamp + 1,
        )
    )
    for _ in range(3):
        status, answer = await post(ledger_client, bad_signature)
        assert (status, answer["reason"]) == (400, "bad-signature")
    assert ledger.checks["body"] == before["body"] + 1  # checked once
    assert ledger.refused.hits == 5


async def test_a_good_block_is_not_poisoned_by_a_tampered_copy(ledger_client: TestClient) -> None:
    """The hash commits to the header only: the same header with no transactions, or with
    other ones, is refused, and the real block with that hash is accepted afterwards."""
    await mine(ledger_client, MINER.address, 2)
    parent = await tip(ledger_client)
    good = child_block(parent, miner=MINER.address)
    empty = good.to_dict() | {"transactions": []}
    other = good.to_dict() | {"transactions": [*good.to_dict()["transactions"]] * 2}
    for body, reason in ((empty, "no-transactions"), (other, "bad-merkle-root")):
        for _ in range(2):
            status, answer = await post(ledger_client, body)
            assert (status, answer["reason"]) == (400, reason)
    status, answer = await post(ledger_client, good)
    assert status == 201, answer
    assert answer["is_tip"]


async def test_a_bad_pow_block_never_has_its_transactions_looked_at(
    ledger_client: TestClient,
) -> None:
    """A header that misses its target is refused `bad-pow` before a single transaction is
    decoded (one with an unknown field does not change the answer) or checked."""
    await mine(ledger_client, MINER.address, 2)
    ledger = ledger_of(ledger_client)
    parent = await tip(ledger_client)
    body = bad_pow(big_block(parent)).to_dict()
    body["transactions"][7]["memo"] = "not a field"
    for _ in range(2):
        status, answer = await post(ledger_client, body)
        assert (status, answer["reason"]) == (400, "bad-pow")
    assert ledger.checks["body"] == 2  # the two good blocks' transactions only
    assert ledger.refused.hits == 1


async def test_refused_blocks_are_limited_per_client_but_good_ones_never(
    ledger_client: TestClient,
) -> None:
    """A miner submitting 60 valid blocks as fast as it can is never limited; a client whose
    blocks keep being refused is answered 429 `too-many-bad-blocks` (Retry-After) once its
    burst (the default 20) is spent, before its block is even read."""
    client = ledger_client
    await mine(client, MINER.address, 60)
    parent = await tip(client)
    known = (await client.get(f"/blocks/{parent.hash}")).status
    assert known == 200
    stale = child_block(REGTEST.genesis.header, miner=MINER.address)
    last = Block.from_dict((await (await client.get(f"/blocks/{parent.hash}")).json())["block"])
    for _ in range(8):  # a retry of a known block and a stale one are not counted
        assert (await post(client, last))[1]["reason"] == "duplicate-block"
        assert (await post(client, stale))[1]["reason"] == "low-work"
    small = bad_pow(child_block(parent, miner=MINER.address))
    answers = [await post(client, small) for _ in range(20)]
    assert {(status, body["reason"]) for status, body in answers} == {(400, "bad-pow")}
    resp = await client.post(PATH, json=small.to_dict())
    answer = await resp.json()
    assert (resp.status, answer["reason"]) == (429, "too-many-bad-blocks"), answer
    assert int(resp.headers["Retry-After"]) >= 1
    status, answer = await post(client, child_block(parent, miner=MINER.address))
    assert (status, answer["reason"]) == (429, "too-many-bad-blocks")  # until it is paid back


async def test_the_big_block_spends_a_burst_at_once(ledger_client: TestClient) -> None:
    """A refused block counts 1 plus 1 per whole 100 kB: two big ones (0.93 MB) spend the
    default burst of 20; a resend answered from memory would have counted 1."""
    client = ledger_client
    await mine(client, MINER.address, 2)
    parent = await tip(client)
    wrong = [big_block(parent, index=parent.index + n) for n in (3, 4)]
    assert [(await post(client, block))[0] for block in wrong] == [400, 400]
    status, answer = await post(client, bad_pow(child_block(parent)))
    assert (status, answer["reason"]) == (429, "too-many-bad-blocks"), answer


async def test_a_weak_side_block_is_not_stored(ledger_client: TestClient) -> None:
    """With the tip at height 10, a valid-looking big block at height 2 (on genesis) is
    answered 409 `low-work` before its transactions are checked, and nothing is stored."""
    await mine(ledger_client, MINER.address, 9)
    ledger = ledger_of(ledger_client)
    assert ledger.height == 10
    blocks_before = ledger.store.block_count()
    side = big_block(REGTEST.genesis.header)
    for _ in range(2):
        status, answer = await post(ledger_client, side)
        assert (status, answer.get("reason")) == (409, "low-work"), answer
    assert ledger.store.block_meta(side.hash) is None
    assert (await ledger_client.get(f"/blocks/{side.hash}")).status == 404
    assert ledger.store.block_count() == blocks_before
    assert ledger.checks["body"] == 9  # the nine good blocks': the side block's never


async def test_a_competing_tip_with_equal_work_is_stored(ledger_client: TestClient) -> None:
    """A sibling of the tip has as much work: stored (first seen stays the tip)."""
    await mine(ledger_client, MINER.address, 4)
    ledger = ledger_of(ledger_client)
    head = await tip(ledger_client)
    parent = ledger.store.get_header(head.previous_hash)
    assert parent is not None
    rival = child_block(parent, miner=test_key(4).address)
    status, answer = await post(ledger_client, rival)
    assert status == 201, answer
    assert not answer["is_tip"]
    assert ledger.store.block_meta(rival.hash) is not None
    assert ledger.tip_hash == head.hash
    status, answer = await post(ledger_client, child_block(rival.header))  # now it wins
    assert (status, answer["is_tip"], answer["reorg_depth"]) == (201, True, 1)


async def test_a_sync_stores_a_longer_branch_that_forks_low(ledger_client: TestClient) -> None:
    """Blocks a sync asks for are stored while their branch is still weaker than the tip:
    headers-first proved it better. A branch forking at genesis, one block longer, wins."""
    await mine(ledger_client, MINER.address, 9)
    rival = [REGTEST.genesis]
    for _ in range(10):
        rival.append(child_block(rival[-1].header, miner=test_key(6).address))
    stub = await StubPeer(rival, armed=True).start()
    try:
        resp = await ledger_client.post("/nodes/resolve", json={"miner_node": stub.url})
        assert resp.status == 200, await resp.text()
    finally:
        await stub.stop()
    ledger = ledger_of(ledger_client)
    assert (ledger.tip_hash, ledger.height) == (rival[-1].hash, 11)


async def test_deep_side_branches_are_pruned_and_the_main_chain_kept(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """Side blocks more than 100 below the tip, and older than the grace, are deleted with
    their descendants; a recent deep one is kept; the main chain, its state and the database
    stay whole."""
    clock = [float(REGTEST.genesis.timestamp + 1_000)]
    client = await aiohttp_client(
        create_app(ledger_settings(tmp_path, redis_url), clock=lambda: clock[0])
    )
    ledger = ledger_of(client)
    await mine(client, MINER.address, 4)  # tip at 5
    head = await tip(client)
    old_rival = child_block(ledger.store.get_header(head.previous_hash) or head)  # height 5
    assert (await post(client, old_rival))[0] == 201
    await mine(client, MINER.address, 1)  # tip at 6; the rival stays, 1 below
    old_rival_child = child_block(old_rival.header)  # height 6, as much work as the tip
    assert (await post(client, old_rival_child))[0] == 201
    clock[0] += 700  # past the grace
    await mine(client, MINER.address, 1)
    recent = child_block(ledger.store.get_header((await tip(client)).previous_hash) or head)
    assert (await post(client, recent))[0] == 201  # at height 7, received now
    await mine(client, MINER.address, 103)  # tip at 110: heights 5–7 are more than 100 below
    assert ledger.height == 110
    assert ledger.store.block_meta(old_rival.hash) is None
    assert ledger.store.block_meta(old_rival_child.hash) is None
    assert ledger.store.block_meta(recent.hash) is not None  # within the grace
    clock[0] += 700
    await mine(client, MINER.address, 1)
    assert ledger.store.block_meta(recent.hash) is None
    assert ledger.store.integrity_ok()
    assert ledger.store.block_count() == ledger.height  # the main chain, every block of it
    main = [ledger.store.main_hash(h) for h in range(1, ledger.height + 1)]
    assert all(h is not None and ledger.store.block_meta(h) is not None for h in main)
    assert ledger.account(MINER.address).balance == 110 * REGTEST.subsidy(2)
    resp = await client.get("/blocks/tree", params={"from": 5, "to": 104})
    assert resp.status == 200
    assert len((await resp.json())["blocks"]) == 100  # main-chain blocks only now


async def test_a_weak_block_gossiped_on_the_bus_is_not_stored(
    ledger_client: TestClient, redis_url: str
) -> None:
    """A block announced on the bus is fetched from the announcer and submitted unrequested:
    on a branch weaker than the tip it is not stored, and the listener carries on."""
    await mine(ledger_client, MINER.address, 5)
    ledger = ledger_of(ledger_client)
    side = child_block(REGTEST.genesis.header, miner=test_key(7).address)
    stub = await StubPeer([REGTEST.genesis, side], armed=True).start()
    checked = ledger.checks["header"]
    try:
        async with Bus(redis_url, "regtest", "another-node/ledger") as bus:
            await bus.publish(Kind.BLOCK, {"hash": side.hash, "url": stub.url})
            for _ in range(100):  # fetched, then its header judged: the submission happened
                if ledger.checks["header"] > checked:
                    break
                await asyncio.sleep(0.05)
            assert stub.count("GET", f"/blocks/{side.hash}") == 1
            assert ledger.checks["header"] == checked + 1
    finally:
        await stub.stop()
    assert ledger.store.block_meta(side.hash) is None
    assert ledger.height == 6
    after = child_block(await tip(ledger_client), miner=MINER.address)
    assert (await post(ledger_client, after))[0] == 201  # still accepting


async def test_a_block_refused_before_is_not_fetched_from_the_bus(
    ledger_client: TestClient, redis_url: str
) -> None:
    """A bus announcement of a block whose hash was refused for good is not worth a fetch:
    the announcer is never asked for it, while a new block announced after it is fetched."""
    await mine(ledger_client, MINER.address, 2)
    parent = await tip(ledger_client)
    refused = bad_pow(child_block(parent, miner=MINER.address))
    assert (await post(ledger_client, refused))[1]["reason"] == "bad-pow"
    fresh = child_block(parent, miner=test_key(7).address)
    stub = await StubPeer([REGTEST.genesis], armed=True).start()
    try:
        async with Bus(redis_url, "regtest", "another-node/ledger") as bus:
            await bus.publish(Kind.BLOCK, {"hash": refused.hash, "url": stub.url})
            await bus.publish(Kind.BLOCK, {"hash": fresh.hash, "url": stub.url})
            for _ in range(100):  # the listener takes messages in order: the second shows
                if stub.count("GET", f"/blocks/{fresh.hash}"):  # it has read the first
                    break
                await asyncio.sleep(0.05)
    finally:
        await stub.stop()
    assert stub.count("GET", f"/blocks/{fresh.hash}") == 1
    assert stub.count("GET", f"/blocks/{refused.hash}") == 0


async def test_a_good_block_has_its_header_checked_once(ledger_client: TestClient) -> None:
    """/mining/submit checks the header before it decodes the transactions, and the ledger
    takes that check as done: a block accepted costs one pass of the header rules, not two."""
    await mine(ledger_client, MINER.address, 1)
    ledger = ledger_of(ledger_client)
    before = dict(ledger.checks)
    status, answer = await post(ledger_client, child_block(await tip(ledger_client)))
    assert status == 201, answer
    assert ledger.checks["header"] == before["header"] + 1
    assert ledger.checks["body"] == before["body"] + 1


async def test_a_big_refusal_costs_its_size_whatever_is_answered_meanwhile(
    ledger_client: TestClient,
) -> None:
    """A big block whose body is still arriving while another client's resend is answered
    from the memory of refusals is charged its size, not the 1 of a remembered block: the
    count that tells them apart is read once the body is in."""
    client = ledger_client
    await mine(client, MINER.address, 2)
    parent = await tip(client)
    small = bad_pow(child_block(parent))
    assert (await post(client, small))[1]["reason"] == "bad-pow"  # remembered from now on
    quota = client.app[BAD_BLOCKS]
    raw = json.dumps(big_block(parent, index=parent.index + 3).to_dict()).encode()
    halfway = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield raw[: len(raw) // 2]
        await halfway.wait()
        yield raw[len(raw) // 2 :]

    headers = {"Content-Type": "application/json", "Content-Length": str(len(raw))}
    upload = asyncio.create_task(client.post(PATH, data=slowly(), headers=headers))
    await asyncio.sleep(0.2)
    other = await client.post(PATH, json=small.to_dict())  # answered from memory meanwhile
    assert "refused before" in (await other.json())["error"]
    (who,) = quota.buckets.buckets  # this test's one client (loopback)
    before = quota.buckets.buckets[who].tokens
    halfway.set()
    resp = await upload
    assert (resp.status, (await resp.json())["reason"]) == (400, "bad-index")
    spent = before - quota.buckets.buckets[who].tokens
    assert spent >= 1 + len(raw) // COST_BYTES - 0.5, spent  # its size, not 1
