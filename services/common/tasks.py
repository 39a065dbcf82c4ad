"""Background work every service runs, supervised: nothing in the background dies silently.

- `Supervisor.run(name, factory)`: a task meant to run until the service stops (a bus
  listener, a periodic sync, the mining loop). `factory` makes a fresh coroutine for each
  attempt. If the task raises (anything but its cancellation) or returns, the failure is
  logged with its traceback, the task is marked down with the error, and it is started again
  after an exponential backoff (`RESTART_MIN` doubling to `RESTART_MAX`; back to `RESTART_MIN`
  once an attempt has run `STABLE_AFTER` seconds).
- `Supervisor.spawn(coro, what)`: a one-shot job (a relay, an announcement): a failure is
  logged, nothing restarts it.
- `Supervisor.check()`: the /healthz line `tasks`: ok while every supervised task runs; while
  one is down, not ok (so /healthz says `degraded`) with its name, error and when it restarts.
  Never fatal: a task waiting for its restart must not make a liveness probe kill the service.
- `close()` cancels everything and waits for it; whoever owns what a task uses (a bus, an HTTP
  session) stops the task (`Supervised.stop()` or `close()`) before closing that.

`add_tasks(app, service, metrics)` gives an aiohttp app its supervisor at `app[TASKS]`, closed
with the app, and a `pybtc_task_restarts_total` counter; `tasks_check` is its /healthz line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from services.common.web import Check, Metrics

logger = logging.getLogger(__name__)

RESTART_MIN = 1.0
"""Seconds before the first restart of a failed task."""
RESTART_MAX = 30.0
"""The longest wait between restarts (the wait doubles from RESTART_MIN up to this)."""
STABLE_AFTER = 60.0
"""Seconds an attempt must run for its next failure to wait RESTART_MIN again."""
MAX_ERROR_CHARS = 200
"""An error is shown in /healthz and logs cut to this (an exception may quote a peer's bytes)."""

Factory = Callable[[], Awaitable[object]]


@dataclass
class TaskState:
    """What /healthz says about one supervised task."""

    name: str
    up: bool = True
    error: str = ""
    failures: int = 0
    delay: float = 0.0
    """Seconds waited before the latest restart."""
    restart_at: float = 0.0
    """Wall-clock time of the next attempt while down."""


class Supervised:
    """One supervised task: its state, and `stop()` to end it for good."""

    def __init__(self, supervisor: Supervisor, state: TaskState, task: asyncio.Task[None]) -> None:
        self._supervisor = supervisor
        self.state = state
        self.task = task

    async def stop(self) -> None:
        """Cancel the task (and any restart) and wait for it; it no longer shows in /healthz."""
        self._supervisor._supervised.discard(self)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Supervisor:
    """The background tasks of one service."""

    def __init__(
        self,
        service: str,
        *,
        restart_min: float | None = None,
        restart_max: float | None = None,
        stable_after: float | None = None,
        restarts: Counter | None = None,
    ) -> None:
        self.service = service
        # Read when built (not as default arguments) so that a test can shorten or lengthen them.
        self.restart_min = RESTART_MIN if restart_min is None else restart_min
        self.restart_max = RESTART_MAX if restart_max is None else restart_max
        self.stable_after = STABLE_AFTER if stable_after is None else stable_after
        if not 0 < self.restart_min <= self.restart_max:
            raise ValueError("expected 0 < restart_min <= restart_max")
        self.restarts = restarts
        self.closed = False
        self._supervised: set[Supervised] = set()
        self._jobs: set[asyncio.Task[None]] = set()

    # -- long-running tasks --------------------------------------------------------------------
    def run(self, name: str, factory: Factory) -> Supervised:
        """Run `factory()` until stopped, restarting it (with backoff) whenever it fails."""
        if self.closed:
            raise RuntimeError(f"supervisor of {self.service} is closed; {name} not started")
        state = TaskState(name)
        task = asyncio.get_running_loop().create_task(self._supervise(state, factory), name=name)
        handle = Supervised(self, state, task)
        self._supervised.add(handle)
        return handle

    async def _supervise(self, state: TaskState, factory: Factory) -> None:
        loop = asyncio.get_running_loop()
        delay = self.restart_min
        while True:
            started = loop.time()
            try:
                await factory()
            except asyncio.CancelledError:
                if _cancelled_by_owner():
                    raise
                error = "CancelledError (not by its owner)"
                logger.exception(
                    "background task failed what=%s service=%s", state.name, self.service
                )
            except Exception as exc:
                error = _cut(f"{type(exc).__name__}: {exc}")
                logger.exception(
                    "background task failed what=%s service=%s", state.name, self.service
                )
            else:
                error = "returned, but it should run until the service stops"
                logger.error(
                    "background task failed what=%s service=%s error=returned",
                    state.name, self.service,
                )  # fmt: skip
            if loop.time() - started >= self.stable_after:
                delay = self.restart_min
            state.up, state.error = False, error
            state.failures += 1
            state.delay = delay
            state.restart_at = time.time() + delay
            if self.restarts is not None:
                self.restarts.labels(self.service, state.name).inc()
            logger.warning(
                "background task down what=%s failures=%d restart_in=%.1fs error=%s",
                state.name, state.failures, delay, error,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.restart_max)
            state.up, state.error = True, ""
            logger.info("background task restarted what=%s failures=%d", state.name, state.failures)

    # -- one-shot jobs -------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run `coro` once in the background; log (never raise) what goes wrong. After `close()`
        the job is dropped (a request finishing during shutdown may still ask for one)."""
        if self.closed:
            coro.close()
            logger.debug("background job dropped (shutting down) what=%s", what)
            return

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background task failed what=%s service=%s", what, self.service)

        task = asyncio.get_running_loop().create_task(guarded(), name=what)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        # A job cancelled before its first step (by close) never awaited `coro`: close it, or
        # it is reported as "never awaited" when collected. Closing a finished one does nothing.
        task.add_done_callback(lambda _: coro.close())

    # -- health and shutdown -------------------------------------------------------------------
    @property
    def states(self) -> list[TaskState]:
        return sorted((h.state for h in self._supervised), key=lambda s: s.name)

    def check(self) -> Check:
        """The /healthz line: every supervised task running, or which are down and why."""
        states = self.states
        down = [s for s in states if not s.up]
        if not down:
            names = ", ".join(s.name for s in states)
            return Check("tasks", True, f"{len(states)} running" + (f": {names}" if names else ""))
        now = time.time()
        detail = "; ".join(
            f"{s.name} down ({s.error}), failures {s.failures}, "
            f"restarts in {max(0.0, s.restart_at - now):.1f}s"
            for s in down
        )
        return Check("tasks", False, detail)

    async def close(self) -> None:
        """Cancel every task and job and wait for them; later one-shot jobs are dropped."""
        self.closed = True
        tasks = [h.task for h in self._supervised] + list(self._jobs)
        self._supervised.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _cancelled_by_owner() -> bool:
    """Whether the current task is being cancelled (a stray CancelledError, e.g. one leaking
    out of a library, is a failure like any other)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"


# -- the aiohttp glue ------------------------------------------------------------------------

TASKS = web.AppKey("tasks", Supervisor)


def add_tasks(app: web.Application, service: str, metrics: Metrics | None = None) -> Supervisor:
    """Give `app` its supervisor at app[TASKS] (usable by every cleanup context, whatever its
    order) and close it when the app closes; count restarts in `metrics`."""
    restarts = None
    if metrics is not None:
        restarts = Counter(
            "pybtc_task_restarts",
            "Restarts of failed background tasks",
            ["service", "task"],
            registry=metrics.registry,
        )
    supervisor = Supervisor(service, restarts=restarts)
    app[TASKS] = supervisor

    async def context(app: web.Application) -> AsyncIterator[None]:
        yield
        await supervisor.close()

    app.cleanup_ctx.append(context)
    return supervisor


async def tasks_check(app: web.Application) -> Check:
    """The /healthz line of the app's background tasks."""
    supervisor = app.get(TASKS)
    if supervisor is None:
        return Check("tasks", False, "no supervisor")
    return supervisor.check()
