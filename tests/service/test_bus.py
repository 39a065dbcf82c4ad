"""The Redis bus against a real redis-server: envelopes, fan-out, gaps, outages and restarts.

Every test talks to the session's embedded Redis (or one of its own, to stop and restart it);
bad messages are published with a plain redis-py client, the way anyone on the Redis could.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.common import bus as bus_module
from services.common.bus import (
    MAX_MESSAGE_BYTES,
    Bus,
    BusMessageError,
    Envelope,
    Kind,
    Subscription,
    bus_ctx,
    channel,
)
from services.common.embedded_redis import EmbeddedRedis

NET = "testnet"
TX = channel(NET, Kind.TX)


def good(origin: str = "peer", seq: int = 1, kind: str = "tx", **data: Any) -> str:
    return json.dumps({"v": 1, "type": kind, "origin": origin, "seq": seq, "data": data})


class Resyncs:
    """A resync callback that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


async def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def receive(sub: Subscription, within: float = 3.0) -> Envelope:
    return await asyncio.wait_for(anext(sub), within)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client: publishes whatever bytes a test wants on a bus channel."""
    async with Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def buses(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """Start buses on the session Redis; every one is closed at the end of the test."""
    started: list[Bus] = []

    async def make(origin: str, **options: Any) -> Bus:
        bus = Bus(redis_url, NET, origin, **options)
        await bus.start()
        started.append(bus)
        return bus

    yield make
    for bus in started:
        await bus.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- channels and envelopes (no Redis) ---------------------------------------------------------


def test_channel_names() -> None:
    assert channel("devnet", Kind.TX) == "pybtc:devnet:tx"
    assert channel("my-net-2", "reorg") == "pybtc:my-net-2:reorg"
    assert [channel("n", k) for k in Kind] == [
        f"pybtc:n:{k}" for k in ("tx", "block", "tip", "reorg", "mining")
    ]
    for bad in ("", "Devnet", "a" * 33, "a:b", "a b", "net*", "dev\n"):
        with pytest.raises(ValueError, match="network"):
            channel(bad, Kind.TX)
    with pytest.raises(ValueError, match="blocks"):
        channel("devnet", "blocks")


def test_envelope_round_trip() -> None:
    envelope = Envelope(type=Kind.BLOCK, origin="node-1:5000/ledger", seq=7, data={"h": 1})
    text = envelope.to_json()
    assert json.loads(text) == {
        "v": 1, "type": "block", "origin": "node-1:5000/ledger", "seq": 7, "data": {"h": 1},
    }  # fmt: skip
    assert Envelope.from_json(text) == envelope
    assert Envelope.from_json(text.encode()) == envelope


BAD_MESSAGES: list[tuple[str, bytes | str, str]] = [
    ("not json", b"hello", "not-json"),
    ("not utf-8", b'{"v":1,"type":"\xff"}', "not-json"),
    ("empty", b"", "not-json"),
    ("array", b"[1, 2]", "not-object"),
    ("string", b'"tx"', "not-object"),
    ("missing key", json.dumps({"v": 1, "type": "tx", "origin": "p", "seq": 1}), "bad-keys"),
    ("extra key", good()[:-1] + ', "x": 1}', "bad-keys"),
    ("duplicate key", good()[:-1] + ', "seq": 2}', "duplicate-key"),
    ("v=2", good().replace('"v": 1', '"v": 2'), "bad-version"),
    ("v=true", good().replace('"v": 1', '"v": true'), "bad-version"),
    ("v=1.0", good().replace('"v": 1', '"v": 1.0'), "bad-version"),
    ("unknown type", good(kind="blocks"), "bad-type"),
    ("type not a string", good().replace('"type": "tx"', '"type": 3'), "bad-type"),
    ("origin empty", good(origin=""), "bad-origin"),
    ("origin too long", good(origin="o" * 129), "bad-origin"),
    ("origin with space", good(origin="a b"), "bad-origin"),
    ("origin not a string", good().replace('"origin": "peer"', '"origin": 5'), "bad-origin"),
    ("bool seq", good().replace('"seq": 1', '"seq": true'), "bad-seq"),
    ("float seq", good().replace('"seq": 1', '"seq": 1.5'), "bad-seq"),
    ("negative seq", good(seq=-1), "bad-seq"),
    ("huge seq", good(seq=2**64), "bad-seq"),
    ("data a list", good().replace('"data": {}', '"data": []'), "bad-data"),
    ("NaN", good().replace('"data": {}', '"data": {"x": NaN}'), "non-finite-number"),
    ("deep nesting", good().replace('"data": {}', '"data": ' + "[" * 100_000), "not-json"),
    ("huge", good(pad="x" * MAX_MESSAGE_BYTES), "too-large"),
]


@pytest.mark.parametrize(("raw_message", "reason"), [m[1:] for m in BAD_MESSAGES],
                         ids=[m[0] for m in BAD_MESSAGES])  # fmt: skip
def test_envelope_rejects(raw_message: bytes | str, reason: str) -> None:
    with pytest.raises(BusMessageError) as caught:
        Envelope.from_json(raw_message)
    assert caught.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
).map(lambda value: json.dumps(value))))  # fmt: skip
def test_envelope_parser_only_raises_bus_message_error(raw_message: bytes | str) -> None:
    try:
        envelope = Envelope.from_json(raw_message)
    except BusMessageError:
        return
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_bus_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="network"):
        Bus("redis://127.0.0.1:1/0", "Bad", "me")
    with pytest.raises(ValueError, match="origin"):
        Bus("redis://127.0.0.1:1/0", NET, "has space")
    with pytest.raises(ValueError, match="reconnect"):
        Bus("redis://127.0.0.1:1/0", NET, "me", reconnect_min=2.0, reconnect_max=1.0)


# -- publish and subscribe ---------------------------------------------------------------------


async def test_round_trip_between_two_origins(buses: Callable[..., Awaitable[Bus]]) -> None:
    ledger, explorer = await buses("ledger-a"), await buses("explorer-a")
    assert ledger.connected
    assert explorer.connected
    async with explorer.subscribe(Kind.TX) as sub:
        sent = await ledger.publish(Kind.TX, {"txid": "ab" * 32})
        got = await receive(sub)
    assert got == sent
    assert (got.type, got.origin, got.seq, got.data) == ("tx", "ledger-a", 1, {"txid": "ab" * 32})
    second = await ledger.publish("block", {"height": 2})
    assert second == Envelope(type=Kind.BLOCK, origin="ledger-a", seq=2, data={"height": 2})
    await wait_for(lambda: explorer.received == 2)
    assert (ledger.published, explorer.invalid) == (2, 0)


async def test_concurrent_publishes_arrive_in_sequence(
    buses: Callable[..., Awaitable[Bus]],
) -> None:
    publisher, subscriber = await buses("busy"), await buses("sub")
    async with subscriber.subscribe() as sub:
        sent = await asyncio.gather(*(publisher.publish(Kind.TX, {"n": n}) for n in range(50)))
        assert [e.seq for e in sent if e is not None] == list(range(1, 51))
        assert [(await receive(sub)).seq for _ in range(50)] == list(range(1, 51))
    assert subscriber.gaps == 0


async def test_publish_rejects_bad_data_without_spending_a_seq(
    buses: Callable[..., Awaitable[Bus]],
) -> None:
    bus = await buses("careless")
    with pytest.raises(BusMessageError, match="too-large"):
        await bus.publish(Kind.TX, {"pad": "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(TypeError):
        await bus.publish(Kind.TX, {"not json": object()})
    with pytest.raises(ValueError, match="nope"):
        await bus.publish("nope", {})
    sent = await bus.publish(Kind.TX, {})
    assert sent is not None
    assert sent.seq == 1


async def test_own_messages_are_ignored(buses: Callable[..., Awaitable[Bus]]) -> None:
    me, other = await buses("node-a"), await buses("node-b")
    async with me.subscribe() as sub:
        assert await me.publish(Kind.TX, {"n": "mine"}) is not None
        await other.publish(Kind.TX, {"n": "theirs"})  # arrives after mine: a barrier
        assert (await receive(sub)).data == {"n": "theirs"}
        assert sub.queue.empty()
    assert me.received == 1


async def test_kinds_filter(buses: Callable[..., Awaitable[Bus]]) -> None:
    publisher, subscriber = await buses("pub"), await buses("sub")
    async with subscriber.subscribe(Kind.BLOCK, "tip") as blocks, subscriber.subscribe() as every:
        for kind in (Kind.TX, Kind.BLOCK, Kind.MINING, Kind.TIP):
            await publisher.publish(kind, {})
        assert [(await receive(blocks)).type for _ in range(2)] == [Kind.BLOCK, Kind.TIP]
        assert [(await receive(every)).type for _ in range(4)] == ["tx", "block", "mining", "tip"]
        assert blocks.queue.empty()


async def test_invalid_messages_are_counted_and_skipped(
    buses: Callable[..., Awaitable[Bus]], raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await buses("victim")
    bad = [m[1] for m in BAD_MESSAGES] + [good(kind="block")]  # a block envelope on tx: mismatch
    async with bus.subscribe() as sub:
        with caplog.at_level(logging.WARNING, logger="services.common.bus"):
            for message in bad:
                assert await raw.publish(TX, message) == 1
            await raw.publish(TX, good(origin="honest", n=1))
            got = await receive(sub)
    assert (got.origin, got.data) == ("honest", {"n": 1})
    assert (bus.invalid, bus.received) == (len(bad), 1)
    lines = [r.getMessage() for r in caplog.records if "invalid message" in r.getMessage()]
    assert len(lines) == len(bad)
    assert all("\n" not in line and f"channel={TX} reason=" in line for line in lines)
    assert "reason=type-mismatch" in lines[-1]


async def test_slow_subscriber_loses_messages_without_blocking_others(
    buses: Callable[..., Awaitable[Bus]],
) -> None:
    publisher, bus = await buses("pub"), await buses("sub", queue_size=2)
    async with bus.subscribe(Kind.TX) as slow, bus.subscribe(Kind.TX) as fast:
        got = []
        for n in range(5):
            await publisher.publish(Kind.TX, {"n": n})
            got.append((await receive(fast)).data["n"])
        assert got == [0, 1, 2, 3, 4]
        assert [(await receive(slow)).data["n"] for _ in range(2)] == [0, 1]
    assert (bus.dropped, bus.received) == (3, 5)


# -- sequence numbers --------------------------------------------------------------------------


async def test_sequence_gap_calls_resync(
    buses: Callable[..., Awaitable[Bus]], raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    resync = Resyncs()
    bus = await buses("watcher", resync=resync)
    async with bus.subscribe() as sub:
        for seq in (1, 2, 4):
            await raw.publish(TX, good(origin="x", seq=seq))
        assert [(await receive(sub)).seq for _ in range(3)] == [1, 2, 4]
    await wait_for(lambda: resync.calls == 1)
    assert bus.gaps == 1
    assert "bus sequence gap origin=x last_seq=2 seq=4" in caplog.text


async def test_origin_restart_is_not_a_gap(
    buses: Callable[..., Awaitable[Bus]], raw: Redis
) -> None:
    resync = Resyncs()
    bus = await buses("watcher", resync=resync)
    async with bus.subscribe() as sub:
        for origin, seq in [("x", 1), ("x", 2), ("y", 5), ("x", 3), ("x", 1), ("x", 2), ("y", 6)]:
            await raw.publish(TX, good(origin=origin, seq=seq))
        for _ in range(7):
            await receive(sub)
    await asyncio.sleep(0.05)
    assert (bus.gaps, resync.calls) == (0, 0)  # y's first seq of 5 is not a gap either


async def test_resync_failure_is_logged_and_the_bus_goes_on(
    buses: Callable[..., Awaitable[Bus]], raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("ledger unreachable")

    bus = await buses("watcher", resync=broken)
    async with bus.subscribe() as sub:
        for seq in (1, 3, 5):
            await raw.publish(TX, good(origin="x", seq=seq))
            await receive(sub)
    await wait_for(lambda: "bus resync failed" in caplog.text)
    assert bus.gaps == 2
    assert bus.connected


# -- outages -----------------------------------------------------------------------------------


async def test_publish_with_redis_down_returns_none_quickly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    began = time.monotonic()
    async with Bus(url, NET, "lonely", reconnect_min=0.05, reconnect_max=0.1) as bus:
        assert not bus.connected
        assert await bus.publish(Kind.TX, {"n": 1}) is None
        assert await bus.publish(Kind.TX, {"n": 2}) is None
        assert bus.published == 0
    assert time.monotonic() - began < 3.0
    assert "bus publish failed host=127.0.0.1:" in caplog.text
    assert "seq=2 error=ConnectionError(" in caplog.text
    assert "bus disconnected host=127.0.0.1:" in caplog.text


async def test_listener_survives_redis_restart(caplog: pytest.LogCaptureFixture) -> None:
    """Stop the server under a subscribed bus, start a new one on the same port: it comes back."""
    caplog.set_level(logging.INFO, logger="services.common.bus")
    port = free_port()
    server = EmbeddedRedis(port=port).start()
    resync = Resyncs()
    options: dict[str, Any] = {"reconnect_min": 0.05, "reconnect_max": 0.2}
    try:
        async with (
            Bus(server.url, NET, "listener", resync=resync, **options) as bus,
            Bus(server.url, NET, "talker", **options) as talker,
            bus.subscribe(Kind.BLOCK) as sub,
        ):
            await talker.publish(Kind.BLOCK, {"height": 1})
            assert (await receive(sub)).seq == 1

            server.stop()
            await wait_for(lambda: not bus.connected)
            assert await talker.publish(Kind.BLOCK, {"height": 2}) is None  # seq 2 is lost
            await asyncio.sleep(0.3)  # a few failed attempts, with backoff
            server = EmbeddedRedis(port=port).start()

            await wait_for(lambda: bus.connected and resync.calls >= 1)
            assert bus.reconnects == 1
            sent = await talker.publish(Kind.BLOCK, {"height": 3})
            assert sent is not None
            assert await receive(sub) == sent
            assert sent.seq == 3
            assert bus.gaps == 1  # seq 2 never arrived: a second reason to resync
            await wait_for(lambda: resync.calls >= 2 or bus.resyncs >= 2)
    finally:
        server.stop()
    assert f"bus disconnected host=127.0.0.1:{port} origin=listener error=" in caplog.text
    assert f"bus reconnected host=127.0.0.1:{port} origin=listener attempt=" in caplog.text


async def test_idle_ping_keeps_a_live_connection_and_detects_a_dead_one(
    buses: Callable[..., Awaitable[Bus]], raw: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that stops answering (CLIENT PAUSE) is treated as a lost connection."""
    monkeypatch.setattr(bus_module, "PING_IDLE", 0.1)
    resync = Resyncs()
    bus = await buses("idler", timeout=0.3, reconnect_min=0.05, reconnect_max=0.1, resync=resync)
    await asyncio.sleep(0.6)  # idle: PINGs go out, PONGs come back
    assert bus.connected
    assert bus.reconnects == 0
    await raw.client_pause(1200)
    await wait_for(lambda: not bus.connected)
    await wait_for(lambda: bus.connected and resync.calls == 1)
    assert bus.reconnects == 1


async def test_close_leaves_no_tasks_or_connections(redis_url: str, raw: Redis) -> None:
    async def bus_clients() -> list[str]:
        clients = await raw.client_list()
        return [c["name"] for c in clients if c["name"].startswith("pybtc-bus:closer")]

    bus = Bus(redis_url, NET, "closer", resync=Resyncs())
    await bus.start()
    sub = bus.subscribe()
    await raw.publish(TX, good(origin="x", seq=1))
    await raw.publish(TX, good(origin="x", seq=9))  # a gap: a resync task runs
    await bus.publish(Kind.TX, {})
    await wait_for(lambda: bus.received == 2)
    assert len(await bus_clients()) == 2  # the listener's and the publisher's connection
    await bus.close()
    await bus.close()  # twice is fine
    assert [e.seq async for e in sub] == [1, 9]  # the subscription ends after its last message
    assert asyncio.all_tasks() == {asyncio.current_task()}
    gc.collect()  # an unclosed socket would raise ResourceWarning here (warnings are errors)
    for _ in range(100):  # the server notices closed connections asynchronously
        if not await bus_clients():
            break
        await asyncio.sleep(0.01)
    assert await bus_clients() == []
    with pytest.raises(RuntimeError):
        bus.subscribe()


async def test_bus_ctx_for_cleanup_ctx(redis_url: str) -> None:
    app: dict[Any, Any] = {}
    ctx = bus_ctx("bus", redis_url, NET, "ctx-origin", reconnect_max=1.0)(app)  # as aiohttp does
    await anext(ctx)
    bus = app["bus"]
    assert isinstance(bus, Bus)
    assert bus.connected
    with pytest.raises(StopAsyncIteration):
        await anext(ctx)
    assert not bus.connected
