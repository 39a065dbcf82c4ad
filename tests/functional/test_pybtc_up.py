"""`pybtc up`, the README's run command: starts a node, supervises it, stops cleanly.

Runs the real console script as a subprocess on regtest with a private data dir and port:
the table of URLs appears, the ledger answers, a killed ledger is restarted, SIGTERM stops
everything (ledger and embedded Redis) with exit code 0, and a taken port is a clear error
before anything starts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
import redis
import redis.exceptions

from tests.upnode import UpNode, free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_serves_restarts_and_stops_cleanly(up_node: UpNode) -> None:
    redis_pid = int(up_node.read_until(r"redis started pid=(\d+)").group(1))
    ledger_pid = int(up_node.read_until(r"started service=ledger pid=(\d+)").group(1))
    up_node.read_until(r"Press Ctrl-C to stop")
    table = "".join(up_node.lines)
    assert f"http://127.0.0.1:{up_node.port}" in table
    assert "embedded redis-server" in table
    assert f"http://127.0.0.1:{up_node.miner_port}" in table
    status = up_node.get("/status")
    assert status["network"] == "regtest"
    assert status["height"] == 1
    miner = up_node.get("/status", up_node.miner_port)
    assert miner["mode"] == "on-demand"  # regtest's default
    worker_pids = miner["worker_pids"]
    assert isinstance(worker_pids, list)
    assert len(worker_pids) == 1

    # a crashed ledger is reported and restarted
    os.kill(ledger_pid, signal.SIGKILL)
    up_node.read_until(r"ledger exited with code -9; restarting")
    new_pid = int(up_node.read_until(r"started service=ledger pid=(\d+)").group(1))
    assert new_pid != ledger_pid
    deadline = time.monotonic() + 20
    while True:
        try:
            assert up_node.get("/healthz")["status"] in {"ok", "degraded"}
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    assert up_node.stop() == 0
    output = "".join(up_node.lines)
    assert "SIGTERM received: stopping the node" in output
    assert "node stopped" in output
    assert not _alive(new_pid), "the ledger outlived pybtc up"
    assert not _alive(redis_pid), "the embedded redis-server outlived pybtc up"
    for pid in worker_pids:
        assert not _alive(pid), "a miner worker outlived pybtc up"


@pytest.mark.parametrize("service", ["ledger", "miner", "explorer", "wallet"])
def test_up_reports_a_taken_port_before_starting_anything(tmp_path: Path, service: str) -> None:
    """Another program on any one of the ports: exit 1 at once, naming the port, the service
    and how to move pyBTC; no Redis, no service started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        began = time.monotonic()
        blocked = UpNode(tmp_path / "data", **{f"PYBTC_{service.upper()}_PORT": str(port)})
        try:
            blocked.proc.wait(10)  # the documented 2 s, with room for a loaded machine
        finally:
            code = blocked.stop()
        took = time.monotonic() - began
    output = "".join(blocked.lines)
    assert code == 1, output
    assert took < 10, output
    assert f"error: port {port} (the {service}) is in use by another program" in output, output
    assert "--port-offset" in output
    assert f"PYBTC_{service.upper()}_PORT" in output
    assert "started service=" not in output
    assert "redis started" not in output
    assert "node stopped" not in output  # nothing ran
    assert not (tmp_path / "data" / "redis").exists()


def test_up_refuses_one_port_for_two_services(tmp_path: Path) -> None:
    """The miner and the explorer set to one free port: exit 1 before anything starts, naming
    the port and both services (the explorer would otherwise find the miner answering there)."""
    port = free_port()
    blocked = UpNode(tmp_path / "data", PYBTC_EXPLORER_PORT=str(port), PYBTC_MINER_PORT=str(port))
    try:
        blocked.proc.wait(10)
    finally:
        code = blocked.stop()
    output = "".join(blocked.lines)
    assert code == 1, output
    assert f"error: port {port} is given to the miner and the explorer" in output, output
    assert "started service=" not in output
    assert "redis started" not in output


def test_up_bus_requires_a_password_kept_in_the_data_dir(tmp_path: Path) -> None:
    """The embedded Redis refuses a client without the password, which is made once (mode
    600 in `<data dir>/redis/password`), reused by the next start, never printed; `GET /mine`
    reaches the miner over HTTP."""
    data = tmp_path / "data"
    password_file = data / "redis" / "password"
    passwords = []
    for run in (1, 2):
        node = UpNode(data)
        try:
            node.read_until(r"Press Ctrl-C to stop")
            port = int(_search(node.lines, r"redis://:\*\*\*@127\.0\.0\.1:(\d+)/0").group(1))
            assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
            password = password_file.read_text().strip()
            passwords.append(password)
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(host="127.0.0.1", port=port).ping()
            assert redis.Redis(host="127.0.0.1", port=port, password=password).ping()
            mined = node.get("/mine", timeout=60)
            assert (mined["message"], mined["index"]) == ("new block found", run + 1)
            assert node.stop() == 0
            assert password not in "".join(node.lines)
        finally:
            node.stop()
    assert passwords[0] == passwords[1]


def _search(lines: list[str], pattern: str) -> re.Match[str]:
    found = re.search(pattern, "".join(lines))
    assert found is not None, f"{pattern!r} not printed:\n{''.join(lines)}"
    return found


def test_the_offset_a_taken_port_suggests_counts_from_the_base_ports(tmp_path: Path) -> None:
    """--port-offset replaces PYBTC_PORT_OFFSET, so with PYBTC_PORT_OFFSET=7 already moving the
    node onto a taken port the suggestion is 7 plus the move, and it does start there."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        blocked = UpNode(tmp_path / "data", PYBTC_LEDGER_PORT=str(port - 7), PYBTC_PORT_OFFSET="7")
        try:
            blocked.proc.wait(10)
        finally:
            code = blocked.stop()
        output = "".join(blocked.lines)
        assert code == 1, output
        offset = int(_search(blocked.lines, r"move pyBTC with --port-offset (\d+)").group(1))
        assert offset > 7, output
        assert offset % 10 == 7, output
        moved = UpNode(  # the very ports the suggestion was checked for
            tmp_path / "data",
            PYBTC_LEDGER_PORT=str(port - 7),
            PYBTC_MINER_PORT=str(blocked.miner_port),
            PYBTC_EXPLORER_PORT=str(blocked.explorer_port),
            PYBTC_WALLET_PORT=str(blocked.wallet_port),
            PYBTC_PORT_OFFSET="7",
            args=("--port-offset", str(offset)),
        )
        try:
            moved.read_until(r"Press Ctrl-C to stop")
            assert f"http://127.0.0.1:{port - 7 + offset}" in "".join(moved.lines)
        finally:
            assert moved.stop() == 0
