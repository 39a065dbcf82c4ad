"""Background jobs by key: one at a time per key, joined by whoever asks again, and bounded.

A slow peer must never hold anything but its own work. Each sync with a peer, and each block a
bus announcement asks us to fetch, is a background job of its own (run by the `spawn` of
`services.node.network.Network`), keyed by what it is about:

- `Coalesced`: one job per key at a time; asking for a key whose job is running joins that job
  (its result, or its exception) instead of starting another. A caller that stops waiting (a
  timeout, a cancelled request) leaves the job running. With `again`, a job that was asked for
  while it ran, and succeeded, runs once more before it answers: what the later callers know
  of (a block announced meanwhile) may be newer than what the run saw. A failure answers at
  once: a peer that failed is not asked again for each caller.
- `BoundedQueue`: at most `limit` jobs running and `backlog` waiting; a key already running or
  waiting, or any job past the backlog, is dropped (the caller learns which).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any], str], None]
"""`Network.spawn`: run a coroutine in the background, logging what goes wrong."""
R = TypeVar("R")


def _dropped(spawn: Spawn, coro: Coroutine[Any, Any, Any], what: str) -> bool:
    """Spawn `coro`; True if it was dropped instead (closed unrun: the node is shutting down)."""
    spawn(coro, what)
    return inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def _retrieved(job: asyncio.Future[Any]) -> None:
    """Mark a job's exception as seen: its waiters, if any, get it; nobody else needs to."""
    if not job.cancelled():
        job.exception()


class Coalesced(Generic[R]):
    """One background job per key at a time; a second request for a key joins the first."""

    def __init__(self, spawn: Spawn, what: str, *, again: bool = False) -> None:
        self.spawn = spawn
        self.what = what
        self.again = again
        self.running: dict[str, asyncio.Future[R]] = {}
        self.asked: dict[str, int] = {}
        """Requests for each running job since its current run began."""

    def __contains__(self, key: str) -> bool:
        return key in self.running

    def start(self, key: str, make: Callable[[], Coroutine[Any, Any, R]]) -> asyncio.Future[R]:
        """The running job for `key`, or a new one running `make()`."""
        job = self.running.get(key)
        if job is not None:
            self.asked[key] = self.asked.get(key, 0) + 1
            return job
        job = asyncio.get_running_loop().create_future()
        job.add_done_callback(_retrieved)
        self.running[key] = job
        if _dropped(self.spawn, self._run(key, job, make), self.what) and not job.done():
            del self.running[key]
            job.cancel()  # nobody will run it: its waiters must not wait forever
        return job

    async def join(
        self,
        key: str,
        make: Callable[[], Coroutine[Any, Any, R]],
        wait: float | None = None,
    ) -> R:
        """The result of `key`'s job (started if none runs); TimeoutError after `wait`
        seconds, the job going on."""
        async with asyncio.timeout(wait):
            return await asyncio.shield(self.start(key, make))

    async def _run(
        self, key: str, job: asyncio.Future[R], make: Callable[[], Coroutine[Any, Any, R]]
    ) -> None:
        try:
            while True:
                self.asked[key] = 0
                result = await make()
                if not self.again or not self.asked[key]:
                    break
        except Exception as exc:
            if not job.done():
                job.set_exception(exc)
        else:
            if not job.done():
                job.set_result(result)
        finally:
            if self.running.get(key) is job:
                del self.running[key]
                del self.asked[key]
            if not job.done():  # cancelled (the node is closing): its waiters are too
                job.cancel()


class BoundedQueue:
    """Keyed one-shot jobs: `limit` at a time, `backlog` more waiting, duplicates dropped."""

    def __init__(self, spawn: Spawn, what: str, *, limit: int, backlog: int) -> None:
        self.spawn = spawn
        self.what = what
        self.limit = limit
        self.backlog = backlog
        self.running: set[str] = set()
        self.waiting: OrderedDict[str, Callable[[], Coroutine[Any, Any, Any]]] = OrderedDict()

    def submit(self, key: str, make: Callable[[], Coroutine[Any, Any, Any]]) -> str:
        """Queue `make()` under `key`: "started", "queued", "duplicate" or "full" (dropped)."""
        if key in self.running or key in self.waiting:
            return "duplicate"
        if len(self.running) < self.limit:
            self._start(key, make)
            return "started"
        if len(self.waiting) >= self.backlog:
            return "full"
        self.waiting[key] = make
        return "queued"

    def _start(self, key: str, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.running.add(key)
        if _dropped(self.spawn, self._run(key, make), self.what):
            self.running.discard(key)

    async def _run(self, key: str, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            await make()
        except Exception:  # logged here, so that the jobs waiting still run
            logger.exception("background job failed what=%s key=%s", self.what, key[:64])
        finally:
            self.running.discard(key)
        # Not reached when cancelled (the node is closing): nothing new is started then.
        while self.waiting and len(self.running) < self.limit:
            next_key, next_make = self.waiting.popitem(last=False)
            self._start(next_key, next_make)
