"""What every entry point does first: read and check the settings, or stop with one line.

`python -m services.<svc>`, `pybtc serve`, `pybtc up`, `pybtc backup` and the CLI wallet call
`load_settings` before anything binds or starts: a bad `PYBTC_*` value is
`error: PYBTC_MINER_MODE='turbo': one of auto, on-demand` on stderr and exit status 2 (the
status of a usage error), never a traceback from deep inside a service minutes later.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from services.common.logs import setup_logging
from services.common.settings import Settings, SettingsError

USAGE_ERROR = 2


def load_settings(environ: Mapping[str, str] | None = None, *, warn: bool = True) -> Settings:
    """`Settings.from_env`, or exit 2 naming the bad variable; warns of unknown PYBTC_* names."""
    try:
        settings = Settings.from_env(environ)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    if warn:
        for key in sorted(settings.extra):
            print(f"warning: unknown setting {key} (ignored)", file=sys.stderr)
    return settings


def start_service(service: str, settings: Settings | None = None) -> Settings:
    """The settings of a service about to run (loaded unless given), with its logging set up."""
    if settings is None:
        settings = load_settings()
    setup_logging(settings.log_level, service=service, node=settings.node_id)
    return settings
