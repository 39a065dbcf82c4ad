"""The `pybtc` command: the installed console script, and each command's output and errors."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

from click.testing import CliRunner

from pybtc import DEVNET, is_address
from services.cli import main
from tests.chainutil import test_key


def test_console_script_is_installed_and_helps() -> None:
    exe = shutil.which("pybtc") or str(Path(__file__).parents[2] / ".venv" / "bin" / "pybtc")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True, timeout=60)
    assert "proof-of-work" in out.stdout
    for command in ("params", "keygen", "check-address"):
        assert command in out.stdout


def test_params_json_names_the_genesis() -> None:
    result = CliRunner().invoke(main, ["params", "devnet", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["genesis_hash"] == DEVNET.genesis.hash
    assert info["network_id"] == "pybtc-devnet"


def test_params_rejects_an_unknown_network() -> None:
    result = CliRunner().invoke(main, ["params", "mainnet"])
    assert result.exit_code == 2
    assert "mainnet" in result.output


def test_keygen_writes_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "key.hex"
    result = CliRunner().invoke(main, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    address = result.output.split("address")[1].split()[0]
    assert is_address(address)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(out.read_text().strip()) == 64
    again = CliRunner().invoke(main, ["keygen", "--out", str(out)])
    assert again.exit_code == 1
    assert "not overwriting" in again.output


def test_check_address() -> None:
    good = test_key(1).address
    ok = CliRunner().invoke(main, ["check-address", good])
    assert ok.exit_code == 0
    assert "valid" in ok.output
    typo = good[:-1] + ("a" if good[-1] != "a" else "b")
    bad = CliRunner().invoke(main, ["check-address", typo])
    assert bad.exit_code == 2
    assert "checksum" in bad.output


def test_serve_runs_a_real_ledger(tmp_path: Path) -> None:
    """`pybtc serve ledger` (the compose stack's command) serves the ledger API until killed."""
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = shutil.which("pybtc") or str(Path(__file__).parents[2] / ".venv" / "bin" / "pybtc")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYBTC_NETWORK": "regtest",
        "PYBTC_LEDGER_PORT": str(port),
        "PYBTC_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [exe, "serve", "ledger"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as resp:
                    assert json.loads(resp.read())["network"] == "regtest"
                break
            except OSError:
                assert proc.poll() is None, "pybtc serve ledger exited"
                assert time.monotonic() < deadline, "pybtc serve ledger did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(15)


def test_serve_refuses_an_unknown_service() -> None:
    result = CliRunner().invoke(main, ["serve", "bank"])
    assert result.exit_code == 2
    assert "ledger" in result.output
