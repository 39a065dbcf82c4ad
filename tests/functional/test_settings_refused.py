"""A bad setting stops every entry point at once, before anything binds: one line naming the
variable, its value and what is allowed, exit status 2, no traceback (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.conftest import child_env, free_port

PYBTC = Path(sys.executable).with_name("pybtc")
LINE = "error: PYBTC_MINER_MODE='turbo': one of auto, on-demand"

COMMANDS = {
    "python -m services.node": [sys.executable, "-m", "services.node"],
    "python -m services.miner": [sys.executable, "-m", "services.miner"],
    "python -m services.explorer": [sys.executable, "-m", "services.explorer"],
    "python -m services.wallet": [sys.executable, "-m", "services.wallet"],
    "pybtc serve miner": [str(PYBTC), "serve", "miner"],
    "pybtc up": [str(PYBTC), "up"],
    "pybtc backup": [str(PYBTC), "backup", "copy"],
    "pybtc wallet balance": [str(PYBTC), "wallet", "balance", "P" * 34],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_bad_setting_stops_the_entry_point(name: str, tmp_path: Path) -> None:
    port = free_port()
    env = child_env(
        PYBTC_MINER_MODE="turbo",
        PYBTC_DATA_DIR=str(tmp_path / "data"),
        PYBTC_LEDGER_PORT=str(port),
        PYBTC_MINER_PORT=str(port),
        PYBTC_EXPLORER_PORT=str(port),
        PYBTC_WALLET_PORT=str(port),
    )
    result = subprocess.run(
        COMMANDS[name], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, f"{name}: exit {result.returncode}\n{result.stderr}"
    assert result.stderr.strip() == LINE, result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists(), "started something before checking its settings"
    assert not (tmp_path / "copy").exists()


def test_a_bad_log_level_stops_pybtc_up(tmp_path: Path) -> None:
    """The issue's other example: it used to pass and crash when logging was set up."""
    env = child_env(PYBTC_LOG_LEVEL="LOUD", PYBTC_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [str(PYBTC), "up"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: PYBTC_LOG_LEVEL='LOUD': one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)"
    )
