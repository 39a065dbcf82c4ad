"""`pybtc up`, the README's run command: starts a node, supervises it, stops cleanly.

Runs the real console script as a subprocess on regtest with a private data dir and port:
the table of URLs appears, the ledger answers, a killed ledger is restarted, SIGTERM stops
everything (ledger and embedded Redis) with exit code 0, and a taken port is a clear error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PYBTC = str(Path(sys.executable).with_name("pybtc"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class Node:
    """A `pybtc up` process and what it printed."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.miner_port = _free_port()
        env = dict(
            os.environ,
            PYBTC_LEDGER_PORT=str(port),
            PYBTC_MINER_PORT=str(self.miner_port),
            PYBTC_EXPLORER_PORT=str(_free_port()),
            PYBTC_MINER_WORKERS="1",
            PYBTC_REDIS_URL="",
        )
        self.port = port
        self.proc = subprocess.Popen(
            [PYBTC, "up", "--network", "regtest", "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"{pattern!r} not printed; output:\n{''.join(self.lines)}")

    def get(self, path: str, port: int | None = None) -> dict[str, object]:
        url = f"http://127.0.0.1:{port or self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        if not self.proc.stdout.closed:
            self.lines.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()
        return code


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(tmp_path / "data", _free_port())
    try:
        yield started
    finally:
        started.stop()


def test_up_serves_restarts_and_stops_cleanly(node: Node) -> None:
    redis_pid = int(node.read_until(r"redis started pid=(\d+)").group(1))
    ledger_pid = int(node.read_until(r"started service=ledger pid=(\d+)").group(1))
    node.read_until(r"Press Ctrl-C to stop")
    table = "".join(node.lines)
    assert f"http://127.0.0.1:{node.port}" in table
    assert "embedded redis-server" in table
    assert f"http://127.0.0.1:{node.miner_port}" in table
    status = node.get("/status")
    assert status["network"] == "regtest"
    assert status["height"] == 1
    miner = node.get("/status", node.miner_port)
    assert miner["mode"] == "on-demand"  # regtest's default
    worker_pids = miner["worker_pids"]
    assert isinstance(worker_pids, list)
    assert len(worker_pids) == 1

    # a crashed ledger is reported and restarted
    os.kill(ledger_pid, signal.SIGKILL)
    node.read_until(r"ledger exited with code -9; restarting")
    new_pid = int(node.read_until(r"started service=ledger pid=(\d+)").group(1))
    assert new_pid != ledger_pid
    deadline = time.monotonic() + 20
    while True:
        try:
            assert node.get("/healthz")["status"] in {"ok", "degraded"}
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    assert node.stop() == 0
    output = "".join(node.lines)
    assert "SIGTERM received: stopping the node" in output
    assert "node stopped" in output
    assert not _alive(new_pid), "the ledger outlived pybtc up"
    assert not _alive(redis_pid), "the embedded redis-server outlived pybtc up"
    for pid in worker_pids:
        assert not _alive(pid), "a miner worker outlived pybtc up"


def test_up_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        blocked = Node(tmp_path / "data", port)
        try:
            blocked.proc.wait(60)
        finally:
            code = blocked.stop()
    output = "".join(blocked.lines)
    assert code == 1, output
    assert "ledger exited during start-up" in output
    assert "address already in use" in output.lower()
