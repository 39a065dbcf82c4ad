"""The miner application factory: key, workers, ledger client, bus, mining loop, status API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import Gauge

from pybtc import decode_address
from services.common.bus import Bus, Kind
from services.common.ledger_client import LedgerClient
from services.common.limits import LIMITS, ClientLimits, require_operator
from services.common.node_key import load_or_create_node_key
from services.common.origins import BrowserGuard
from services.common.settings import Settings
from services.common.tasks import TASKS, add_tasks, tasks_check
from services.common.web import (
    Check,
    Metrics,
    ServiceError,
    add_health_and_metrics,
    base_middlewares,
    bus_check,
    read_json_object,
)
from services.miner.engine import Engine, default_workers
from services.miner.miner import Miner

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
MINER = web.AppKey("miner", Miner)
routes = web.RouteTableDef()


def reward_address(settings: Settings) -> str:
    """PYBTC_MINER_ADDRESS, or the address of a key kept in the data dir (made once)."""
    if settings.miner_address:
        decode_address(settings.miner_address)
        return settings.miner_address
    key = load_or_create_node_key(settings)
    return key.address


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics("miner")
    limits = ClientLimits.from_settings(settings)
    guard = BrowserGuard.from_settings(settings)
    app = web.Application(
        middlewares=base_middlewares(metrics, limits.middleware, guard.hosts, guard.writes),
        client_max_size=65536,
    )
    app[LIMITS] = limits
    app[SETTINGS] = settings
    add_tasks(app, "miner", metrics)
    app.cleanup_ctx.append(_miner_ctx)
    app.add_routes(routes)
    add_health_and_metrics(
        app,
        "miner",
        metrics,
        [_workers_check, _ledger_check, _bus_check, tasks_check],
        settings.instance_id,
    )
    for name, doc, read in (
        ("pybtc_miner_hash_rate", "Hashes per second over the last seconds", "hash_rate"),
        ("pybtc_miner_blocks_accepted", "Blocks the ledger accepted", "blocks_accepted"),
    ):
        Gauge(name, doc, registry=metrics.registry).set_function(_reader(app, read))
    return app


def _reader(app: web.Application, key: str) -> Callable[[], float]:
    def value() -> float:
        miner = app.get(MINER)
        return float(miner.status()[key]) if miner is not None else 0.0

    return value


async def _miner_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    address = reward_address(settings)
    engine = Engine(default_workers(settings.miner_workers))
    await asyncio.get_running_loop().run_in_executor(None, engine.start)
    ledger = LedgerClient(settings.ledger_internal_url)
    miner = Miner(
        ledger,
        engine,
        address,
        settings.mining_mode,
        node=settings.origin,
        auto_mine=settings.auto_mine,
    )
    if settings.redis_url:
        miner.bus = Bus(
            settings.redis_url, settings.network, f"{settings.origin}/miner", resync=_resync(miner)
        )
        await miner.bus.start()
    bus = miner.bus
    app[MINER] = miner
    tasks = app[TASKS]
    tasks.run("mining loop", miner.run)
    tasks.run("ledger watch", miner.watch_ledger)
    tasks.run("heartbeat", miner.heartbeat)
    if bus is not None:
        tasks.run("bus listener", lambda: _listen(bus, miner))
    if miner.auto_mine > 0:
        tasks.run("auto-mine", miner.auto_mine_loop)
    logger.info(
        "miner up mode=%s auto_mine=%.1fs workers=%d address=%s ledger=%s",
        miner.mode,
        miner.auto_mine,
        engine.size,
        address,
        settings.ledger_internal_url,
    )
    yield
    await tasks.close()  # before the bus, ledger client and workers they use
    if bus is not None:
        await bus.close()
    await ledger.close()
    await asyncio.get_running_loop().run_in_executor(None, engine.stop)


def _resync(miner: Miner) -> Callable[[], Awaitable[None]]:
    async def resync() -> None:
        miner.refresh("bus reconnect")

    return resync


async def _listen(bus: Bus, miner: Miner) -> None:
    async with bus.subscribe(Kind.TIP, Kind.TX) as subscription:
        async for envelope in subscription:
            await miner.on_bus(envelope)


@routes.post("/mine")
async def mine(request: web.Request) -> web.Response:
    """Mine one block now, for this node's ledger (its `GET /mine`): the block's hash and
    height once the ledger has accepted it. The operator token is needed when one is set, and
    a JSON body (`{"timeout": <seconds>}`, capped by PYBTC_MINE_TIMEOUT): a browser cannot send
    one from another site without a preflight, which is refused."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    if request.content_type != "application/json":
        raise ServiceError(415, "unsupported-media-type", "send Content-Type: application/json")
    body = await read_json_object(request)
    asked = body.get("timeout", settings.mine_timeout)
    if isinstance(asked, bool) or not isinstance(asked, int | float) or not asked > 0:
        raise ServiceError(400, "bad-type", "timeout must be a positive number of seconds")
    seconds = min(float(asked), settings.mine_timeout)
    miner = request.app[MINER]
    if not miner.engine.alive():  # replaced within a heartbeat; refused, not waited out
        raise ServiceError(503, "no-workers", "the hashing workers are being replaced")
    try:
        block = await miner.mine_one(seconds)
    except TimeoutError:
        raise ServiceError(504, "mine-timeout", f"no block found within {seconds:.0f}s") from None
    return web.json_response({"hash": block.hash, "height": block.index})


@routes.get("/status")
async def status(request: web.Request) -> web.Response:
    """Mode, activity (what it mines or waits for), auto-mine, workers, current job, hash
    rate, blocks found and rejected, uptime."""
    return web.json_response(request.app[MINER].status())


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return web.json_response({"service": "pyBTC miner", "status": "/status"})


async def _workers_check(app: web.Application) -> Check:
    miner = app.get(MINER)
    if miner is None:
        return Check("workers", False, "not started", fatal=True)
    alive = miner.engine.alive()
    return Check("workers", alive, f"{miner.engine.size} workers", fatal=not alive)


async def _bus_check(app: web.Application) -> Check:
    miner = app.get(MINER)
    return bus_check(miner.bus if miner is not None else None)


async def _ledger_check(app: web.Application) -> Check:
    miner = app.get(MINER)
    error = miner.stats.last_error if miner is not None else ""
    return Check("ledger", not error, error or "reachable")
