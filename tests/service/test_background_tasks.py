"""No background task of any service dies silently (issue 16 §1).

Each service runs for real (real Redis, a real ledger on a loopback port where one is needed);
one of its long-running tasks is made to raise once by wrapping one of its methods (fault
injection: the rest of the service is untouched). The task must be reported on /healthz while
it waits for its restart (`degraded`, never `unhealthy`: the line names the task and the error)
and must then run again and do its work:

- the ledger's periodic sync is run again after a sync raised;
- the miner keeps mining after its mining loop raised;
- the explorer's and the wallet's live updates reach an open page after their forwarder raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import services.common.live
import services.common.tasks
from pybtc import Block
from pybtc.mining import mine_block
from services.common.settings import Settings
from services.miner.miner import Miner
from services.node.app import create_app as create_ledger
from services.node.network import Network
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode, ledger_settings

RESTART_WAIT = 3.0
"""The first restart's wait in these tests: long enough to see the task down on /healthz."""


@pytest.fixture(autouse=True)
def slow_first_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.common.tasks, "RESTART_MIN", RESTART_WAIT)


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds:.0f}s: {what}")
        await asyncio.sleep(0.05)


async def _health(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/healthz")
    assert resp.status == 200, await resp.text()  # a task being restarted is never fatal
    body: dict[str, Any] = await resp.json()
    return body


async def _down_then_up(client: TestClient, task: str, error: str) -> None:
    """/healthz says degraded naming `task` and `error`, then every task runs again."""

    async def down() -> bool:
        body = await _health(client)
        line = body["checks"].get("tasks", {})
        return (
            body["status"] == "degraded"
            and not line.get("ok", True)
            and task in line["detail"]
            and error in line["detail"]
        )

    async def up() -> bool:
        return bool((await _health(client))["checks"]["tasks"]["ok"])

    await _until(f"/healthz reports {task} down", down)
    await _until(f"{task} running again", up)


def _raise_once(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    armed: Callable[[], bool] = lambda: True,
) -> list[int]:
    """Wrap `owner.name` so that its first call once `armed()` raises; returns [calls, raised]."""
    original = getattr(owner, name)
    counts = [0, 0]

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[0] += 1
        if not counts[1] and armed():
            counts[1] = counts[0]
            raise RuntimeError("injected fault")
        return await original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return counts


async def _mine_on(http: aiohttp.ClientSession, url: str) -> Block:
    """Solve the ledger's template (regtest) and submit it: a real tip change."""
    async with http.get(f"{url}/mining/template", params={"address": test_key(0).address}) as r:
        template = Block.from_dict((await r.json())["block"])
    block = mine_block(template)
    assert block is not None
    async with http.post(f"{url}/mining/submit", json=block.to_dict()) as r:
        assert r.status == 201, await r.text()
    return block


async def test_ledger_periodic_sync_survives_a_failure(
    aiohttp_client: Any, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = [False]
    calls = _raise_once(monkeypatch, Network, "sync_all", armed=lambda: started[0])
    app = create_ledger(ledger_settings(tmp_path, redis_url, sync_interval=0.3))
    client = await aiohttp_client(app)

    async def start_up_synced() -> bool:
        return calls[0] >= 1

    await _until("the start-up sync", start_up_synced)
    started[0] = True  # the next sync is the periodic one
    await _until("the fault", lambda: _true(calls[1] > 0))
    await _down_then_up(client, "periodic sync", "RuntimeError: injected fault")
    after = calls[0]
    await _until("periodic syncs after the restart", lambda: _true(calls[0] >= after + 2))
    metrics = await (await client.get("/metrics")).text()
    assert 'pybtc_task_restarts_total{service="ledger",task="periodic sync"} 1.0' in metrics


async def test_miner_keeps_mining_after_its_loop_failed(
    aiohttp_client: Any, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.miner.app import create_app as create_miner

    calls = _raise_once(monkeypatch, Miner, "_one_job")
    node = await LedgerNode(tmp_path / "ledger", redis_url, node_id="bgtasks").start()
    try:
        settings = Settings(
            network="regtest",
            data_dir=tmp_path / "miner",
            redis_url=redis_url,
            ledger_url=node.url,
            node_id="bgtasks",
            miner_mode="auto",
            miner_workers=1,
            miner_address=test_key(0).address,
        )
        client = await aiohttp_client(create_miner(settings))
        await _down_then_up(client, "mining loop", "RuntimeError: injected fault")
        assert calls[1] == 1

        async def mined() -> bool:
            status = await (await client.get("/status")).json()
            return bool(status["blocks_accepted"] >= 2)

        await _until("two blocks mined after the failure", mined, seconds=60)
    finally:
        await node.stop()


@pytest.mark.parametrize("service", ["explorer", "wallet"])
async def test_live_updates_restart_after_a_failure(
    aiohttp_client: Any,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
) -> None:
    from services.explorer.app import create_app as create_explorer
    from services.wallet.app import create_app as create_wallet

    factories: dict[str, Callable[[Settings], web.Application]] = {
        "explorer": create_explorer,
        "wallet": create_wallet,
    }
    calls = _raise_once(monkeypatch, services.common.live, "_forward")
    node = await LedgerNode(tmp_path / "ledger", redis_url).start()
    try:
        settings = Settings(
            network="regtest",
            data_dir=tmp_path / service,
            redis_url=redis_url,
            ledger_url=node.url,
            public_url=node.url,
        )
        client = await aiohttp_client(factories[service](settings))
        await _down_then_up(client, "live updates", "RuntimeError: injected fault")
        assert calls[1] == 1
        async with client.get("/events") as stream, aiohttp.ClientSession() as http:
            assert (await asyncio.wait_for(stream.content.readline(), 10)).startswith(b"event:")
            block = await _mine_on(http, node.url)
            seen = []
            while True:  # bounded by the reads' timeouts and the number of events one block makes
                line = await asyncio.wait_for(stream.content.readline(), 10)
                seen.append(line)
                if line.startswith(b"event: tip"):
                    assert block.hash.encode() in await stream.content.readline()
                    break
                assert len(seen) < 50, seen
    finally:
        await node.stop()


async def _true(value: bool) -> bool:
    return value
