"""The miner's hashing engine on its own: real spawn-context worker processes, no ledger, no bus.

- `test_finds_a_nonce_meeting_the_target`: with 1 and with 2 workers, every worker finds a nonce
  in its own slice of the nonce space for an easy target, and pybtc agrees that the header with
  that nonce hashes to at most the target.
- `test_new_job_drops_the_old_one_quickly`: while both workers grind a job they cannot solve, a
  new (easy) job is submitted; the time until every worker has answered the new job is measured
  and must stay under a second (a behaviour bound, not a benchmark), and no result of the old
  job arrives afterwards. `idle()` likewise stops the hash counters within a second.
- `test_stop_reaps_every_worker`: `stop()` on busy workers ends and reaps them all (their pids
  are gone from /proc).
- `test_hash_counters_grow`: every worker's counter grows while it works, and so does the
  engine's hash rate.
- `test_workers_outlive_the_thread_that_started_them`: workers die with the miner process, not
  with whichever thread called `start()` (the miner service calls it from an executor thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pybtc import REGTEST, Block
from pybtc.mining import build_block
from pybtc.pow import hash_meets_target, round_target, target_to_bits
from services.miner.engine import SLICE_BITS, Engine, Job
from tests.chainutil import test_key

logger = logging.getLogger(__name__)

EASY = round_target(2**256 >> 14)
"""About 16,000 tries per hit: a few tens of milliseconds for one worker."""
IMPOSSIBLE = 1
"""A target no header will meet while a test runs: the workers grind until told otherwise."""
SWITCH_BOUND = 1.0
"""Seconds within which every worker must leave a stale job (it checks after each chunk)."""


def template(target: int, timestamp: int = REGTEST.genesis.timestamp + 60) -> Block:
    """An unmined regtest block on genesis whose header carries `target`."""
    return build_block(
        REGTEST,
        REGTEST.genesis.header,
        bits=target_to_bits(target),
        transactions=[],
        miner_address=test_key(0).address,
        timestamp=timestamp,
    )


@contextmanager
def running_engine(workers: int) -> Iterator[Engine]:
    """An engine of `workers` processes, stopped (workers reaped) however the test ends."""
    engine = Engine(workers)
    engine.start()
    logger.info("engine started workers=%d pids=%s", engine.size, engine.pids)
    try:
        yield engine
    finally:
        engine.stop()


def collect(engine: Engine, job_id: int, count: int, timeout: float) -> list[tuple[float, int]]:
    """(seconds waited, nonce) of the first `count` results for `job_id`; fail on timeout.
    Results of any other job are a failure too: only `job_id` may be answered."""
    start = time.monotonic()
    found: list[tuple[float, int]] = []
    while len(found) < count:
        result = engine.poll()
        if result is None:
            if time.monotonic() - start > timeout:
                pytest.fail(f"only {len(found)} of {count} results for job {job_id} in {timeout}s")
            time.sleep(0.002)
            continue
        got_job, nonce = result
        assert got_job == job_id, f"a result of job {got_job} arrived while {job_id} was current"
        assert nonce is not None, "a worker exhausted its 2**56 nonces: impossible here"
        found.append((time.monotonic() - start, nonce))
    return found


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (to tell it from a reused pid), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def wait_hashing(engine: Engine, timeout: float = 10.0) -> None:
    """Wait until every worker has counted hashes (spawned interpreters take a moment)."""
    deadline = time.monotonic() + timeout
    while not all(engine.hashes[i] > 0 for i in range(engine.size)):
        assert time.monotonic() < deadline, f"workers never hashed: {list(engine.hashes)}"
        time.sleep(0.01)


@pytest.mark.parametrize("workers", [1, 2])
def test_finds_a_nonce_meeting_the_target(workers: int) -> None:
    """Each worker finds a nonce in its own slice, and the header with it meets the target."""
    block = template(EASY)
    with running_engine(workers) as engine:
        engine.submit(Job(1, block.header.prefix_bytes(), EASY))
        results = collect(engine, 1, count=workers, timeout=20.0)
    slices = set()
    for waited, nonce in results:
        solved, slice_ = block.with_nonce(nonce), nonce >> SLICE_BITS
        logger.info("nonce=%#x slice=%d after %.3fs hash=%s", nonce, slice_, waited, solved.hash)
        assert hash_meets_target(bytes.fromhex(solved.hash), EASY)
        assert int(solved.hash, 16) <= EASY
        slices.add(slice_)
    assert slices == set(range(workers)), "each worker searches its own slice of the nonces"


def test_new_job_drops_the_old_one_quickly() -> None:
    """Busy workers switch to a new job within a second; the old one is never answered."""
    hard, easy = template(IMPOSSIBLE), template(EASY, timestamp=REGTEST.genesis.timestamp + 61)
    with running_engine(2) as engine:
        engine.submit(Job(1, hard.header.prefix_bytes(), IMPOSSIBLE))
        wait_hashing(engine)
        time.sleep(0.2)  # both workers are deep inside job 1's chunks now
        logger.info("job 1 running, hashes=%d; submitting job 2", engine.total_hashes())
        engine.submit(Job(2, easy.header.prefix_bytes(), EASY))
        results = collect(engine, 2, count=2, timeout=10.0)
        switch = max(waited for waited, _ in results)
        logger.info("every worker answered job 2 within %.3fs of its submission", switch)
        assert switch < SWITCH_BOUND
        for _, nonce in results:
            assert int(easy.with_nonce(nonce).hash, 16) <= EASY

        time.sleep(0.3)
        assert engine.poll() is None, "no result of the old job (nor a second one) arrives"

        logger.info("idle(): the counters must stop")
        engine.submit(Job(3, hard.header.prefix_bytes(), IMPOSSIBLE))
        time.sleep(0.3)
        idled = time.monotonic()
        engine.idle()
        last, last_change = engine.total_hashes(), idled
        while time.monotonic() - last_change < 0.3:
            now = engine.total_hashes()
            if now != last:
                last, last_change = now, time.monotonic()
            assert time.monotonic() - idled < 5.0, "the hash counters never stopped"
            time.sleep(0.005)
        logger.info("hash counters stopped %.3fs after idle()", last_change - idled)
        assert last_change - idled < SWITCH_BOUND


def test_stop_reaps_every_worker() -> None:
    """`stop()` on workers in the middle of a job ends every one and reaps it."""
    engine = Engine(2)
    engine.start()
    try:
        engine.submit(Job(1, template(IMPOSSIBLE).header.prefix_bytes(), IMPOSSIBLE))
        wait_hashing(engine)
        started = {pid: process_start(pid) for pid in engine.pids}
        assert len(started) == 2
        assert None not in started.values()
    finally:
        t0 = time.monotonic()
        engine.stop()
    logger.info("stop() took %.3fs for pids %s", time.monotonic() - t0, sorted(started))
    assert engine.pids == []
    for pid, start in started.items():
        now = process_start(pid)
        assert now is None or now != start, f"worker {pid} is still in /proc after stop()"


def test_hash_counters_grow() -> None:
    """Every worker counts its tries; the counters and the sampled hash rate grow while busy."""
    with running_engine(2) as engine:
        engine.submit(Job(1, template(IMPOSSIBLE).header.prefix_bytes(), IMPOSSIBLE))
        wait_hashing(engine)
        before = [engine.hashes[i] for i in range(engine.size)]
        engine.sample()
        time.sleep(0.5)
        engine.sample()
        after = [engine.hashes[i] for i in range(engine.size)]
        logger.info(
            "per-worker hashes before=%s after=%s rate=%.0f/s", before, after, engine.hash_rate()
        )
        assert all(b > a for a, b in zip(before, after, strict=True))
        assert engine.total_hashes() >= sum(after)
        assert engine.hash_rate() > 10_000


def test_workers_outlive_the_thread_that_started_them() -> None:
    """Workers must die with the miner process, not with the thread that happened to start them.

    Linux's parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that forked the child
    ends, not the process. The miner service calls `engine.start` through `run_in_executor`, so
    its workers are tied to an executor thread: if that thread ends while the miner runs, every
    worker gets SIGTERM and the miner is left with none.
    """
    engine = Engine(2)

    def start_from_a_thread() -> None:
        engine.start()
        engine.submit(Job(1, template(IMPOSSIBLE).header.prefix_bytes(), IMPOSSIBLE))
        wait_hashing(engine)  # each worker is inside its loop: its death signal is armed

    starter = threading.Thread(target=start_from_a_thread, name="starter")
    starter.start()
    starter.join()
    try:
        time.sleep(0.5)
        codes = [p.exitcode for p in engine.processes]
        logger.info("starter thread gone; workers alive=%s exit codes=%s", engine.alive(), codes)
        assert engine.alive(), f"the workers died with their starter thread: exit codes {codes}"
    finally:
        engine.stop()
