"""A network the test can cut: TCP proxies in front of each ledger, owned by the test process.

How it works: every ledger gets a `Switchboard.front` proxy on its own loopback port, and its
PYBTC_PUBLIC_URL names that proxy, so every other ledger (which learns URLs by registration,
registration spreading and announcements) reaches it through the proxy and nowhere else. The
test tells the switchboard which process is which node (`identify`); on each connection the
proxy finds the process that opened it (the client socket's inode in /proc/net/tcp, then that
inode among the processes' open files: Linux only, and only our own children) and forwards it
only if both ends are on the same side of the current split. `split` also resets every open
connection that crosses the cut (pooled keep-alive connections included); `join` heals it.
Refused connections are reset at once, like a firewall's REJECT, and counted per direction.

The proxies are coroutines on one asyncio loop in a background thread (`LoopThread`), which a
test can also use to run stub servers beside its synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from tests.functional.conftest import free_port

logger = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 65_536
_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


class LoopThread:
    """An asyncio event loop running in a daemon thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test loop")
        self._thread.daemon = True
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the loop and return its result (raising what it raised)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Call `function` on the loop's thread and return its result."""

        async def call() -> T:
            return function()

        return self.run(call())

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join the thread."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# -- who is on the other end of a loopback connection ----------------------------------------


def _address(hex_address: str) -> tuple[str, int]:
    """`0100007F:1F90` (as /proc/net/tcp prints it) -> ("127.0.0.1", 8080); IPv4 only."""
    host, port = hex_address.split(":")
    if len(host) == 8:
        return socket.inet_ntoa(struct.pack("=I", int(host, 16))), int(port, 16)
    words = struct.pack("=4I", *(int(host[i : i + 8], 16) for i in range(0, 32, 8)))
    return socket.inet_ntop(socket.AF_INET6, words).removeprefix("::ffff:"), int(port, 16)


def socket_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The inode of the socket with this local and remote address, if any process has one."""
    for table in _TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if _address(fields[1]) == local and _address(fields[2]) == remote:
                return int(fields[9])
    return None


def owner(inode: int, pids: Iterable[int]) -> int | None:
    """Which of `pids` holds the socket `inode` open."""
    wanted = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
    return None


# -- the switchboard ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Link:
    """One forwarded connection: who opened it, to whom, and its two transports."""

    client: str
    server: str
    downstream: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def reset(self) -> None:
        for writer in (self.downstream, self.upstream):
            writer.transport.abort()


class Front:
    """The proxy in front of one node: `url` is what the node publishes as its own URL."""

    def __init__(self, board: Switchboard, name: str, target_port: int) -> None:
        self.board = board
        self.name = name
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = self.board.client_of(writer)
        if not self.board.may_connect(client, self.name):
            self.board.refused[(client or "?", self.name)] += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)  # the node itself is down: as if nobody listened
            return
        link = _Link(client or "?", self.name, writer, up_writer)
        self.board.links.add(link)
        self.board.forwarded[(link.client, self.name)] += 1
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self.board.links.discard(link)
            for side in (writer, up_writer):
                side.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0): the client sees its connection refused at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until EOF or an error, then close the writing side."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class Switchboard:
    """Proxies in front of named nodes, and the current split of those names into groups."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.fronts: dict[str, Front] = {}
        self.pids: dict[int, str] = {}
        self.groups: dict[str, int] | None = None
        self.links: set[_Link] = set()
        self.refused: Counter[tuple[str, str]] = Counter()
        self.forwarded: Counter[tuple[str, str]] = Counter()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        async def stop_all() -> None:
            for link in list(self.links):
                link.reset()
            for front in self.fronts.values():
                await front.stop()

        with contextlib.suppress(Exception):
            self.loop.run(stop_all(), timeout=10)
        self.loop.close()

    def front(self, name: str, target_port: int) -> Front:
        """Start a proxy for node `name`, which listens on `target_port`."""
        front = Front(self, name, target_port)
        self.loop.run(front.start())
        self.fronts[name] = front
        logger.info("proxy for %s url=%s -> port %d", name, front.url, target_port)
        return front

    def identify(self, name: str, pid: int) -> None:
        """Process `pid` is node `name` (a restarted node is identified again)."""
        self.loop.call(lambda: self.pids.__setitem__(pid, name))

    def split(self, *groups: Iterable[str]) -> None:
        """Cut the network into `groups`; connections across the cut are reset now and refused
        from now on (a process the switchboard cannot identify is refused everywhere)."""
        sides = {name: i for i, group in enumerate(groups) for name in group}

        def cut() -> int:
            self.groups = sides
            crossing = [k for k in self.links if not self.may_connect(k.client, k.server)]
            for link in crossing:
                link.reset()
            return len(crossing)

        reset = self.loop.call(cut)
        logger.info("network split %s; %d open connections reset", list(map(list, groups)), reset)

    def join(self) -> None:
        """Heal every cut."""
        self.loop.call(lambda: setattr(self, "groups", None))
        logger.info("network joined")

    # -- on the loop's thread ---------------------------------------------------------------

    def may_connect(self, client: str | None, server: str) -> bool:
        if self.groups is None:
            return True
        if client is None or client not in self.groups or server not in self.groups:
            return False
        return self.groups[client] == self.groups[server]

    def client_of(self, writer: asyncio.StreamWriter) -> str | None:
        """The node that opened this accepted connection, or None if it is none of ours."""
        sock = writer.get_extra_info("socket")
        if sock is None:
            return None
        try:
            here, there = sock.getsockname()[:2], sock.getpeername()[:2]
        except OSError:
            return None
        inode = socket_inode(local=there, remote=here)
        if inode is None:
            return None
        pid = owner(inode, list(self.pids))
        return self.pids.get(pid) if pid is not None else None
