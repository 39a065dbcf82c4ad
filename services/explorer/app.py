"""The explorer application factory: templates, static files, the ledger client, live events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp_jinja2
import jinja2
from aiohttp import web

from pybtc import format_amount
from services.common.bus import Bus, Kind
from services.common.ledger_client import LedgerClient
from services.common.settings import Settings
from services.common.web import (
    Check,
    Handler,
    Metrics,
    ServiceError,
    add_health_and_metrics,
    security_headers_middleware,
)
from services.explorer.live import Broadcaster
from services.explorer.views import BROADCASTER, LEDGER, SETTINGS, routes

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The explorer for `settings`; it reads the node's ledger at `PYBTC_LEDGER_URL`."""
    metrics = Metrics("explorer")
    app = web.Application(
        middlewares=[security_headers_middleware, metrics.middleware, _html_errors],
        client_max_size=16_384,
    )
    app[SETTINGS] = settings
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("services.explorer", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        filters={"coins": _coins, "when": _when, "short": _short},
    )
    app.router.add_static("/static/", path=str(_static_dir()), name="static")
    app.add_routes(routes)
    app.cleanup_ctx.append(_clients_ctx)
    app.on_shutdown.append(_end_streams)
    add_health_and_metrics(app, "explorer", metrics, [_ledger_check])
    return app


def _static_dir() -> object:
    from importlib.resources import files

    return files("services.explorer").joinpath("static")


def _coins(units: object) -> str:
    if not isinstance(units, int) or isinstance(units, bool):
        return "?"
    return format_amount(units)


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp > 2**40:
        return "?"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(text: object, size: int = 16) -> str:
    value = str(text)
    return value if len(value) <= size else value[:size] + "…"


@web.middleware
async def _html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals as a readable page (JSON for /api/ paths), never a traceback."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return _error_page(request, exc.status, exc.message, exc.reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc.status, exc.reason, f"http-{exc.status}")
    except Exception:
        logger.exception("unhandled error path=%s", request.path)
        return _error_page(request, 500, "Something went wrong on this page.", "internal")


def _error_page(request: web.Request, status: int, message: str, reason: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message, "reason": reason}, status=status)
    response = aiohttp_jinja2.render_template(
        "error.html", request, {"status": status, "message": message, "reason": reason}
    )
    response.set_status(status)
    return response


async def _clients_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[LEDGER] = LedgerClient(settings.ledger_internal_url, timeout=5.0)
    broadcaster = Broadcaster()
    app[BROADCASTER] = broadcaster
    bus = None
    task = None
    if settings.redis_url:
        bus = Bus(
            settings.redis_url,
            settings.network,
            f"{settings.origin}/explorer",
            resync=_resync(broadcaster),
        )
        await bus.start()
        task = asyncio.create_task(_forward(bus, broadcaster, f"{settings.origin}/ledger"))
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await broadcaster.close()
    if bus is not None:
        await bus.close()
    await app[LEDGER].close()


async def _end_streams(app: web.Application) -> None:
    """Close open live-update streams first, so a shutdown does not wait for browsers."""
    await app[BROADCASTER].close()


def _resync(broadcaster: Broadcaster) -> Callable[[], Awaitable[None]]:
    async def resync() -> None:  # the bus reconnected: open pages re-read everything
        broadcaster.send("resync", {"at": int(time.time())})

    return resync


async def _forward(bus: Bus, broadcaster: Broadcaster, ledger_origin: str) -> None:
    """This node's ledger's announcements, passed to every open page."""
    async with bus.subscribe(Kind.BLOCK, Kind.TIP, Kind.TX, Kind.REORG) as subscription:
        async for envelope in subscription:
            if envelope.origin == ledger_origin:
                broadcaster.send(str(envelope.type), envelope.data)


async def _ledger_check(app: web.Application) -> Check:
    try:
        await app[LEDGER].get("/status")
    except ServiceError as exc:
        return Check("ledger", False, exc.message)
    return Check("ledger", True, "reachable")
