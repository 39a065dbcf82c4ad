"""The embedded redis-server: a real process, reached with redis-py's asyncio client.

Covers what `pybtc up` and every service test rely on: it starts and answers commands, pub/sub
works end to end over TCP and a unix socket, it stops for real (and twice), ports do not clash,
a server that dies at start-up explains itself, and persistence survives a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import redis.exceptions
from redis.asyncio import Redis

from services.common import embedded_redis
from services.common.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server
from services.common.redis_auth import (
    DISABLED_COMMANDS,
    PASSWORD_FILENAME,
    load_or_create_password,
    redacted_url,
)


async def _pubsub_round_trip(url: str) -> None:
    """Subscribe on one client, publish from another, and receive the message."""
    async with (
        Redis.from_url(url) as subscriber,
        Redis.from_url(url) as publisher,
        subscriber.pubsub() as pubsub,
    ):
        await pubsub.subscribe("pybtc:test:blocks")
        confirmation = await pubsub.get_message(timeout=2.0)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"

        receivers = await publisher.publish("pybtc:test:blocks", b'{"v":1}')
        assert receivers == 1

        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
        assert message is not None
        assert message["channel"] == b"pybtc:test:blocks"
        assert message["data"] == b'{"v":1}'


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert os.path.isfile(path)
    assert os.access(path, os.X_OK)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Redis server v=")


async def test_ping_set_get(redis_url: str) -> None:
    assert redis_url.startswith("redis://:")  # the fixture's Redis has a password
    assert "@127.0.0.1:" in redis_url
    async with Redis.from_url(redis_url) as client:
        assert await client.ping() is True
        assert await client.set("tip", "00ab") is True
        assert await client.get("tip") == b"00ab"


@pytest.mark.parametrize("run", [1, 2])
async def test_redis_url_starts_empty(redis_url: str, run: int) -> None:
    """Whichever run comes second sees an empty database: the fixture flushed the first's key."""
    async with Redis.from_url(redis_url) as client:
        assert await client.dbsize() == 0
        await client.set(f"left-by-run-{run}", "1")


async def test_pubsub_over_tcp(redis_url: str) -> None:
    await _pubsub_round_trip(redis_url)


async def test_pubsub_over_unix_socket(redis_unix_url: str) -> None:
    assert redis_unix_url.startswith("unix://:")
    assert "@/" in redis_unix_url
    assert redis_unix_url.endswith("?db=0")
    await _pubsub_round_trip(redis_unix_url)


async def test_unix_socket_server_has_no_tcp_port(redis_unix_server: EmbeddedRedis) -> None:
    assert redis_unix_server.port is None
    assert redis_unix_server.unix_socket is not None
    assert redis_unix_server.unix_socket.is_socket()
    assert redis_unix_server.unix_socket.stat().st_mode & 0o077 == 0


async def test_stop_ends_the_process_and_is_idempotent() -> None:
    server = EmbeddedRedis().start()
    try:
        pid, port, data_dir = server.pid, server.port, server.data_dir
        assert pid is not None
        assert port is not None
        assert _pid_alive(pid)
        async with Redis.from_url(server.url) as client:
            assert await client.ping() is True
    finally:
        server.stop()

    assert not server.running
    assert server.pid is None
    assert not _pid_alive(pid)
    assert not data_dir.exists(), "a temporary data dir is removed on stop"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    server.stop()  # a second stop is a no-op
    assert not server.running
    assert not server.ping()
    with pytest.raises(EmbeddedRedisError, match="not started"):
        _ = server.url


async def test_context_manager_stops_on_exit(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path / "redis") as server:
        pid = server.pid
        assert pid is not None
        assert server.ping()
    assert not _pid_alive(pid)
    assert (tmp_path / "redis" / "redis.log").is_file(), "a given data dir is kept"


async def test_two_servers_get_different_ports() -> None:
    with EmbeddedRedis() as first, EmbeddedRedis() as second:
        assert first.port != second.port
        async with Redis.from_url(first.url) as a, Redis.from_url(second.url) as b:
            await a.set("which", "first")
            assert await b.get("which") is None


async def test_port_taken_between_choice_and_bind_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The free-port race: the first port is grabbed by someone else; start() picks another."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = embedded_redis._free_port
        ports = iter([taken])
        monkeypatch.setattr(
            embedded_redis, "_free_port", lambda: next(ports, None) or real_free_port()
        )

        with EmbeddedRedis() as server:
            assert server.port not in (None, taken)
            assert server.ping()
            assert "Address already in use" in server.log_path.read_text()


async def test_port_won_by_another_redis_is_not_mistaken_for_ours(
    redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another Redis wins the race for the port, its PONG must not count as our start."""
    ports = iter([redis_server.port])
    real_free_port = embedded_redis._free_port
    monkeypatch.setattr(embedded_redis, "_free_port", lambda: next(ports, 0) or real_free_port())

    with EmbeddedRedis() as server:
        assert server.port != redis_server.port
        async with Redis.from_url(server.url) as client:
            info = await client.info("server")
            assert info["process_id"] == server.pid


async def test_fixed_port_in_use_fails_with_log_tail() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedRedis(port=squatter.getsockname()[1])
        with pytest.raises(EmbeddedRedisError, match="Address already in use"):
            server.start()
        assert not server.running


async def test_early_exit_raises_with_log_tail() -> None:
    server = EmbeddedRedis(extra_args=["--no-such-option", "x"])
    with pytest.raises(EmbeddedRedisError) as excinfo:
        server.start()
    message = str(excinfo.value)
    assert "exited early" in message
    assert "log tail" in message
    assert "Bad directive" in message
    assert "no-such-option" in message
    assert not server.running
    server.stop()


async def test_persistence_survives_a_restart(tmp_path: Path) -> None:
    """A node's Redis (persist=True) writes dump.rdb on SIGTERM and loads it on the next start."""
    with EmbeddedRedis(data_dir=tmp_path, persist=True) as server:
        async with Redis.from_url(server.url) as client:
            await client.set("height", "42")
    assert (tmp_path / "dump.rdb").is_file()

    with EmbeddedRedis(data_dir=tmp_path, persist=True) as server:
        async with Redis.from_url(server.url) as client:
            assert await client.get("height") == b"42"


async def test_without_persistence_nothing_is_written(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path) as server:
        async with Redis.from_url(server.url) as client:
            await client.set("height", "42")
    assert not (tmp_path / "dump.rdb").exists()
    assert not (tmp_path / "appendonly.aof").exists()


async def test_stop_kills_a_server_that_ignores_sigterm() -> None:
    """SIGSTOP the server so SIGTERM stays pending; stop() must fall back to SIGKILL."""
    server = EmbeddedRedis(stop_timeout=0.3).start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    server.stop()
    assert not _pid_alive(pid)


async def test_unix_socket_and_port_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        EmbeddedRedis(unix_socket=True, port=6379)


# -- the password ---------------------------------------------------------------------------------


async def test_a_client_without_the_password_is_refused(redis_server: EmbeddedRedis) -> None:
    """The session's Redis, like `pybtc up`'s, requires its password: the same address without
    it can neither read nor publish; with it, it can."""
    assert redis_server.password
    bare = f"redis://127.0.0.1:{redis_server.port}/0"
    async with Redis.from_url(bare) as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.publish("pybtc:regtest:mining", "{}")
    wrong = f"redis://:not-{redis_server.password}@127.0.0.1:{redis_server.port}/0"
    async with Redis.from_url(wrong) as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.ping()
    async with Redis.from_url(redis_server.url) as client:
        assert await client.ping() is True


@pytest.mark.parametrize(
    "command",
    [
        ("CONFIG", "SET", "dir", "/tmp"),  # then SAVE: a file written where the caller says
        ("CONFIG", "GET", "dir"),
        ("SAVE",),
        ("BGSAVE",),
        ("BGREWRITEAOF",),
        ("REPLICAOF", "127.0.0.1", "9"),  # a rogue primary's "dump" then loaded as a module
        ("SLAVEOF", "127.0.0.1", "9"),
        ("MODULE", "LOAD", "/tmp/x.so"),
        ("DEBUG", "SLEEP", "0"),
        ("MIGRATE", "127.0.0.1", "9", "k", "0", "1"),
        ("ACL", "SETUSER", "other", "on", ">x", "+@all"),
    ],
    ids=lambda command: " ".join(command[:2]),
)
async def test_even_the_password_gets_no_command_that_writes_files_or_loads_code(
    redis_server: EmbeddedRedis, command: tuple[str, ...]
) -> None:
    """The commands of `DISABLED_COMMANDS` do not exist in a bus Redis: whoever holds the
    password can publish and subscribe, not reconfigure the server or make it write files."""
    assert command[0] in DISABLED_COMMANDS
    async with Redis.from_url(redis_server.url) as client:
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            await client.execute_command(*command)
        await client.publish("pybtc:regtest:tx", "{}")  # the bus still works (no error)


async def test_a_redis_without_a_password_lacks_those_commands_too(tmp_path: Path) -> None:
    """The hardening does not depend on the password: an EmbeddedRedis started without one
    (a test's, or a caller's) has no CONFIG either."""
    with EmbeddedRedis(data_dir=tmp_path / "redis") as server:
        assert not server.password
        async with Redis.from_url(server.url) as client:
            with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
                await client.execute_command("CONFIG", "SET", "dir", str(tmp_path))
            assert await client.ping() is True


def test_the_password_is_not_on_the_command_line(redis_server: EmbeddedRedis) -> None:
    cmdline = Path(f"/proc/{redis_server.pid}/cmdline").read_bytes()
    assert redis_server.password.encode() not in cmdline


def test_the_password_file_is_made_once_with_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "redis" / PASSWORD_FILENAME
    first = load_or_create_password(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_password(path) == first  # a restart finds the same one
    path.chmod(0o644)
    assert load_or_create_password(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with EmbeddedRedis(data_dir=path.parent, password=first) as server:
        assert server.ping()
        assert redacted_url(server.url) == f"redis://:***@127.0.0.1:{server.port}/0"
        assert first not in server.log_path.read_text()
