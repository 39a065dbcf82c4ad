"""Keyed background jobs (`services.node.jobs`): one sync per peer joined by whoever asks again,
and a bounded queue of bus block fetches, run on a real event loop with a plain spawn."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

import pytest

from services.common.tasks import Supervisor
from services.node.jobs import BoundedQueue, Coalesced


class Spawner:
    """`Network.spawn` reduced to what the jobs need: run in the background, keep the task."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def __call__(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_a_second_request_joins_the_running_job() -> None:
    spawn = Spawner()
    jobs: Coalesced[int] = Coalesced(spawn, "sync")
    started = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal started
        started += 1
        await gate.wait()
        return 7

    waiters = [asyncio.create_task(jobs.join("peer", work)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert "peer" in jobs
    gate.set()
    assert await asyncio.gather(*waiters) == [7] * 5
    assert started == 1
    assert "peer" not in jobs
    assert await jobs.join("peer", work) == 7  # a new job once the first has ended
    assert started == 2
    await spawn.close()


async def test_every_joiner_gets_the_jobs_exception() -> None:
    spawn = Spawner()
    jobs: Coalesced[int] = Coalesced(spawn, "sync")

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("peer lied")

    results = await asyncio.gather(
        *(jobs.join("peer", fail) for _ in range(3)), return_exceptions=True
    )
    assert [str(r) for r in results] == ["peer lied"] * 3
    await spawn.close()


async def test_a_waiter_that_stops_waiting_leaves_the_job_running() -> None:
    spawn = Spawner()
    jobs: Coalesced[str] = Coalesced(spawn, "sync")
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    with pytest.raises(TimeoutError):
        await jobs.join("peer", work, wait=0.01)
    assert "peer" in jobs
    job = jobs.start("peer", work)
    gate.set()
    assert await job == "done"
    await spawn.close()


async def test_the_queue_runs_a_few_keeps_a_backlog_and_drops_the_rest() -> None:
    spawn = Spawner()
    queue = BoundedQueue(spawn, "fetch", limit=2, backlog=2)
    gate = asyncio.Event()
    ran: list[str] = []

    def job(key: str) -> Any:
        async def run() -> None:
            await gate.wait()
            ran.append(key)

        return run

    outcomes = [queue.submit(key, job(key)) for key in ("a", "b", "a", "c", "d", "e", "c")]
    assert outcomes == ["started", "started", "duplicate", "queued", "queued", "full", "duplicate"]
    gate.set()
    for _ in range(100):
        if len(ran) == 4:
            break
        await asyncio.sleep(0.01)
    assert sorted(ran) == ["a", "b", "c", "d"]
    assert not queue.running
    assert not queue.waiting
    await spawn.close()


async def test_a_failing_job_does_not_stall_the_queue() -> None:
    spawn = Spawner()
    queue = BoundedQueue(spawn, "fetch", limit=1, backlog=5)
    ran: list[str] = []

    async def fail() -> None:
        raise RuntimeError("bug")

    async def work() -> None:
        ran.append("next")

    queue.submit("bad", fail)
    queue.submit("good", work)
    for _ in range(100):
        if ran:
            break
        await asyncio.sleep(0.01)
    assert ran == ["next"]
    await spawn.close()


async def test_a_job_the_spawner_drops_is_not_waited_for() -> None:
    """A closing node's spawn drops new jobs (closes them unrun): a joiner is not left waiting
    forever, and the key is free again."""

    def dropping(coro: Coroutine[Any, Any, Any], what: str) -> None:
        coro.close()

    async def work() -> int:
        return 1

    jobs: Coalesced[int] = Coalesced(dropping, "sync")
    with pytest.raises(asyncio.CancelledError):
        await jobs.join("peer", work, wait=1.0)
    assert "peer" not in jobs
    queue = BoundedQueue(dropping, "fetch", limit=1, backlog=1)
    assert queue.submit("a", work) == "started"
    assert not queue.running


async def test_a_job_asked_for_while_it_ran_runs_once_more_unless_it_failed() -> None:
    """An announcement that joins a running sync may announce a block that sync never saw: with
    `again`, the job runs once more for all who asked meanwhile; a failure answers at once."""
    spawn = Spawner()
    jobs: Coalesced[int] = Coalesced(spawn, "sync", again=True)
    runs = 0
    fail = False

    async def work() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        if fail:
            raise ValueError("peer lied")
        return runs

    first = asyncio.create_task(jobs.join("peer", work))
    await asyncio.sleep(0.01)
    joiners = [asyncio.create_task(jobs.join("peer", work)) for _ in range(3)]
    assert await asyncio.gather(first, *joiners) == [2, 2, 2, 2]  # one more run, not three
    assert runs == 2
    assert await jobs.join("peer", work) == 3  # nobody asked meanwhile: one run
    fail = True
    first = asyncio.create_task(jobs.join("peer", work))
    await asyncio.sleep(0.01)
    joiner = asyncio.create_task(jobs.join("peer", work))
    results = await asyncio.gather(first, joiner, return_exceptions=True)
    assert [str(r) for r in results] == ["peer lied"] * 2
    assert runs == 4
    await spawn.close()


async def test_a_job_cancelled_before_it_starts_leaves_no_unawaited_coroutine() -> None:
    """Supervisor.close cancels a job spawned a moment before, before its first step: the job's
    coroutine is closed, not left to be reported "never awaited" (an error under pytest)."""
    tasks = Supervisor("test")

    async def work() -> None:
        await asyncio.sleep(0)

    coro = work()
    tasks.spawn(coro, "job")
    await tasks.close()
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
