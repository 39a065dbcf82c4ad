"""`GET /mine` checks its miner's answer against its own chain; the miner's `POST /mine` is the
operator's and needs JSON.

A real regtest ledger app asks a bad miner on loopback (an aiohttp app that answers what a
broken or lying miner would): the genesis hash, a block already on the chain before the request,
garbage, a 500, or nothing at all. The ledger never answers with such a block and never with a
5xx other than 503 `no-miner` / 504 `mine-timeout`. The real miner app (its workers running, its
ledger unreachable) refuses `POST /mine` without the operator token or without a JSON body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pybtc import REGTEST
from tests.chainutil import test_key
from tests.service.ledgerutil import free_port, ledger_settings, lone_miner_settings, mine

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]
MINE_TIMEOUT = 2.0


@pytest.fixture
def stubbed(aiohttp_client: Any, aiohttp_server: Any) -> Any:
    async def start(
        tmp_path: Path, answer: Answer, **changes: Any
    ) -> tuple[TestClient, list[web.Request]]:
        return await _ledger_with_miner(aiohttp_client, aiohttp_server, tmp_path, answer, **changes)

    return start


async def _ledger_with_miner(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, answer: Answer, **changes: Any
) -> tuple[TestClient, list[web.Request]]:
    """A ledger whose PYBTC_MINER_URL is a stub miner answering `answer`; the requests it got."""
    from services.node.app import create_app

    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return await answer(request)

    stub = web.Application()
    stub.router.add_post("/mine", handler)
    server: TestServer = await aiohttp_server(stub, host="127.0.0.1")
    settings = ledger_settings(
        tmp_path,
        miner_url=str(server.make_url("")),
        mine_timeout=MINE_TIMEOUT,
        **changes,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    return client, seen


def _json(body: Any, status: int = 200) -> Answer:
    async def answer(_request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return answer


async def test_the_genesis_hash_is_no_new_block(stubbed: Any, tmp_path: Path) -> None:
    client, seen = await stubbed(tmp_path, _json({"hash": REGTEST.genesis.hash, "height": 1}))
    resp = await client.get("/mine", timeout=MINE_TIMEOUT * 10)
    body = await resp.json()
    assert (resp.status, body["reason"]) == (504, "mine-timeout"), body
    assert len(seen) >= 2, "an answer that does not check out is asked again"


async def test_a_block_from_before_the_request_is_no_new_block(
    stubbed: Any, tmp_path: Path
) -> None:
    old: dict[str, str] = {}

    async def answer(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"hash": old["hash"], "height": 2})

    client, _ = await stubbed(tmp_path, answer)
    (block,) = await mine(client, test_key(0).address)
    old["hash"] = block.hash
    resp = await client.get("/mine", timeout=MINE_TIMEOUT * 10)
    assert (resp.status, (await resp.json())["reason"]) == (504, "mine-timeout")


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (_json({"hash": "ab" * 32}), 504),  # no such block here
        (_json({"hash": 5}), 503),
        (_json(["not", "an", "object"]), 503),
        (_json({"error": "boom", "reason": "x"}, status=500), 503),
        (_json({"hash": "ab" * 32}, status=401), 503),
    ],
    ids=["unknown-block", "hash-not-a-string", "not-an-object", "miner-500", "miner-401"],
)
async def test_a_bad_answer_is_never_a_502(
    stubbed: Any, tmp_path: Path, answer: Answer, status: int
) -> None:
    client, _ = await stubbed(tmp_path, answer)
    resp = await client.get("/mine", timeout=MINE_TIMEOUT * 10)
    body = await resp.json()
    assert resp.status == status, body
    assert body["reason"] == ("no-miner" if status == 503 else "mine-timeout")


async def test_the_ledger_sends_its_operator_token_and_json(stubbed: Any, tmp_path: Path) -> None:
    client, seen = await stubbed(tmp_path, _json({}, status=401), operator_token="sekrit")
    resp = await client.get("/mine", headers={"Authorization": "Bearer sekrit"})
    assert resp.status == 503
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer sekrit"
    assert request.content_type == "application/json"


async def test_no_miner_listening_is_an_immediate_503(aiohttp_client: Any, tmp_path: Path) -> None:
    from services.node.app import create_app

    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = ledger_settings(tmp_path, miner_url=nowhere, mine_timeout=60.0)
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/mine", timeout=30)
    assert (resp.status, (await resp.json())["reason"]) == (503, "no-miner")


# -- the miner's side ---------------------------------------------------------------------------


@pytest.fixture
async def miner_client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    """The real miner app with an operator token; its ledger is nowhere (nothing gets mined)."""
    from services.miner.app import create_app

    settings = lone_miner_settings(tmp_path, operator_token="sekrit")
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"Content-Type": "application/json"}, '{"timeout": 1}', 401, "operator-only"),
        (
            {"Authorization": "Bearer wrong", "Content-Type": "application/json"},
            '{"timeout": 1}',
            401,
            "operator-only",
        ),
        (
            {"Authorization": "Bearer sekrit", "Content-Type": "text/plain"},
            '{"timeout": 1}',
            415,
            "unsupported-media-type",
        ),
        (
            {"Authorization": "Bearer sekrit", "Content-Type": "application/json"},
            '{"timeout": "soon"}',
            400,
            "bad-type",
        ),
        (
            {"Authorization": "Bearer sekrit", "Content-Type": "application/json"},
            '{"timeout": 0.5}',
            504,
            "mine-timeout",
        ),
    ],
    ids=["no-token", "wrong-token", "text-plain", "bad-timeout", "no-ledger"],
)
async def test_the_miner_mines_only_for_its_operator(
    miner_client: TestClient, headers: dict[str, str], body: str, status: int, reason: str
) -> None:
    resp = await miner_client.post("/mine", data=body, headers=headers)
    answer = await resp.json()
    assert (resp.status, answer.get("reason")) == (status, reason), answer
    state = await (await miner_client.get("/status")).json()
    assert (state["blocks_found"], state["requests_pending"]) == (0, 0)
