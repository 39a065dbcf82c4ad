"""The Redis pub/sub bus: announcements between the services of a node and between nodes.

Pub/sub is at-most-once and drops what is published while a subscriber is away, so the bus is a
hint (DESIGN.md §2): a receiver fetches what it lacks over HTTP, and a service re-syncs (the
`resync` callback) after every reconnect and whenever an origin's sequence numbers show a gap.

Channels are `pybtc:{network}:{kind}` (`channel()`, the only place they are built). Messages are a
versioned JSON envelope, read strictly because anyone who can reach the Redis can publish:

    {"v": 1, "type": "<kind>", "origin": "<origin id>", "seq": <int>, "data": {...}}

`seq` counts the messages of one origin from 1; a `Bus` is one origin, so a process that runs
several buses gives each its own origin id. One listener task per bus fans messages out to the
bounded queues of its subscribers, reconnects with exponential backoff and never dies from a
Redis error; `publish` never raises on a Redis outage (the caller runs degraded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, MutableMapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from services.common.envelope import (
    MAX_MESSAGE_BYTES,
    ORIGIN_RE,
    BusMessageError,
    Envelope,
    Kind,
    channel,
)

__all__ = ["Bus", "BusMessageError", "Envelope", "Kind", "Subscription", "bus_ctx", "channel"]

logger = logging.getLogger(__name__)

PING_IDLE = 5.0  # seconds of silence before the listener checks the connection with a PING
MAX_TRACKED_ORIGINS = 4096  # bounds the memory an attacker can make us spend on origins

Resync = Callable[[], Awaitable[None]]


def _describe(exc: BaseException) -> str:
    """`Type(message)`: redis-py 8's repr of its errors drops the message."""
    return f"{type(exc).__name__}({exc})"


class Subscription:
    """One subscriber: a bounded queue fed by the bus listener, read with `async for`."""

    def __init__(self, bus: Bus, kinds: frozenset[Kind], maxsize: int) -> None:
        self._bus = bus
        self.kinds = kinds
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; the iterator ends once the queued envelopes are read."""
        self._bus._subscribers.discard(self)
        if self.queue.full():  # make room for the end marker: this subscriber is done anyway
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Envelope:
        item = await self.queue.get()
        if item is None:
            self.queue.put_nowait(None)  # stay ended for any later reader
            raise StopAsyncIteration
        return item


class Bus:
    """Publish and subscribe to one network's announcements as one origin."""

    def __init__(
        self,
        redis_url: str,
        network: str,
        origin: str,
        *,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        resync: Resync | None = None,
        timeout: float = 2.0,
        queue_size: int = 1000,
    ) -> None:
        if not ORIGIN_RE.fullmatch(origin):
            raise ValueError(f"bad origin {origin!r}: expected 1-128 printable ASCII characters")
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError("expected 0 < reconnect_min <= reconnect_max")
        self.network, self.origin = network, origin
        self._channels = {channel(network, kind).encode(): kind for kind in Kind}
        self._url, self._timeout, self._queue_size = redis_url, timeout, queue_size
        self._reconnect_min, self._reconnect_max = reconnect_min, reconnect_max
        self._resync = resync
        parts = urlsplit(redis_url)  # the host for log lines, never the password
        self.host = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port}"
        self._redis: Redis | None = None  # publishes
        self._sub_redis: Redis | None = None  # the listener's
        self._listener: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._resync_again = False
        self._first_attempt = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._subscribers: set[Subscription] = set()
        self._last_seq: dict[str, int] = {}
        self._seq = 0
        self._connected = False
        self._attempt = 0  # failed connection attempts since the last success
        self.published = self.received = self.dropped = self.invalid = 0
        self.gaps = self.reconnects = self.resyncs = 0

    @property
    def connected(self) -> bool:
        """True while the listener is subscribed to the network's channels."""
        return self._connected

    def stats(self) -> dict[str, int]:
        """The counters, for /healthz and /metrics."""
        names = ("published", "received", "dropped", "invalid", "gaps", "reconnects", "resyncs")
        return {name: getattr(self, name) for name in names} | {"connected": int(self.connected)}

    async def start(self) -> None:
        """Start the listener and wait for its first attempt, so a live Redis is subscribed."""
        if self._redis is not None:
            raise RuntimeError("bus already started")
        # The listener gets no redis-py retries: a reconnect inside redis-py resubscribes
        # silently, and the messages lost meanwhile would never trigger a resync. A publish gets
        # one, because after a Redis restart the pool hands out a dead connection first.
        self._redis, self._sub_redis = self._client(retries=1), self._client(retries=0)
        self._listener = asyncio.create_task(self._listen(), name=f"bus-listener:{self.origin}")
        with contextlib.suppress(TimeoutError):  # bounded: an unreachable Redis must not hang
            async with asyncio.timeout(self._timeout * 2):
                await self._first_attempt.wait()

    def _client(self, retries: int) -> Redis:
        return Redis.from_url(
            self._url,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=Retry(NoBackoff(), retries),
            client_name=f"pybtc-bus:{self.origin}",
        )

    async def close(self) -> None:
        """Stop the listener and any resync, end every subscription, close the connections."""
        tasks = [t for t in (self._listener, self._resync_task) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._listener = self._resync_task = None
        for sub in list(self._subscribers):
            sub.close()
        for client in (self._redis, self._sub_redis):
            if client is not None:
                await client.aclose()
        self._redis = self._sub_redis = None
        self._connected = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def publish(self, kind: Kind | str, data: dict[str, Any]) -> Envelope | None:
        """Announce `data`; return the envelope sent, or None (logged) if Redis is unavailable."""
        if self._redis is None:
            raise RuntimeError("bus not started")
        try:  # the lock keeps seq order on the wire; the timeout bounds the wait for it too
            async with asyncio.timeout(self._timeout * 2), self._publish_lock:
                envelope = Envelope(Kind(kind), self.origin, self._seq + 1, data)
                raw = envelope.to_json().encode()
                if len(raw) > MAX_MESSAGE_BYTES:
                    raise BusMessageError("too-large")
                self._seq = envelope.seq  # spent even if the publish fails: receivers resync
                await self._redis.publish(channel(self.network, envelope.type), raw)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning(
                "bus publish failed host=%s kind=%s seq=%d error=%s",
                self.host, kind, self._seq, _describe(exc),
            )  # fmt: skip
            return None
        self.published += 1
        return envelope

    def subscribe(self, *kinds: Kind | str) -> Subscription:
        """Receive other origins' envelopes of these kinds (all kinds if none are given).

        Use as `async with bus.subscribe(Kind.TX) as sub: async for envelope in sub: ...`.
        Registration is immediate, so nothing published after this call is missed.
        """
        if self._redis is None:
            raise RuntimeError("bus not started")
        sub = Subscription(self, frozenset(Kind(k) for k in kinds or Kind), self._queue_size)
        self._subscribers.add(sub)
        return sub

    # -- the listener -------------------------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                assert self._sub_redis is not None
                async with self._sub_redis.pubsub() as pubsub:
                    await pubsub.subscribe(*self._channels)
                    await self._read(pubsub)
            except Exception as exc:  # supervised: a Redis error (or a bug) never ends it
                self._connected = False
                self._attempt += 1
                delay = self._reconnect_min * 2 ** min(self._attempt - 1, 30)
                delay = min(self._reconnect_max, delay)
                log = logger.warning if isinstance(exc, RedisError | OSError) else logger.exception
                log(
                    "bus disconnected host=%s origin=%s error=%s attempt=%d retry_in=%.2fs",
                    self.host, self.origin, _describe(exc), self._attempt, delay,
                )  # fmt: skip
                self._first_attempt.set()
                await asyncio.sleep(delay)
            finally:
                self._connected = False

    def _subscribed(self) -> None:
        """Every channel is confirmed: from now on nothing published is missed."""
        self._connected = True
        self._first_attempt.set()
        if self._attempt:  # a success after failures (never the first connect): resync
            self.reconnects += 1
            logger.info(
                "bus reconnected host=%s origin=%s attempt=%d",
                self.host, self.origin, self._attempt,
            )  # fmt: skip
            self._request_resync("reconnect")
        self._attempt = 0

    async def _read(self, pubsub: PubSub) -> None:
        """Dispatch messages; PING when idle so a silently dead connection is noticed."""
        loop = asyncio.get_running_loop()
        last_heard, pinged, unconfirmed = loop.time(), False, len(self._channels)
        while True:
            message = await pubsub.get_message(timeout=min(1.0, PING_IDLE))
            now = loop.time()
            if message is not None:
                last_heard, pinged = now, False
                if message["type"] == "message":
                    self._dispatch(message["channel"], message["data"])
                elif message["type"] == "subscribe":
                    unconfirmed -= 1
                    if not unconfirmed:
                        self._subscribed()
            elif pinged and now - last_heard > PING_IDLE + self._timeout:
                raise TimeoutError("no reply to PING")
            elif not pinged and now - last_heard > PING_IDLE:
                await pubsub.ping()
                pinged = True

    def _dispatch(self, raw_channel: bytes, raw: bytes) -> None:
        try:
            envelope = Envelope.from_json(raw)
            if envelope.type != self._channels.get(raw_channel):
                raise BusMessageError("type-mismatch")
        except BusMessageError as exc:
            self.invalid += 1
            logger.warning(
                "bus invalid message channel=%s reason=%s bytes=%d",
                raw_channel.decode(errors="replace"), exc.reason, len(raw),
            )  # fmt: skip
            return
        if envelope.origin == self.origin:
            return
        self.received += 1
        self._track_seq(envelope)
        for sub in list(self._subscribers):
            if envelope.type not in sub.kinds:
                continue
            try:
                sub.queue.put_nowait(envelope)
            except asyncio.QueueFull:
                self.dropped += 1
                logger.warning(
                    "bus subscriber full, message dropped kind=%s origin=%s seq=%d dropped=%d",
                    envelope.type, envelope.origin, envelope.seq, self.dropped,
                )  # fmt: skip

    def _track_seq(self, envelope: Envelope) -> None:
        origin, seq = envelope.origin, envelope.seq
        last = self._last_seq.pop(origin, None)  # re-inserted last: the dict stays LRU-ordered
        self._last_seq[origin] = seq
        if len(self._last_seq) > MAX_TRACKED_ORIGINS:
            del self._last_seq[next(iter(self._last_seq))]
        if last is None or seq == last + 1:
            return
        if seq == 1:
            logger.info("bus origin restarted origin=%s last_seq=%d", origin, last)
            return
        self.gaps += 1
        logger.warning("bus sequence gap origin=%s last_seq=%d seq=%d", origin, last, seq)
        self._request_resync("gap")

    def _request_resync(self, reason: str) -> None:
        """Run `resync` in its own task; requests made while it runs coalesce into one rerun."""
        if self._resync is None:
            return
        if self._resync_task is not None and not self._resync_task.done():
            self._resync_again = True
            return
        self._resync_task = asyncio.create_task(self._run_resync(self._resync, reason))

    async def _run_resync(self, resync: Resync, reason: str) -> None:
        while True:
            self._resync_again = False
            self.resyncs += 1
            logger.info("bus resync reason=%s", reason)
            try:
                await resync()
            except Exception:
                logger.exception("bus resync failed reason=%s", reason)
            if not self._resync_again:
                return
            reason = "coalesced"


def bus_ctx(
    key: Hashable, redis_url: str, network: str, origin: str, **options: Any
) -> Callable[[MutableMapping[Any, Any]], AsyncIterator[None]]:
    """A cleanup context (e.g. aiohttp `app.cleanup_ctx`) that keeps a started Bus at app[key]."""

    async def ctx(app: MutableMapping[Any, Any]) -> AsyncIterator[None]:
        async with Bus(redis_url, network, origin, **options) as bus:
            app[key] = bus
            yield

    return ctx
