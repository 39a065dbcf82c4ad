"""The explorer application factory: templates, static files, the ledger client, live events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from services.common.ledger_client import LedgerClient
from services.common.live import Broadcaster, forward_announcements
from services.common.pages import html_errors, setup_pages
from services.common.settings import Settings
from services.common.web import (
    Check,
    Metrics,
    ServiceError,
    add_health_and_metrics,
    security_headers_middleware,
)
from services.explorer.views import BROADCASTER, LEDGER, SETTINGS, routes

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The explorer for `settings`; it reads the node's ledger at `PYBTC_LEDGER_URL`."""
    metrics = Metrics("explorer")
    app = web.Application(
        middlewares=[security_headers_middleware, metrics.middleware, html_errors],
        client_max_size=16_384,
    )
    app[SETTINGS] = settings
    setup_pages(app, "services.explorer", {"drop_reason": _drop_reason})
    app.add_routes(routes)
    app.cleanup_ctx.append(_clients_ctx)
    app.on_shutdown.append(_end_streams)
    add_health_and_metrics(app, "explorer", metrics, [_ledger_check])
    return app


DROP_REASONS = {
    "bad-nonce": "another transaction of its sender with the same nonce is in the best chain",
    "insufficient-funds": "its sender no longer has the coins on the best chain",
    "replaced": "a pending transaction with the same nonce replaced it",
    "mempool-full": "the mempool was full and it paid the lowest fee",
}


def _drop_reason(reason: object) -> str:
    return DROP_REASONS.get(str(reason), f"rule {reason}")


async def _clients_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[LEDGER] = LedgerClient(settings.ledger_internal_url, timeout=5.0)
    broadcaster = Broadcaster()
    app[BROADCASTER] = broadcaster
    async with forward_announcements(settings, broadcaster, "explorer"):
        yield
    await broadcaster.close()
    await app[LEDGER].close()


async def _end_streams(app: web.Application) -> None:
    """Close open live-update streams first, so a shutdown does not wait for browsers."""
    await app[BROADCASTER].close()


async def _ledger_check(app: web.Application) -> Check:
    try:
        await app[LEDGER].get("/status")
    except ServiceError as exc:
        return Check("ledger", False, exc.message)
    return Check("ledger", True, "reachable")
