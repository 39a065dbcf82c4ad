"""Run the ledger service: `python -m services.node` (settings from PYBTC_* variables)."""

from __future__ import annotations

from aiohttp import web

from services.common.entry import start_service
from services.common.settings import Settings
from services.node.app import create_app


def main(settings: Settings | None = None) -> None:
    """Check the settings (exit 2 on a bad one), then serve until stopped."""
    settings = start_service("ledger", settings)
    app = create_app(settings)
    web.run_app(app, host=settings.host, port=settings.ledger_port, print=None)


if __name__ == "__main__":
    main()
