"""Run the miner service: `python -m services.miner` (settings from PYBTC_* variables)."""

from __future__ import annotations

from aiohttp import web

from services.common.entry import start_service
from services.common.settings import Settings
from services.miner.app import create_app


def main(settings: Settings | None = None) -> None:
    """Check the settings (exit 2 on a bad one), then serve until stopped."""
    settings = start_service("miner", settings)
    web.run_app(create_app(settings), host=settings.host, port=settings.miner_port, print=None)


if __name__ == "__main__":
    main()
