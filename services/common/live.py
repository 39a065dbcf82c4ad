"""Live updates: the ledger's announcements pushed to open pages as Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

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
