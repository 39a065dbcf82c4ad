"""A whole node as users start it: the `pybtc up` console script in a subprocess.

`UpNode(data_dir)` runs `pybtc up --network regtest` with its own embedded Redis and free
loopback ports for every service; `read_until` follows its output, `get`/`post` talk JSON to
any of its services, `stop` sends SIGTERM (as Ctrl-C would) and returns the exit code. Used by
the functional test of `pybtc up` and by the browser tests that need a real miner.
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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PYBTC = str(Path(sys.executable).with_name("pybtc"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(offsets: list[int], taken: set[int] | None = None) -> int:
    """A base port such that base + each offset is free now and not in `taken` (the ports
    already handed out, which are free too until their service starts); adds them there."""
    taken = set() if taken is None else taken
    for _ in range(200):
        base = free_port()
        if base + max(offsets) > 65_000 or taken & {base + offset for offset in offsets}:
            continue
        try:
            for offset in offsets:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        taken.update(base + offset for offset in offsets)
        return base
    raise RuntimeError("no run of free ports found")


class UpNode:
    """A `pybtc up` process, its ports and what it printed."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        nodes: int = 1,
        bus: str = "shared",
        args: tuple[str, ...] = (),
        port_offset: int = 0,
        **env: str,
    ) -> None:
        self.nodes = nodes
        self.data_dir = data_dir
        spread = list(range(nodes))
        taken = {port + k for k in spread} if port else set()
        self.port = port or free_port_run(spread, taken)
        self.miner_port = free_port_run(spread, taken)
        self.explorer_port = free_port_run([100 * k for k in spread], taken)
        self.wallet_port = free_port_run([100 * k for k in spread], taken)
        # with `port_offset`, the base ports are that much lower and `--port-offset` moves them
        # back onto the free ones above (which the URL helpers name)
        full_env = dict(
            os.environ,
            PYBTC_LEDGER_PORT=str(self.port - port_offset),
            PYBTC_MINER_PORT=str(self.miner_port - port_offset),
            PYBTC_EXPLORER_PORT=str(self.explorer_port - port_offset),
            PYBTC_WALLET_PORT=str(self.wallet_port - port_offset),
            PYBTC_MINER_WORKERS="1",
            PYBTC_REDIS_URL="",
        )
        spread_args = ["--nodes", str(nodes), "--bus", bus] if nodes > 1 else []
        if port_offset:
            spread_args += ["--port-offset", str(port_offset)]
        self.proc = subprocess.Popen(
            [PYBTC, "up", "--network", "regtest", "--data-dir", str(data_dir), *spread_args, *args],
            env=full_env | env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ledger_url(self, node: int) -> str:
        """Node `node`'s ledger (1-based), for `--nodes N`."""
        return f"http://127.0.0.1:{self.port + node - 1}"

    def wallet_url_of(self, node: int) -> str:
        return f"http://127.0.0.1:{self.wallet_port + 100 * (node - 1)}"

    def explorer_url_of(self, node: int) -> str:
        return f"http://127.0.0.1:{self.explorer_port + 100 * (node - 1)}"

    @property
    def explorer_url(self) -> str:
        return f"http://127.0.0.1:{self.explorer_port}"

    @property
    def wallet_url(self) -> str:
        return f"http://127.0.0.1:{self.wallet_port}"

    def read_until(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line of output (from here on) matching `pattern`."""
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

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every service is up (the table is printed) and the browser apps answer."""
        self.read_until(r"Press Ctrl-C to stop", timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                for node in range(self.nodes):
                    self.get("/healthz", self.explorer_port + 100 * node)
                    self.get("/healthz", self.wallet_port + 100 * node)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def get(self, path: str, port: int | None = None, timeout: float = 5) -> Any:
        url = f"http://127.0.0.1:{port or self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: Any, port: int | None = None) -> tuple[int, Any]:
        """POST JSON; the status and decoded body, refusals included."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{port or self.port}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

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
