"""GET /blocks summaries and the block views carry `miner`, `fee_total` and `size`.

`size` is the byte length of the block's JSON as the node stores and serves it (`GET /chain`,
`Block.to_dict()`); the figures are kept beside the block when it is stored, so that the list
(and `/blocks?limit=500`, which feeds the explorer's charts) reads no block bodies.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from pybtc import COIN, Block
from tests.chainutil import child_block, test_key
from tests.service.ledgerutil import mine, send

MINER, ALICE, BOB = (test_key(i) for i in range(3))


async def get_json(client: TestClient, path: str, **params: Any) -> Any:
    resp = await client.get(path, params=params)
    body = await resp.json()
    assert resp.status == 200, body
    return body


def size_of(block: Block) -> int:
    return len(json.dumps(block.to_dict()).encode())


async def test_summaries_and_views_carry_miner_fee_total_and_size(
    ledger_client: TestClient,
) -> None:
    await mine(ledger_client, MINER.address, 2)
    for fee in (1_000, 2_500):
        status, _, _ = await send(ledger_client, MINER, ALICE.address, COIN, fee=fee)
        assert status == 201
    (full,) = await mine(ledger_client, BOB.address)
    (empty,) = await mine(ledger_client, ALICE.address)

    listed = await get_json(ledger_client, "/blocks", limit="500")
    assert [b["index"] for b in listed["blocks"]] == [5, 4, 3, 2, 1]
    top, second = listed["blocks"][:2]
    assert (top["miner"], top["fee_total"], top["tx_count"]) == (ALICE.address, 0, 1)
    assert top["size"] == size_of(empty)
    assert (second["miner"], second["fee_total"], second["tx_count"]) == (BOB.address, 3_500, 3)
    assert second["size"] == size_of(full)
    genesis = listed["blocks"][-1]
    assert genesis["fee_total"] == 0
    assert isinstance(genesis["miner"], str)

    for path in (f"/blocks/{full.hash}", "/blocks/height/4"):
        view = await get_json(ledger_client, path)
        assert (view["miner"], view["fee_total"], view["size"]) == (
            BOB.address,
            3_500,
            size_of(full),
        )
    chain = await get_json(ledger_client, "/chain", start="4", limit="1")
    assert len(json.dumps(chain["chain"][0]).encode()) == size_of(full)


async def test_a_side_branch_block_has_its_summary_too(ledger_client: TestClient) -> None:
    await mine(ledger_client, MINER.address, 2)
    status = await get_json(ledger_client, "/status")
    tip = Block.from_dict((await get_json(ledger_client, f"/blocks/{status['tip']}"))["block"])
    parent = await get_json(ledger_client, f"/blocks/{tip.previous_hash}")
    side = child_block(Block.from_dict(parent["block"]).header, miner=BOB.address)
    resp = await ledger_client.post("/mining/submit", json=side.to_dict())
    assert resp.status == 201, await resp.text()
    view = await get_json(ledger_client, f"/blocks/{side.hash}")
    assert view["in_best_chain"] is False
    assert (view["miner"], view["fee_total"], view["size"]) == (BOB.address, 0, size_of(side))
