"""Live updates: the ledger's announcements pushed to open pages as Server-Sent Events.

`Broadcaster` fans events out to every open `GET /events` stream; `forward_announcements`
subscribes to the node's bus and passes its ledger's block, tip, transaction and reorg
announcements on; after a bus reconnect pages are told to `resync` (re-read from the ledger),
since announcements published while the bus was away are lost. Used by the explorer and wallet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from services.common.bus import Bus, Kind
from services.common.settings import Settings
from services.common.tasks import Supervisor

logger = logging.getLogger(__name__)

QUEUE_SIZE = 100
KEEPALIVE = 15.0
MAX_CLIENTS = 500


class Broadcaster:
    """One bounded queue per open page; a page that cannot keep up is told to resync."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[tuple[str, str]]] = set()
        self.closed = False

    def send(self, event: str, data: dict[str, Any]) -> None:
        payload = json.dumps(data, separators=(",", ":"))
        for queue in list(self.clients):
            try:
                queue.put_nowait((event, payload))
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait(("resync", "{}"))

    async def close(self) -> None:
        self.closed = True
        for queue in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(("bye", "{}"))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET /events: `event: <kind>` / `data: <json>` lines until the page goes away."""
        if len(self.clients) >= MAX_CLIENTS:
            raise web.HTTPServiceUnavailable(reason="too many live pages open")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self.clients.add(queue)
        try:
            await response.write(b"event: hello\ndata: {}\n\n")
            while not self.closed:
                try:
                    event, payload = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event == "bye":
                    break
                await response.write(f"event: {event}\ndata: {payload}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            self.clients.discard(queue)
        return response


@contextlib.asynccontextmanager
async def forward_announcements(
    settings: Settings, broadcaster: Broadcaster, service: str, tasks: Supervisor
) -> AsyncIterator[Bus | None]:
    """While open: this node's ledger's announcements reach `broadcaster` (no bus: nothing),
    forwarded by the task `live updates` of `tasks`; yields the bus (None without one)."""
    if not settings.redis_url:
        yield None
        return
    bus = Bus(
        settings.redis_url,
        settings.network,
        f"{settings.origin}/{service}",
        resync=_resync(broadcaster),
    )
    await bus.start()
    ledger = f"{settings.origin}/ledger"
    forwarder = tasks.run("live updates", lambda: _forward(bus, broadcaster, ledger))
    try:
        yield bus
    finally:
        await forwarder.stop()  # before the bus closes, which would end its subscription
        await bus.close()


def _resync(broadcaster: Broadcaster) -> Callable[[], Awaitable[None]]:
    async def resync() -> None:  # the bus reconnected: open pages re-read everything
        broadcaster.send("resync", {"at": int(time.time())})

    return resync


async def _forward(bus: Bus, broadcaster: Broadcaster, ledger_origin: str) -> None:
    async with bus.subscribe(Kind.BLOCK, Kind.TIP, Kind.TX, Kind.REORG) as subscription:
        async for envelope in subscription:
            if envelope.origin == ledger_origin:
                broadcaster.send(str(envelope.type), envelope.data)
