"""`pybtc up` starts honestly and stops completely (issue 17).

Real `pybtc up` processes on regtest: a SIGKILL of `pybtc up` takes every service, miner
worker and the embedded redis-server with it; a Ctrl-C during start-up stops what had started;
a service that keeps failing at start ends the run with the reason instead of a restart loop;
`--port-offset` moves every port of three nodes, which still find each other. And
`wait_healthy` takes only this run's service for up, never whatever answers on its port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from services.supervise import Service, StartupError, wait_healthy
from tests.functional.test_pybtc_up import _alive
from tests.upnode import PYBTC, UpNode

GONE_WITHIN = 10.0


def _pids(lines: list[str]) -> dict[str, int]:
    """The pid of each child `pybtc up` reported starting (the last start of each)."""
    text = "".join(lines)
    pids = {m[0]: int(m[1]) for m in re.findall(r"started service=(\w+) pid=(\d+)", text)}
    redis = re.findall(r"redis started pid=(\d+)", text)
    if redis:
        pids["redis"] = int(redis[-1])
    return pids


def _all_gone(pids: list[int], within: float = GONE_WITHIN) -> list[int]:
    """The pids still alive after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = [pid for pid in pids if _alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_kill_9_of_up_takes_every_child_with_it(up_node: UpNode) -> None:
    up_node.wait_ready()
    pids = _pids(up_node.lines)
    assert set(pids) == {"redis", "ledger", "miner", "explorer", "wallet"}, pids
    workers = up_node.get("/status", up_node.miner_port)["worker_pids"]
    assert workers
    everything = [*pids.values(), *workers]
    assert all(_alive(pid) for pid in everything)

    up_node.proc.send_signal(signal.SIGKILL)
    up_node.proc.wait(10)
    left = _all_gone(everything)
    assert not left, f"still running {GONE_WITHIN:.0f}s after kill -9 of pybtc up: {left}"


@pytest.mark.parametrize("during", ["ledger", "explorer"])
def test_ctrl_c_during_start_up_stops_what_started(tmp_path: Path, during: str) -> None:
    node = UpNode(tmp_path / "data")
    try:
        node.read_until(rf"started service={during} pid=\d+")
        node.proc.send_signal(signal.SIGINT)
        node.read_until(r"node stopped", timeout=15)
        code = node.proc.wait(5)
    finally:
        node.stop()
    output = "".join(node.lines)
    assert code == 0, output
    assert "SIGINT received: stopping the node" in output
    assert "node stopped" in output
    assert "error:" not in output
    assert "Press Ctrl-C to stop" not in output  # it never claimed to be up
    pids = _pids(node.lines)
    assert during in pids
    assert not _all_gone(list(pids.values())), output


def test_a_service_that_keeps_failing_at_start_ends_the_run(up_node: UpNode) -> None:
    """The wallet's port is taken the moment it is killed: its restart cannot listen, so
    `pybtc up` stops with the reason instead of restarting it forever."""
    up_node.wait_ready()
    wallet = _pids(up_node.lines)["wallet"]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        node_socket_free = time.monotonic() + 5
        os.kill(wallet, signal.SIGKILL)
        while True:  # as soon as the kernel has closed the dead wallet's socket
            try:
                squatter.bind(("127.0.0.1", up_node.wallet_port))
                break
            except OSError:
                assert time.monotonic() < node_socket_free, "the wallet's port stayed taken"
                time.sleep(0.01)
        squatter.listen()
        up_node.read_until(r"error: wallet keeps failing at start", timeout=60)
        code = up_node.stop()
    output = "".join(up_node.lines)
    assert code == 1, output
    assert "wallet exited with code -9; restarting" in output
    assert "; stopping" in output
    assert "node stopped" in output
    assert not _all_gone(list(_pids(up_node.lines).values())), output


def test_port_offset_moves_every_port_of_three_nodes(tmp_path: Path) -> None:
    offset = 7
    network = UpNode(tmp_path / "data", nodes=3, port_offset=offset, args=("--auto-mine", "30"))
    try:
        network.wait_ready(timeout=120)
        table = "".join(network.lines)
        for k in (1, 2, 3):
            for url in (network.ledger_url(k), network.wallet_url_of(k)):
                assert url in table, table
                assert network.get("/healthz", int(url.rsplit(":", 1)[1]))["status"] == "ok"
            assert f"http://127.0.0.1:{network.miner_port + k - 1}" in table
            assert network.explorer_url_of(k) in table
        assert "(on-demand mining, a block every 30 s)" in table
        assert "node2 started service=ledger" in table
        others = {network.ledger_url(2), network.ledger_url(3)}
        deadline = time.monotonic() + 30
        while True:
            peers = {p["url"] for p in network.get("/nodes")["peers"]}
            if others <= peers or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert others <= peers, peers
    finally:
        assert network.stop() == 0, "".join(network.lines[-30:])


def test_auto_mine_needs_on_demand_mining(tmp_path: Path) -> None:
    done = subprocess.run(
        [PYBTC, "up", "--network", "devnet", "--data-dir", str(tmp_path), "--auto-mine", "5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "--auto-mine needs on-demand mining" in done.stderr
    assert "devnet mines all the time" in done.stderr
    assert "started" not in done.stdout + done.stderr


class _Impostor(BaseHTTPRequestHandler):
    """Answers /healthz as a healthy service of another run would."""

    body: ClassVar[dict[str, str]] = {"status": "ok"}

    def do_GET(self) -> None:
        data = json.dumps(self.body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.mark.parametrize(
    "body",
    [
        {"status": "ok"},
        {"service": "ledger", "instance": "another-run", "status": "ok"},
        {"service": "wallet", "instance": "this-run", "status": "ok"},
    ],
)
def test_wait_healthy_takes_nothing_else_for_our_service(body: dict[str, str]) -> None:
    handler = type("Handler", (_Impostor,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    env = {"PYBTC_HOST": "127.0.0.1", "PYBTC_INSTANCE_ID": "this-run"}
    service = Service("ledger", "services.node", port, env)
    service.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(StartupError, match=f"something else answers on port {port}"):
            wait_healthy(service, timeout=10)
        handler.body = {"service": "ledger", "instance": "this-run", "status": "ok"}
        assert wait_healthy(service, timeout=10)
    finally:
        service.proc.kill()
        service.proc.wait()
        server.shutdown()
        server.server_close()
