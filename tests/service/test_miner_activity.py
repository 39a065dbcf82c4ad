"""The miner's `/status` `activity` says what it is doing or waiting for, and the ledger logs
what a `GET /mine` waits for.

A real devnet ledger app and a real miner app (one worker, on-demand) on loopback ports, in
process: devnet's genesis difficulty (about two million hashes a block) leaves a few seconds in
which a `GET /mine` is seen waiting. A miner whose ledger is nowhere says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.common.settings import Settings
from tests.service.ledgerutil import free_port, lone_miner_settings

IDLE = "idle: on-demand, waiting for GET /mine"


async def _status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/status") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def _until(session: aiohttp.ClientSession, url: str, prefix: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        status = await _status(session, url)
        if status["activity"].startswith(prefix):
            return status
        assert time.monotonic() < deadline, f"activity never {prefix!r}: {status['activity']!r}"
        await asyncio.sleep(0.02)


async def test_the_miner_says_it_mines_for_a_get_mine_and_the_ledger_logs_it(
    aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from services.miner.app import create_app as miner_app
    from services.node.app import create_app as ledger_app

    caplog.set_level(logging.INFO, logger="services.node.mine")
    miner_port = free_port()
    miner_url = f"http://127.0.0.1:{miner_port}"
    ledger_settings = Settings(
        network="devnet", data_dir=tmp_path / "ledger", miner_url=miner_url, mine_timeout=120.0
    )
    ledger = await aiohttp_server(ledger_app(ledger_settings), host="127.0.0.1")
    ledger_url = str(ledger.make_url("")).rstrip("/")
    miner_settings = Settings(
        network="devnet",
        data_dir=tmp_path / "miner",
        ledger_url=ledger_url,
        miner_workers=1,
        miner_mode="on-demand",
    )
    await aiohttp_server(miner_app(miner_settings), host="127.0.0.1", port=miner_port)
    async with aiohttp.ClientSession() as session:
        status = await _status(session, miner_url)
        assert (status["activity"], status["auto_mine"]) == (IDLE, 0)

        async def get_mine() -> dict[str, Any]:
            async with session.get(f"{ledger_url}/mine") as resp:
                assert resp.status == 200, await resp.text()
                body: dict[str, Any] = await resp.json()
                return body

        async with session.get(f"{ledger_url}/status") as resp:
            height = (await resp.json())["height"] + 1
        asked = asyncio.create_task(get_mine())
        mining = await _until(session, miner_url, "mining block ")
        assert mining["activity"] == f"mining block {height} for 1 GET /mine request(s)"
        assert mining["requests_pending"] == 1
        assert any(
            f"mine request waiting for the miner url={miner_url}/mine timeout=120s" in r.message
            for r in caplog.records
        ), caplog.text
        block = await asyncio.wait_for(asked, 120)
        assert block["index"] == height
        assert f"mine request done height={height}" in caplog.text
        await _until(session, miner_url, IDLE)


async def test_a_miner_without_its_ledger_says_so(aiohttp_client: Any, tmp_path: Path) -> None:
    """A request waiting on a miner whose ledger is nowhere: `no template: ledger unreachable`."""
    from services.miner.app import create_app

    client = await aiohttp_client(create_app(lone_miner_settings(tmp_path)))
    assert (await (await client.get("/status")).json())["activity"] == IDLE
    asked = asyncio.create_task(client.post("/mine", json={"timeout": 20}))
    deadline = time.monotonic() + 15
    while (await (await client.get("/status")).json())["activity"] != (
        "no template: ledger unreachable"
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    asked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asked
