"""Run the ledger service: `python -m services.node` (settings from PYBTC_* variables)."""

from __future__ import annotations

from aiohttp import web

from services.common.logs import setup_logging
from services.common.settings import Settings
from services.node.app import create_app


def main() -> None:
    settings = Settings.from_env()
    setup_logging(settings.log_level, service="ledger", node=settings.node_id)
    app = create_app(settings)
    web.run_app(app, host=settings.host, port=settings.ledger_port, print=None)


if __name__ == "__main__":
    main()
