"""The child processes of `pybtc up`: start one, know it is ours, restart it, give up on it.

A service is `python -m services.<name>` in a session of its own (Ctrl-C in a terminal reaches
`pybtc up` alone, which stops the services in order) that the kernel stops when `pybtc up`
dies, whatever kills it (`services.common.lifeline`). It counts as up once its `/healthz`
answers 200 with the service's name and this run's instance id: whatever else answers on the
port is an error, never success. A service that exits after running a while is restarted; one
that keeps failing at start (three quick exits within a minute, or a restart that does not
come up) ends the run with the reason.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common import lifeline

logger = logging.getLogger("pybtc.up")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
QUICK_EXIT = 10.0
"""A process that exits sooner than this after its start failed at start."""
FAILURE_WINDOW = 60.0
MAX_QUICK_EXITS = 3

Stopping = Callable[[], bool]


def never() -> bool:
    return False


class StartupError(RuntimeError):
    """A service did not come up."""


class GiveUpError(RuntimeError):
    """A service keeps failing at start: restarting it again would only loop."""


@dataclass
class Service:
    """One child process of a node."""

    name: str
    module: str
    port: int
    env: dict[str, str]
    node: str = ""
    """The node's name when `pybtc up` runs several, for its own lines about the service."""
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    failures: list[float] = field(default_factory=list)
    """When it exited quickly after a start, within the last FAILURE_WINDOW seconds."""

    @property
    def url(self) -> str:
        host = self.env.get("PYBTC_HOST", "127.0.0.1")
        return f"http://{host}:{self.port}"

    @property
    def title(self) -> str:
        """`wallet`, or `node2 wallet` when several nodes run."""
        return f"{self.node} {self.name}" if self.node else self.name

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", self.module],
            env=self.env,
            start_new_session=True,
            preexec_fn=lifeline.die_with_parent(),
        )
        self.started_at = time.monotonic()
        prefix = f"{self.node} " if self.node else ""
        logger.info(
            "%sstarted service=%s pid=%d url=%s", prefix, self.name, self.proc.pid, self.url
        )

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("service=%s did not stop in %.0fs; killing", self.title, STOP_TIMEOUT)
            proc.kill()
            proc.wait()
        logger.info("stopped service=%s", self.title)


def wait_healthy(
    service: Service, timeout: float = START_TIMEOUT, stopping: Stopping = never
) -> bool:
    """Poll GET /healthz until this run's service answers 200; False if a stop is asked for
    meanwhile. StartupError if the process exits, something else answers, or time runs out."""
    deadline = time.monotonic() + timeout
    url = service.url + "/healthz"
    instance = service.env.get("PYBTC_INSTANCE_ID", "")
    while time.monotonic() < deadline:
        if stopping():
            return False
        assert service.proc is not None
        code = service.proc.poll()
        if code is not None:
            raise StartupError(f"{service.title} exited during start-up with code {code}")
        answer = _healthz(url)
        if answer is not None:
            status, body = answer
            if not _is_ours(body, service.name, instance):
                raise StartupError(
                    f"something else answers on port {service.port}, not {service.title} "
                    f"of this run (GET /healthz: {status} {body[:80]!r})"
                )
            if status == 200:
                return True
        time.sleep(0.2)
    raise StartupError(f"{service.title} did not answer {url} within {timeout:.0f}s")


def _healthz(url: str) -> tuple[int, str] | None:
    """The status and body of GET url, or None if nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own http URL
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None


def _is_ours(body: str, name: str, instance: str) -> bool:
    try:
        health = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(health, dict)
        and health.get("service") == name
        and health.get("instance") == instance
    )


def supervise(service: Service, echo: Callable[[str], None], stopping: Stopping = never) -> None:
    """Restart a service that exited, pausing longer each time it fails quickly; GiveUpError when
    it keeps failing at start. Nothing is restarted once a stop is asked for."""
    assert service.proc is not None
    code = service.proc.poll()
    if code is None or stopping():
        return
    now = time.monotonic()
    service.failures = [t for t in service.failures if now - t < FAILURE_WINDOW]
    if now - service.started_at < QUICK_EXIT:
        service.failures.append(now)
    if len(service.failures) >= MAX_QUICK_EXITS:
        span = now - service.failures[0]
        raise GiveUpError(
            f"{service.title} keeps failing at start (exited with code {code} "
            f"{len(service.failures)} times in {span:.0f} s; its log is above)"
        )
    pause = min(30.0, 0.5 * 2 ** max(0, len(service.failures) - 1))
    echo(f"{service.title} exited with code {code}; restarting in {pause:.1f}s")
    if not pause_unless_stopping(pause, stopping):
        return
    service.restarts += 1
    service.start()
    try:
        wait_healthy(service, stopping=stopping)
    except StartupError as exc:
        raise GiveUpError(
            f"{service.title} keeps failing at start ({exc}; its log is above)"
        ) from None


def pause_unless_stopping(seconds: float, stopping: Stopping) -> bool:
    """Sleep `seconds` in short steps; False as soon as a stop is asked for."""
    deadline = time.monotonic() + seconds
    while not stopping():
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(0.1, left))
    return False
