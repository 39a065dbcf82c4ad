"""The explorer application factory: templates, static files, the ledger client, live events."""

from __future__ import annotations

import logging

from aiohttp import web

from services.common.i18n import N_, gettext
from services.common.limits import LIMITS, ClientLimits
from services.common.origins import BrowserGuard
from services.common.pages import (
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
from services.explorer.views import routes

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The explorer for `settings`; it reads the node's ledger at `PYBTC_LEDGER_URL`."""
    metrics = Metrics("explorer")
    limits = ClientLimits.from_settings(settings)
    guard = BrowserGuard.from_settings(settings)
    app = web.Application(
        middlewares=[
            security_headers_middleware,
            metrics.middleware,
            html_errors,
            limits.middleware,
            guard.hosts,
            guard.writes,
        ],
        client_max_size=16_384,
    )
    app[LIMITS] = limits
    app[SETTINGS] = settings
    setup_pages(app, "services.explorer", {"drop_reason": _drop_reason}, translated=True)
    app.add_routes(routes)
    add_tasks(app, "explorer", metrics)
    add_ledger_and_live(app, "explorer")
    add_health_and_metrics(
        app, "explorer", metrics, [ledger_check, bus_health, tasks_check], settings.instance_id
    )
    return app


DROP_REASONS = {
    "bad-nonce": N_("another transaction of its sender with the same nonce is in the best chain"),
    "insufficient-funds": N_("its sender no longer has the coins on the best chain"),
    "replaced": N_("a pending transaction with the same nonce replaced it"),
    "mempool-full": N_("the mempool was full and it paid the lowest fee"),
}


def _drop_reason(reason: object) -> str:
    known = DROP_REASONS.get(str(reason))
    return gettext(known) if known else gettext("rule %(reason)s") % {"reason": reason}
