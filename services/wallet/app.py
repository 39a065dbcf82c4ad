"""The wallet application factory: pages, the JSON API, the faucet, live events, CSRF."""

from __future__ import annotations

from aiohttp import web

from services.common.limits import LIMITS, ClientLimits
from services.common.origins import GUARD, BrowserGuard
from services.common.pages import (
    LEDGER,
    SETTINGS,
    add_ledger_and_live,
    bus_health,
    html_errors,
    ledger_check,
    setup_pages,
)
from services.common.settings import Settings
from services.common.tasks import add_tasks, tasks_check
from services.common.web import Metrics, add_health_and_metrics, security_headers_middleware
from services.wallet.csrf import csrf_middleware
from services.wallet.faucet import Faucet
from services.wallet.views import FAUCET, routes


def create_app(settings: Settings) -> web.Application:
    """The wallet for `settings`; it reads and writes through the ledger at PYBTC_LEDGER_URL."""
    metrics = Metrics("wallet")
    limits = ClientLimits.from_settings(settings)
    guard = BrowserGuard.from_settings(settings)
    app = web.Application(
        middlewares=[
            security_headers_middleware,
            metrics.middleware,
            html_errors,
            limits.middleware,
            guard.hosts,
            csrf_middleware,  # its own Origin check first: a foreign page's POST is `csrf`
            guard.writes,
        ],
        client_max_size=65_536,  # a signed transaction is well under 1 KiB
    )
    app[LIMITS] = limits
    app[GUARD] = guard
    app[SETTINGS] = settings
    env = setup_pages(app, "services.wallet")
    env.globals.update(network=settings.network, explorer_url=settings.explorer_url)
    app.add_routes(routes)
    add_tasks(app, "wallet", metrics)
    add_ledger_and_live(app, "wallet")
    app.on_startup.append(_faucet)
    add_health_and_metrics(
        app, "wallet", metrics, [ledger_check, bus_health, tasks_check], settings.instance_id
    )
    return app


async def _faucet(app: web.Application) -> None:
    app[FAUCET] = Faucet(app[SETTINGS], app[LEDGER])
