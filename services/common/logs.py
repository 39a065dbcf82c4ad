"""Logging set-up shared by the services: one line per event, `key=value` details."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", service: str | None = None, node: str = "") -> None:
    """Log to stderr at `level`; quiet aiohttp's per-request access log to warnings.

    Each line names the service and, when PYBTC_NODE_ID is set (`pybtc up --nodes N` sets
    node1..nodeN, the compose stack its node names), the node: `node2 ledger INFO …`."""
    label = f"{node} {service}" if node and service else service
    fmt = FORMAT if label is None else f"%(asctime)s {label} %(levelname)-7s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
