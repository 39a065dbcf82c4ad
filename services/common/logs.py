"""Logging set-up shared by the services: one line per event, `key=value` details."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", service: str | None = None) -> None:
    """Log to stderr at `level`; quiet aiohttp's per-request access log to warnings."""
    fmt = FORMAT if service is None else f"%(asctime)s {service} %(levelname)-7s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
