"""The chaos run's network: three whole nodes as real processes, each service killable by pid.

Node k (`node0`, `node1`, `node2`) is five processes on loopback, all started by the test:

- its own `redis-server` (`EmbeddedRedis` on a fixed port, so a restart is found again), the bus
  of that node's four services only: nodes never share a Redis, so cutting the HTTP links
  between them really splits the network;
- `python -m services.node` (the ledger), `services.miner` (PYBTC_MINER_MODE=auto, one hashing
  worker, paying the node's own reward key), `services.explorer` and `services.wallet`, with
  one data dir and PYBTC_NODE_ID per node.

The network is devnet: real proof of work, retargeting toward a block every 5 seconds. (Regtest
with auto miners makes ~50 blocks a second per node: in a trial run the announcements between
the three nodes, through the proxies, timed out and the nodes did not converge at all; a flood
that measures the harness as much as the nodes, not a soak.) The miners' hashing workers are set
to nice 19 (`renice_workers`): they take the idle CPU of the machine, never the services' or
anyone else's.

Ledgers reach each other only through the test's `Switchboard` proxies: a ledger publishes its
proxy's URL (PYBTC_PUBLIC_URL) and lists the other two proxies in PYBTC_PEERS, while its own
miner, explorer and wallet reach it directly (PYBTC_LEDGER_URL). Every node sets
PYBTC_PEER_NETWORKS=loopback,private, since all of this is on 127.0.0.1.

Every service keeps its port across restarts; `Service.kill` is SIGKILL and a reap; `spawn`
starts the process and `ready` tells when `/healthz` answers at all (an explorer whose ledger is
down answers 503, and is up), so the driver can restart several services at once.
Processes are spawned through `ChildProcesses` (PR_SET_PDEATHSIG), which ties each child to the
*thread* that started it: only the main thread may call `spawn` or `start`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

from pybtc import PrivateKey, get_params
from services.common.embedded_redis import EmbeddedRedisError
from services.common.settings import Settings
from tests.chainutil import test_key
from tests.chaos.procfs import child_pids
from tests.functional.conftest import (
    ChildProcesses,
    KillableRedis,
    child_env,
    free_port,
    http,
    log_tail,
)
from tests.functional.netproxy import Front, Switchboard

logger = logging.getLogger(__name__)

KINDS = ("ledger", "miner", "explorer", "wallet", "redis")
"""Every kind of process the driver kills; the first four are services of a node."""
MODULES = {
    "ledger": "services.node",
    "miner": "services.miner",
    "explorer": "services.explorer",
    "wallet": "services.wallet",
}
PORT_SETTING = {
    "ledger": "PYBTC_LEDGER_PORT",
    "miner": "PYBTC_MINER_PORT",
    "explorer": "PYBTC_EXPLORER_PORT",
    "wallet": "PYBTC_WALLET_PORT",
}
NETWORK = "devnet"
PARAMS = get_params(NETWORK)
WORKER_NICE = 19
REWARD_KEYS = [test_key(50 + i) for i in range(3)]
"""What node k's miner pays (PYBTC_MINER_ADDRESS): the first money of the run."""
START_TIMEOUT = 45.0
"""Seconds a service may take to answer after a (re)start on a busy two-core machine."""


NO_ANSWER = (urllib.error.URLError, OSError, HTTPException)
"""What a request to a process that is being killed raises instead of answering."""


class StartError(RuntimeError):
    """A service exited during start-up or did not answer in time."""


@dataclass(eq=False)
class Service:
    """One service process of a node: its port, environment and log stay across restarts."""

    node: str
    kind: str
    port: int
    env: dict[str, str]
    log_path: Path
    children: ChildProcesses
    proc: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.node}/{self.kind}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def spawn(self) -> None:
        """Start the process (without waiting for it: see `ready`)."""
        assert not self.running, f"{self.name} is running already"
        command = [sys.executable, "-m", MODULES[self.kind]]
        self.proc = self.children.spawn(command, env=self.env, log_path=self.log_path)
        self.spawned_at = time.monotonic()

    def ready(self, timeout: float = START_TIMEOUT) -> bool:
        """True once `/healthz` answers (any status); StartError if it exited or took too long."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise StartError(f"{self.name} exited with {code}:\n{log_tail(self.log_path)}")
        try:
            http("GET", f"{self.url}/healthz", timeout=2.0)
        except NO_ANSWER:
            if time.monotonic() - self.spawned_at > timeout:
                self.kill()
                raise StartError(
                    f"{self.name} did not answer within {timeout:.0f}s:\n{log_tail(self.log_path)}"
                ) from None
            return False
        return True

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Spawn and wait until ready."""
        self.spawn()
        while not self.ready(timeout):
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL and reap: a power cut for this one process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


class RedisService(KillableRedis):
    """A node's redis-server on a port that stays the same across kills, with the interface
    the driver gives every process (name, pid, spawn, ready, stop's exit code)."""

    kind = "redis"

    def __init__(self, node: str, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.node = node

    @property
    def name(self) -> str:
        return f"{self.node}/redis"

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None and self.server.running else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def spawn(self) -> None:
        """Start and wait for PING (a few milliseconds: Redis needs no `ready` polling)."""
        self.start()

    def ready(self, timeout: float = START_TIMEOUT) -> bool:
        return True

    def start(self, timeout: float = START_TIMEOUT) -> None:
        try:
            super().start(timeout)
        except EmbeddedRedisError as exc:
            raise StartError(f"{self.name}: {exc}") from None


Process = Service | RedisService


@dataclass(eq=False)
class Node:
    """One node: its Redis, its four services and the proxy other ledgers reach it through."""

    name: str
    data_dir: Path
    reward: PrivateKey
    redis: RedisService
    front: Front
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def ledger(self) -> Service:
        return self.services["ledger"]

    @property
    def url(self) -> str:
        """The ledger, directly (what the test and the node's own services use)."""
        return self.ledger.url

    @property
    def db_path(self) -> Path:
        return Settings(network=NETWORK, data_dir=self.data_dir).db_path

    def process(self, kind: str) -> Process:
        return self.redis if kind == "redis" else self.services[kind]

    def processes(self) -> Iterator[Process]:
        yield self.redis
        yield from self.services.values()


class Cluster:
    """Three nodes (or `count`), their proxies, and every process they run."""

    def __init__(self, root: Path, board: Switchboard, count: int = 3) -> None:
        self.root = root
        self.board = board
        self.children = ChildProcesses()
        self.nodes: list[Node] = []
        for i in range(count):
            name = f"node{i}"
            data_dir = root / name
            data_dir.mkdir(parents=True)
            ports = {kind: free_port() for kind in MODULES}
            front = board.front(name, ports["ledger"])
            redis = RedisService(name, data_dir / "redis")
            node = Node(name, data_dir, REWARD_KEYS[i], redis, front)
            self.nodes.append(node)
            node.services = {
                kind: Service(name, kind, ports[kind], {}, data_dir / f"{kind}.log", self.children)
                for kind in MODULES
            }
        for node in self.nodes:
            env = self._env(node)
            for service in node.services.values():
                service.env = env

    def _env(self, node: Node) -> dict[str, str]:
        others = [n.front.url for n in self.nodes if n is not node]
        return child_env(
            PYBTC_NETWORK=NETWORK,
            PYBTC_DATA_DIR=str(node.data_dir),
            PYBTC_HOST="127.0.0.1",
            PYBTC_NODE_ID=node.name,
            PYBTC_REDIS_URL=node.redis.url,
            PYBTC_PUBLIC_URL=node.front.url,
            PYBTC_LEDGER_URL=node.ledger.url,
            PYBTC_PEERS=",".join(others),
            PYBTC_PEER_NETWORKS="loopback,private",
            PYBTC_MINER_MODE="auto",
            PYBTC_MINER_WORKERS="1",
            PYBTC_MINER_ADDRESS=node.reward.address,
            **{PORT_SETTING[kind]: str(s.port) for kind, s in node.services.items()},
        )

    def processes(self) -> Iterator[Process]:
        for node in self.nodes:
            yield from node.processes()

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def spawn(self, process: Process) -> None:
        """(Re)start one process without waiting; a ledger is identified to the switchboard."""
        process.spawn()
        if process.kind == "ledger":
            assert process.pid is not None
            self.board.identify(process.node, process.pid)

    def start(self, process: Process) -> None:
        """(Re)start one process and wait until it answers."""
        self.spawn(process)
        while not process.ready():
            time.sleep(0.1)
        self.renice_workers()

    def renice_workers(self) -> None:
        """Hashing workers at the lowest priority: they take the machine's idle CPU only.

        The miner itself keeps its normal priority (it must hear tips and answer at once); its
        worker processes, whenever new ones appear, are set to nice 19 from here.
        """
        for node in self.nodes:
            pid = node.services["miner"].pid
            for worker in child_pids(pid) if pid is not None else []:
                with contextlib.suppress(OSError):
                    if os.getpriority(os.PRIO_PROCESS, worker) != WORKER_NICE:
                        os.setpriority(os.PRIO_PROCESS, worker, WORKER_NICE)

    def start_all(self, kinds: tuple[str, ...] = KINDS) -> None:
        """Start these kinds on every node: Redis and ledgers one by one (a ledger registers
        with those already up), the others all at once."""
        for kind in ("redis", "ledger", "miner", "explorer", "wallet"):
            if kind not in kinds:
                continue
            processes = [node.process(kind) for node in self.nodes]
            if kind in ("redis", "ledger"):
                for process in processes:
                    self.start(process)
            else:
                for process in processes:
                    self.spawn(process)
                for process in processes:
                    while not process.ready():
                        time.sleep(0.1)
            for process in processes:
                logger.info("%s up pid=%s", process.name, process.pid)
        self.renice_workers()

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every service (then Redis); each one's exit code."""
        codes: dict[str, int | None] = {}
        for kind in ("miner", "wallet", "explorer", "ledger", "redis"):
            for node in self.nodes:
                process = node.process(kind)
                if process.running:
                    codes[process.name] = process.stop()
        return codes

    def close(self) -> None:
        """Kill whatever still runs, pass or fail."""
        for node in self.nodes:
            node.redis.stop()
        self.children.reap_all()


def integrity_check(db_path: Path, quick: bool = False) -> str:
    """SQLite's own check of a ledger database: "ok" or what is wrong."""
    pragma = "quick_check" if quick else "integrity_check"
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(f"PRAGMA {pragma}").fetchall()
    finally:
        db.close()
    return "; ".join(str(r[0]) for r in rows)
