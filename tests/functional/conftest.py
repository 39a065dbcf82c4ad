"""The functional tier's helpers: real processes on loopback, started and always reaped.

- `children` tracks every subprocess a test starts; at teardown, pass or fail, whatever still
  runs is killed and every process is waited for (no zombies, no orphans). On Linux each child
  also asks the kernel for SIGKILL when pytest itself dies (PR_SET_PDEATHSIG), so even an
  interrupted run leaves nothing behind.
- `LedgerProcess` runs `python -m services.node` on regtest with its own data dir and port
  (PYBTC_* variables only), waits for `GET /healthz`, and stops it with SIGTERM or SIGKILL.
- `http` and the small JSON helpers speak to the processes with urllib (no proxies, no
  sessions left open), and `mine` / `send` drive a ledger the way the miner and wallets do.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pybtc import REGTEST, Block, PrivateKey, Transaction
from pybtc.mining import mine_block
from services.common.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from services.common.settings import Settings
from tests.upnode import UpNode

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 40

# Loopback only: never route a test's requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PR_SET_PDEATHSIG = 1
# Looked up here, in the parent: between fork and exec the child only makes the call.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a child's log, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# -- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status and body (any status; errors are answers too)."""

    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def http(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request with urllib; 4xx/5xx come back as a Reply, connection errors raise."""
    data, headers = None, {}
    if json_body is not None:
        data, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json"}
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.read().decode())


def get_json(url: str) -> Any:
    """GET a JSON resource that must answer 200."""
    reply = http("GET", url)
    assert reply.status == 200, f"GET {url} -> {reply.status}: {reply.text[:500]}"
    return reply.json()


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll `url` until it answers 200; fail with the log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            pytest.fail(f"{proc.args!r} exited with {code} before {url} answered:\n{log_tail(log)}")
        try:
            if http("GET", url, timeout=1.0).status == 200:
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer 200 within {timeout:.0f}s:\n{log_tail(log)}")
        time.sleep(0.05)


# -- processes -------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ChildProcesses:
    """Every process a test started; `reap_all` kills what still runs and waits for all."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, args: list[str], *, env: Mapping[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        """Start `args` with its output appended to `log_path`."""
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                args,
                env=dict(env),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # only prctl runs between fork and exec
            )
        self._procs.append(proc)
        logger.info("started pid=%d %s", proc.pid, " ".join(str(a) for a in args[-4:]))
        return proc

    def reap_all(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                logger.info("killing leftover pid=%d", proc.pid)
                proc.kill()
            proc.wait(timeout=15)
        self._procs.clear()


@pytest.fixture
def children() -> Iterator[ChildProcesses]:
    """Start processes through this; all are killed and reaped at teardown, pass or fail."""
    tracked = ChildProcesses()
    try:
        yield tracked
    finally:
        tracked.reap_all()


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any PYBTC_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYBTC_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


class LedgerProcess:
    """`python -m services.node` on regtest, with its own data dir and port."""

    def __init__(
        self,
        children: ChildProcesses,
        data_dir: Path,
        *,
        redis_url: str = "",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.children = children
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.extra_env = dict(extra_env or {})  # more PYBTC_* settings: peers, node id...
        self.port = free_port()
        self.miner_port = free_port()  # where GET /mine finds this node's miner (MinerProcess)
        self.log_path = data_dir / "ledger.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return Settings(network="regtest", data_dir=self.data_dir).db_path

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the ledger (same port and data each time) and wait for /healthz."""
        assert not self.running, "the ledger is running already"
        env = child_env(
            PYBTC_NETWORK="regtest",
            PYBTC_DATA_DIR=str(self.data_dir),
            PYBTC_HOST="127.0.0.1",
            PYBTC_LEDGER_PORT=str(self.port),
            PYBTC_MINER_PORT=str(self.miner_port),
            PYBTC_REDIS_URL=self.redis_url,
        )
        env |= self.extra_env
        self.proc = self.children.spawn(
            [sys.executable, "-m", "services.node"], env=env, log_path=self.log_path
        )
        self.starts += 1
        wait_for(f"{self.url}/healthz", self.proc, self.log_path, timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, and return the exit code (fail if it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the ledger ignored SIGTERM for {timeout:.0f}s:\n{self.log()}")

    def kill(self) -> int:
        """SIGKILL, like a power cut for the process; reap it and return its exit code."""
        assert self.proc is not None
        self.proc.kill()
        return self.proc.wait(timeout=15)

    def log(self) -> str:
        return log_tail(self.log_path)


# -- driving a ledger ------------------------------------------------------------------------


def mine(ledger_url: str, address: str, count: int = 1) -> list[Block]:
    """Template, solve (regtest: a couple of hashes), submit; `count` times. Each must be tip."""
    blocks = []
    for _ in range(count):
        query = urllib.parse.urlencode({"address": address})
        template = Block.from_dict(get_json(f"{ledger_url}/mining/template?{query}")["block"])
        block = mine_block(template)
        assert block is not None
        reply = http("POST", f"{ledger_url}/mining/submit", json_body=block.to_dict())
        assert reply.status == 201, reply.text
        assert reply.json()["is_tip"], reply.text
        blocks.append(block)
    return blocks


def send(
    ledger_url: str, key: PrivateKey, recipient: str, amount: int, *, fee: int = 1_000
) -> Transaction:
    """Sign a transfer with the sender's next nonce (pending ones counted); it must be 201."""
    nonce = get_json(f"{ledger_url}/address/{key.address}")["next_nonce"]
    tx = Transaction.create(
        key,
        recipient,
        amount,
        fee=fee,
        nonce=nonce,
        timestamp=int(time.time()),
        network_id=REGTEST.network_id,
    )
    reply = http("POST", f"{ledger_url}/transactions/new", json_body=tx.to_dict())
    assert reply.status == 201, reply.text
    assert reply.json()["txid"] == tx.txid
    return tx


class KillableRedis:
    """A redis-server of the test's own (never the session's) on a port that stays the same
    across `kill` (SIGKILL) and `start`, with the same password, as a node's would have."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the port was ours a moment ago; retry if the kernel still holds it
            try:
                self.server = EmbeddedRedis(
                    port=self.port, data_dir=self.data_dir, password=self.password
                ).start()
                return
            except EmbeddedRedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def kill(self) -> None:
        assert self.server is not None
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.stop()  # reaps it
        self.server = None
        logger.info("redis-server killed (SIGKILL) port=%d", self.port)

    def stop(self) -> int:
        """Stop it if it runs (SIGTERM, as an operator would); 0, the exit code of a clean stop."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        return 0


@pytest.fixture
def up_node(tmp_path: Path) -> Iterator[UpNode]:
    """A `pybtc up --network regtest` node of the test's own, stopped at the end."""
    started = UpNode(tmp_path / "data")
    try:
        yield started
    finally:
        started.stop()
