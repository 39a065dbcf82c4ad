"""The supervisor of background tasks (`services.common.tasks`), with real coroutines.

A supervised task that raises, returns or is cancelled by someone else is logged, reported down
(with its name and error) while it waits, and started again; the wait doubles up to a ceiling
and starts over after an attempt ran fine for a while; `close()` cancels tasks and one-shot jobs
and waits for them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable

import pytest

from services.common.tasks import Supervisor


async def _until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_a_task_that_raises_is_reported_down_then_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = Supervisor("test", restart_min=0.5, restart_max=1.0)
    starts = 0
    forever = asyncio.Event()

    async def work() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise RuntimeError("boom")
        await forever.wait()

    with caplog.at_level(logging.INFO, "services.common.tasks"):
        tasks.run("worker", work)
        await _until(lambda: starts == 1 and not tasks.check().ok)
        check = tasks.check()
        assert not check.fatal
        assert "worker" in check.detail
        assert "RuntimeError: boom" in check.detail
        assert "restarts in" in check.detail
        await _until(lambda: starts == 2)
        assert tasks.check().ok, tasks.check()
        assert "worker" in tasks.check().detail
    failed = [r for r in caplog.records if "background task failed what=worker" in r.getMessage()]
    assert failed
    assert failed[0].exc_info is not None
    await tasks.close()


async def test_a_task_that_returns_is_a_failure_and_restarted() -> None:
    tasks = Supervisor("test", restart_min=0.05, restart_max=0.05)
    starts = 0

    async def work() -> None:
        nonlocal starts
        starts += 1

    handle = tasks.run("quitter", work)
    await _until(lambda: starts >= 3)
    assert handle.state.failures >= 2
    await _until(lambda: not tasks.check().ok)
    assert "returned" in tasks.check().detail
    await tasks.close()


async def test_a_stray_cancellation_is_a_failure() -> None:
    tasks = Supervisor("test", restart_min=0.05, restart_max=0.05)
    starts = 0

    async def work() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise asyncio.CancelledError  # e.g. leaked by a library; nobody cancelled the task
        await asyncio.Event().wait()

    tasks.run("leaky", work)
    await _until(lambda: starts == 2)
    await tasks.close()


async def test_backoff_doubles_to_its_ceiling_and_resets_after_a_good_run() -> None:
    tasks = Supervisor("test", restart_min=0.01, restart_max=0.08, stable_after=0.3)
    delays: list[float] = []
    starts = 0

    async def work() -> None:
        nonlocal starts
        starts += 1
        delays.append(handle.state.delay)
        if starts == 6:
            await asyncio.sleep(0.4)  # runs longer than stable_after before it fails
        if starts == 8:
            await asyncio.Event().wait()
        raise RuntimeError(f"failure {starts}")

    handle = tasks.run("flaky", work)
    await _until(lambda: starts == 8)
    # delays[i] is the wait before attempt i+1 (0.0: the first attempt waited for nothing).
    assert delays == [0.0, 0.01, 0.02, 0.04, 0.08, 0.08, 0.01, 0.02]
    await tasks.close()


async def test_close_cancels_tasks_and_jobs_and_waits_for_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = Supervisor("test")
    ended: list[str] = []
    started = asyncio.Event()

    async def blocked(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    async def failing_job() -> None:
        raise ValueError("one-shot")

    tasks.run("long", lambda: blocked("long"))
    tasks.spawn(blocked("job"), "job")
    with caplog.at_level(logging.ERROR, "services.common.tasks"):
        tasks.spawn(failing_job(), "bad job")
        await _until(lambda: "what=bad job" in caplog.text)
    await started.wait()
    await tasks.close()
    assert sorted(ended) == ["job", "long"]
    assert tasks.check().ok  # nothing left to report
    begun: list[str] = []

    async def late() -> None:
        begun.append("late")

    job = late()
    tasks.spawn(job, "late")  # after close: dropped, never run, and closed (not left pending)
    await asyncio.sleep(0.05)
    assert begun == []
    assert inspect.getcoroutinestate(job) == inspect.CORO_CLOSED
    with pytest.raises(RuntimeError):
        tasks.run("too late", lambda: blocked("too late"))


async def test_a_stopped_task_is_not_restarted_nor_reported() -> None:
    tasks = Supervisor("test", restart_min=0.05, restart_max=0.05)

    async def work() -> None:
        raise RuntimeError("always")

    handle = tasks.run("doomed", work)
    await _until(lambda: not tasks.check().ok)
    await handle.stop()
    assert handle.task.done()
    assert tasks.check().ok
    await tasks.close()
