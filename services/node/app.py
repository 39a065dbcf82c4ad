"""The ledger application factory: wiring only (store, ledger, bus, routes, middleware)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import Gauge

from services.common.bus import Bus
from services.common.limits import LIMITS, ClientLimits
from services.common.origins import BrowserGuard
from services.common.quota import ClientQuota
from services.common.settings import Settings
from services.common.tasks import TASKS, add_tasks, tasks_check
from services.common.web import Check, Metrics, add_health_and_metrics, base_middlewares
from services.node.announce import Announcer
from services.node.keys import (
    ANNOUNCER,
    BAD_BLOCKS,
    BUS,
    CLOCK,
    LEDGER,
    MINE_DESK,
    NETWORK,
    SETTINGS,
)
from services.node.ledger import Ledger, MempoolPolicy
from services.node.mine import MineDesk
from services.node.network import Network
from services.node.store import Store
from services.node.views import TOO_MANY_BAD_BLOCKS, routes

logger = logging.getLogger(__name__)

STATE_CHANGING_GETS = ("/mine", "/nodes/resolve")
"""The tutorial's GETs that act: a page of another site may not send them (origins.py)."""


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The ledger service for `settings`; the database opens when the app starts."""
    metrics = Metrics("ledger")
    limits = ClientLimits.from_settings(settings)
    guard = BrowserGuard.from_settings(settings, STATE_CHANGING_GETS)
    app = web.Application(
        middlewares=base_middlewares(metrics, limits.middleware, guard.hosts, guard.writes),
        client_max_size=settings.max_body_bytes,
    )
    app[LIMITS] = limits
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[BAD_BLOCKS] = ClientQuota(
        "refused blocks",
        settings.bad_blocks_per_minute / 60,
        settings.bad_block_burst,
        reason=TOO_MANY_BAD_BLOCKS,
        setting="PYBTC_BAD_BLOCKS_PER_MINUTE",
    )
    app[ANNOUNCER] = Announcer(settings.ledger_public_url)
    add_tasks(app, "ledger", metrics)
    app.cleanup_ctx.append(_ledger_ctx)
    app.cleanup_ctx.append(_bus_ctx)
    app.cleanup_ctx.append(_network_ctx)
    app.add_routes(routes)
    add_health_and_metrics(
        app, "ledger", metrics, [_storage_check, _bus_check, tasks_check], settings.instance_id
    )
    _ledger_gauges(app, metrics)
    return app


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = Store(settings.db_path)
    policy = MempoolPolicy(max_count=settings.mempool_max_count, min_fee=settings.min_fee)
    ledger = Ledger(store, settings.params, policy, rejection_log_size=settings.rejection_log_size)
    app[LEDGER] = ledger
    logger.info(
        "ledger open network=%s db=%s height=%d tip=%s",
        settings.network,
        settings.db_path,
        ledger.height,
        ledger.tip_hash[:16],
    )
    yield
    store.close()
    logger.info("ledger closed db=%s", settings.db_path)


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.redis_url:
        logger.warning("no PYBTC_REDIS_URL: announcements stay inside this process")
        app[BUS] = None
        yield
        return

    async def resync() -> None:  # after a reconnect, or a gap in someone's messages
        network = app.get(NETWORK)
        if network is not None:
            await network.resync()

    bus = Bus(settings.redis_url, settings.network, f"{settings.origin}/ledger", resync=resync)
    await bus.start()
    app[BUS] = bus
    app[ANNOUNCER].publish = bus.publish
    yield
    app[ANNOUNCER].publish = None
    await bus.close()


async def _network_ctx(app: web.Application) -> AsyncIterator[None]:
    network = Network(app[SETTINGS], app[LEDGER], app[ANNOUNCER], app[CLOCK])
    network.bad_blocks = app[BAD_BLOCKS]
    app[NETWORK] = network
    await network.start(app[BUS], app[TASKS])
    app[MINE_DESK] = MineDesk(app[SETTINGS], app[LEDGER])
    yield
    await network.close()  # stops the tasks before the bus and store close


async def _storage_check(app: web.Application) -> Check:
    try:
        ledger = app[LEDGER]
        height = ledger.height
    except Exception as exc:  # a health check reports; it never raises
        return Check("storage", False, f"{type(exc).__name__}: {exc}", fatal=True)
    return Check("storage", True, f"height {height}")


async def _bus_check(app: web.Application) -> Check:
    bus = app.get(BUS)
    if bus is None:
        return Check("redis", False, "no bus configured")
    if not bus.connected:
        return Check("redis", False, "disconnected; reconnecting (announcements paused)")
    return Check("redis", True, "connected")


def _ledger_gauges(app: web.Application, metrics: Metrics) -> None:
    def read(attribute: Callable[[Ledger], float]) -> Callable[[], float]:
        def value() -> float:
            ledger = app.get(LEDGER)
            return float(attribute(ledger)) if ledger is not None else 0.0

        return value

    for name, doc, attribute in (
        ("pybtc_ledger_height", "Height of the best chain", lambda lg: lg.height),
        ("pybtc_ledger_mempool_size", "Pending transactions", lambda lg: lg.store.mempool_count()),
        ("pybtc_ledger_difficulty", "Difficulty of the tip", lambda lg: lg.difficulty()),
    ):
        Gauge(name, doc, registry=metrics.registry).set_function(read(attribute))
