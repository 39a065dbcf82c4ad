"""The container health check: GET /healthz of the pyBTC service this container runs.

Which service: the argument if one is given, else the `serve <service>` in the container's
command (PID 1's command line, so it also works behind an init such as docker-init). Where:
that service's port from the node's PYBTC_* settings (`Settings.from_env`, so a changed
PYBTC_LEDGER_PORT is followed), on loopback when the service listens on every address.

Healthy (exit 0) when /healthz answers 200 and names that service; "degraded" counts as
healthy, as it does for `pybtc up`: the service works and waits for its bus. Anything else
exits 1 with one line saying why, which `docker inspect` shows.

    python /usr/local/lib/pybtc/healthcheck.py [ledger|miner|explorer|wallet]
"""

from __future__ import annotations

import itertools
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from services.common.settings import Settings, SettingsError

SERVICES = ("ledger", "miner", "explorer", "wallet")
"""What `pybtc serve` runs (services.cli.SERVICES; not imported: it pulls in every service)."""
TIMEOUT = 3.0
ANY_ADDRESS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def service_from_command(argv: Sequence[str]) -> str | None:
    """The SERVICE of a `... serve SERVICE` command line, or None."""
    for word, following in itertools.pairwise(argv):
        if word == "serve" and following in SERVICES:
            return following
    return None


def pid1_command(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """PID 1's command line: the container's command (or its init and then the command)."""
    try:
        raw = proc.read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def healthz_url(service: str, settings: Settings) -> str:
    """Where this container's SERVICE answers /healthz, from inside the container."""
    host = ANY_ADDRESS.get(settings.host, settings.host)
    shown = f"[{host}]" if ":" in host else host
    port = getattr(settings, f"{service}_port")
    return f"http://{shown}:{port}/healthz"


def check(url: str, service: str) -> str | None:
    """None if URL answers 200 naming SERVICE; otherwise why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:  # noqa: S310 - our own URL
            body = json.loads(resp.read(65536))
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if not isinstance(body, dict) or body.get("service") != service:
        return f"{url} is not the {service} (it says {str(body)[:80]!r})"
    return None


def main(argv: Sequence[str]) -> int:
    service = argv[0] if argv else service_from_command(pid1_command())
    if service not in SERVICES:
        print(f"unhealthy: which service? not `pybtc serve <{'|'.join(SERVICES)}>`: {service}")
        return 1
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"unhealthy: {exc}")
        return 1
    url = healthz_url(service, settings)
    problem = check(url, service)
    if problem is not None:
        print(f"unhealthy: {problem}")
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
