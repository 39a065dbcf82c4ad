"""Run the miner service: `python -m services.miner` (settings from PYBTC_* variables)."""

from __future__ import annotations

from aiohttp import web

from services.common.logs import setup_logging
from services.common.settings import Settings
from services.miner.app import create_app


def main() -> None:
    settings = Settings.from_env()
    setup_logging(settings.log_level, service="miner", node=settings.node_id)
    web.run_app(create_app(settings), host=settings.host, port=settings.miner_port, print=None)


if __name__ == "__main__":
    main()
