"""`pybtc backup` copies a running node's ledger database and key; the copy restores the node.

A real regtest ledger (in this process, on a loopback port) and the wallet in front of it mine a
few blocks and put a faucet payment in the mempool; `pybtc backup` runs while the ledger is up.
A second ledger started on a data dir made of nothing but the backup's files has the same tip,
height, balances and pending payment, and spends with the same node key.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import aiohttp
from click.testing import CliRunner

from services.cli import main
from tests.service.ledgerutil import LedgerNode
from tests.service.walletutil import ALICE, funded_wallet


async def test_backup_of_a_running_node_restores_it(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as wallet:
        paid = await wallet.post("/api/faucet", {"address": ALICE.address})
        assert paid.status == 201, await paid.text()
        txid = (await paid.json())["txid"]
        status = await wallet.ledger("/status")
        faucet_balance = (await wallet.ledger(f"/address/{wallet.faucet_key.address}"))["balance"]
        data_dir = wallet.settings.data_dir
        backup = tmp_path / "backup"
        result = CliRunner().invoke(
            main, ["backup", str(backup), "--network", "regtest", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "integrity ok" in result.output
        assert f"height {status['height']}" in result.output

    names = sorted(p.name for p in backup.iterdir())
    assert names == ["ledger-regtest.sqlite3", "miner-regtest.key"]
    assert stat.S_IMODE((backup / "miner-regtest.key").stat().st_mode) == 0o600

    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    for name in names:
        shutil.copy2(backup / name, restored_dir / name)
    node = await LedgerNode(restored_dir).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.url}/status") as resp:
                again = await resp.json()
            assert (again["height"], again["tip"]) == (status["height"], status["tip"])
            async with http.get(f"{node.url}/address/{wallet.faucet_key.address}") as resp:
                assert (await resp.json())["balance"] == faucet_balance
            async with http.get(f"{node.url}/tx/{txid}") as resp:
                assert (await resp.json())["status"] == "pending"
    finally:
        await node.stop()
    assert (restored_dir / "miner-regtest.key").read_text() == (
        data_dir / "miner-regtest.key"
    ).read_text()


def test_backup_refuses_to_overwrite_or_to_copy_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = CliRunner().invoke(main, ["backup", str(tmp_path / "b1"), "--data-dir", str(empty)])
    assert nothing.exit_code != 0
    assert "no ledger database" in nothing.output
    (empty / "ledger-devnet.sqlite3").write_bytes(b"")
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("kept")
    refused = CliRunner().invoke(main, ["backup", str(full), "--data-dir", str(empty)])
    assert refused.exit_code != 0
    assert "not empty" in refused.output
    assert (full / "something").read_text() == "kept"
