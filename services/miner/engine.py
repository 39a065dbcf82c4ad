"""The hashing engine: worker processes that search nonce ranges of one job at a time.

Each worker owns a disjoint slice of the 64-bit nonce space and searches it in short chunks
with `pybtc.pow.search_nonce` (a SHA-256 midstate of the fixed 84 header bytes, so each try
hashes only the nonce and the outer SHA-256). Between chunks it looks at the shared job number:
when the miner starts a new job (a new tip, new transactions), every worker drops the old one
within one chunk — a few tens of milliseconds. A worker also stops when its parent process is
gone (a watchdog thread waits on the parent's sentinel, and the parent pid is checked between
chunks), so a killed miner leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from pybtc.pow import search_nonce

logger = logging.getLogger(__name__)

CHUNK = 8_192
"""Nonces per chunk: a few tens of milliseconds, the longest a worker keeps a stale job."""
SLICE_BITS = 56
"""Each worker's slice of the nonce space: 2**56 nonces (years at any rate reachable here)."""


def _die_with_parent() -> None:
    """Exit the moment the parent process ends, whatever thread of it started this one.

    (Linux's parent-death signal would follow the *thread* that spawned the worker, and the
    miner spawns from a thread pool.)
    """
    parent = mp.parent_process()
    if parent is None:  # pragma: no cover - always a child here
        return
    sentinel = parent.sentinel

    def watch() -> None:
        mp.connection.wait([sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


@dataclass(frozen=True)
class Job:
    """One block header to solve: its fixed prefix and target, numbered by the miner."""

    job_id: int
    prefix: bytes
    target: int


def _worker(
    index: int,
    jobs: Any,
    results: Any,
    current: Synchronized[int],
    hashes: Any,
    parent: int,
) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the miner decides when workers stop
    base = index << SLICE_BITS
    while True:
        try:
            job = jobs.get(timeout=0.5)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return
        nonce = base
        end = base + (1 << SLICE_BITS)
        while nonce < end and current.value == job.job_id:
            found = search_nonce(job.prefix, job.target, nonce, CHUNK)
            hashes[index] += CHUNK if found is None else found - nonce + 1
            if found is not None:
                results.put((job.job_id, found))
                break
            nonce += CHUNK
            if os.getppid() != parent:
                return
        else:
            if nonce >= end:
                results.put((job.job_id, None))  # slice exhausted: the miner rolls the time


class Engine:
    """N worker processes and the job they share."""

    def __init__(self, workers: int) -> None:
        self.size = max(1, workers)
        ctx = mp.get_context("spawn")  # never fork an asyncio process
        self._ctx = ctx
        # no lock: a worker killed while holding one would freeze the miner's next job change
        self.current: Synchronized[int] = ctx.Value("q", 0, lock=False)
        self.hashes = ctx.Array("Q", self.size, lock=False)
        self.results: Any = ctx.Queue()
        self.queues: list[Any] = [ctx.Queue() for _ in range(self.size)]
        self.processes: list[BaseProcess] = []
        self._samples: list[tuple[float, int]] = []

    def start(self) -> None:
        parent = os.getpid()
        for index in range(self.size):
            process = self._ctx.Process(
                target=_worker,
                args=(index, self.queues[index], self.results, self.current, self.hashes, parent),
                name=f"pybtc-miner-worker-{index}",
                daemon=True,
            )
            process.start()
            self.processes.append(process)
        logger.info("workers started count=%d pids=%s", self.size, self.pids)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def submit(self, job: Job) -> None:
        """Make `job` the one every worker searches (the previous one is dropped)."""
        self.current.value = job.job_id
        for q in self.queues:
            q.put(job)

    def idle(self) -> None:
        """Stop searching (no current job)."""
        self.current.value = -1

    def poll(self) -> tuple[int, int | None] | None:
        """A result (job_id, nonce or None when a slice was exhausted), if one is waiting."""
        try:
            result: tuple[int, int | None] = self.results.get_nowait()
        except queue.Empty:
            return None
        return result

    def total_hashes(self) -> int:
        return int(sum(self.hashes))

    def sample(self, window: float = 10.0) -> None:
        """Record the hash count now; keeps about `window` seconds of samples."""
        now = time.monotonic()
        self._samples.append((now, self.total_hashes()))
        self._samples = [s for s in self._samples if now - s[0] <= window]

    def hash_rate(self) -> float:
        """Hashes per second between the oldest and newest sample."""
        if len(self._samples) < 2:
            return 0.0
        (t0, h0), (t1, h1) = self._samples[0], self._samples[-1]
        return (h1 - h0) / (t1 - t0) if t1 > t0 else 0.0

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.processes)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and reap every worker."""
        self.idle()
        for q in self.queues:
            with contextlib.suppress(Exception):
                q.put(None)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1)
        for q in [*self.queues, self.results]:
            q.close()
            q.join_thread()
        logger.info("workers stopped count=%d", len(self.processes))
        self.processes = []


def default_workers(setting: int, cores: Sequence[int] | None = None) -> int:
    """`setting` if positive, else one worker per core this process may use."""
    if setting > 0:
        return setting
    usable = cores if cores is not None else os.sched_getaffinity(0)
    return max(1, len(usable))
