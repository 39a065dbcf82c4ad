"""The chaos driver: a fault schedule drawn from one seed, carried out against the cluster.

`make_schedule(seed, seconds)` draws every fault in advance, so the same seed replays the same
faults at the same offsets (the load's timing is not replayed, only the faults): SIGKILL of a
ledger, miner, explorer, wallet or redis-server of one node, down for a while and then started
again on the same port and data; or a split of the three nodes (one against two, or all three
apart), healed after a while. The first six faults are one of each kind, so that even a short
run kills every kind of process and partitions the network; a process is never killed again
while it is down, and partitions do not overlap.

`Driver.run` carries the schedule out on the main thread (it starts processes: see
`cluster`); a restart is spawned when its fault ends and polled until it answers, so a slow
start-up never holds the schedule up. Before a killed ledger is restarted, SQLite's
`quick_check` runs on the database the kill left behind. After a miner is killed, its hashing
workers must exit by themselves.

`Observer` (a thread) samples the resident memory of every process four times a second and
times recoveries: after each heal and each ledger restart, how long until all three ledgers
hold the same block at the height that was the best one at that moment (a test that holds
while the miners go on extending the chain); after each Redis restart, how long until every
running service of that node reports its bus connected again. A recovery is "clean" if the
network was whole and every ledger up from its start to its end (no split or ledger kill in
force or in between). A heal between branches of equal work converges only when the next block
breaks the tie, so these times include waiting for a block (about 5 s on devnet).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.cluster import (
    NO_ANSWER,
    Cluster,
    Node,
    Process,
    StartError,
    integrity_check,
)
from tests.chaos.procfs import child_pids, is_running, rss_bytes
from tests.functional.conftest import get_json, http

logger = logging.getLogger(__name__)

FAULT_KINDS = ("ledger", "miner", "explorer", "wallet", "redis", "partition")
WEIGHTS = (3, 2, 1, 1, 2, 3)
SPLITS = (
    (("node0",), ("node1", "node2")),
    (("node1",), ("node0", "node2")),
    (("node2",), ("node0", "node1")),
    (("node0",), ("node1",), ("node2",)),
)
RESTART_ATTEMPTS = 3
WATCH_TIMEOUT = 180.0
"""Seconds a recovery may take before it is reported as not converged."""
WORKER_EXIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Fault:
    """One fault: at `at` seconds into the chaos, for `duration` seconds."""

    at: float
    kind: str
    duration: float
    node: str = ""
    groups: tuple[tuple[str, ...], ...] = ()

    def __str__(self) -> str:
        target = " | ".join(",".join(g) for g in self.groups) if self.groups else self.node
        return f"t={self.at:6.1f}s {self.kind:9} {target:22} for {self.duration:4.1f}s"


def make_schedule(
    seed: int, seconds: float, *, mean_gap: float = 3.0, nodes: int = 3
) -> list[Fault]:
    """Every fault of a run of `seconds`, drawn from `seed` alone; all end before `seconds`."""
    rng = random.Random(seed)
    names = [f"node{i}" for i in range(nodes)]
    busy: dict[tuple[str, str], float] = {}  # (kind, node) -> when it is back
    faults: list[Fault] = []
    first_round = list(FAULT_KINDS)
    rng.shuffle(first_round)
    t = 5.0  # let the load start first
    while True:
        t += rng.uniform(0.5 * mean_gap, 1.5 * mean_gap)
        if t > seconds - 3.0:
            return faults
        kind = first_round.pop() if first_round else rng.choices(FAULT_KINDS, WEIGHTS)[0]
        if kind == "partition":
            length = min(rng.uniform(3.0, 15.0), seconds - 1.0 - t)
            if busy.get(("partition", ""), 0.0) > t:
                continue
            busy[("partition", "")] = t + length
            faults.append(Fault(t, kind, length, groups=rng.choice(SPLITS)))
            continue
        free = [n for n in names if busy.get((kind, n), 0.0) <= t]
        if not free:
            continue
        node = rng.choice(free)
        down = min(rng.uniform(0.5, 6.0), seconds - 1.0 - t)
        busy[(kind, node)] = t + down
        faults.append(Fault(t, kind, down, node=node))


@dataclass
class Recovery:
    """One timed recovery: after a heal, a ledger restart (consensus) or a Redis restart."""

    what: str
    kind: str  # "consensus" or "bus"
    started: float
    epoch: int
    node: str = ""
    height: int = 0
    took: float | None = None
    clean: bool = True
    timed_out: bool = False


@dataclass
class FaultLog:
    """What the driver did and what it saw."""

    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    restart_seconds: dict[str, float] = field(default_factory=dict)
    """The longest start-up (until /healthz answered) per kind."""
    partitions: int = 0
    heals: int = 0
    recoveries: list[Recovery] = field(default_factory=list)
    crash_checks: list[str] = field(default_factory=list)
    """`quick_check` of each database a ledger kill left behind: "ok" or the problem."""
    problems: list[str] = field(default_factory=list)
    """Anything that makes the run fail: a restart that failed, an orphaned worker, ..."""
    epoch: int = 0
    """Bumped by every split and ledger kill (to tell clean recoveries)."""
    skipped: int = 0
    """Kills not carried out: the process was still starting from its last kill."""


@dataclass
class Restart:
    """A process spawned again, until it answers."""

    process: Process
    fault: Fault
    attempt: int = 1


class Driver:
    """Carries out a schedule; restarts and heals everything in `finish`.

    Restarts do not hold the schedule up: a process is spawned when its fault ends and polled
    until it answers (`_poll_restarts`, every tick), so several can come up at once.
    """

    def __init__(self, cluster: Cluster, schedule: list[Fault]) -> None:
        self.cluster = cluster
        self.schedule = schedule
        self.log = FaultLog()
        self.ends: list[tuple[float, Fault]] = []
        self.restarting: list[Restart] = []
        self.orphan_checks: list[tuple[float, str, list[int]]] = []
        self.split_now = False
        self.lock = threading.Lock()

    def run(self, seconds: float) -> None:
        start = time.monotonic()
        todo = sorted(self.schedule, key=lambda f: f.at)
        while time.monotonic() - start < seconds:
            now = time.monotonic() - start
            for due, fault in sorted(self.ends, key=lambda e: e[0]):
                if due <= now:
                    self.ends.remove((due, fault))
                    self._end(fault)
            while todo and todo[0].at <= now:
                fault = todo.pop(0)
                if self._begin(fault):
                    self.ends.append((now + fault.duration, fault))
            self._poll_restarts()
            self._check_orphans()
            time.sleep(0.05)

    def finish(self) -> None:
        """End every fault still in force: restart what is down, heal the network."""
        for _, fault in sorted(self.ends, key=lambda e: e[0]):
            self._end(fault)
        self.ends = []
        while self.restarting:
            self._poll_restarts()
            time.sleep(0.05)
        for process in self.cluster.processes():
            if not process.running:
                self.log.problems.append(f"{process.name} was down at the end of the chaos")
        deadline = time.monotonic() + WORKER_EXIT_TIMEOUT
        while self.orphan_checks and time.monotonic() < deadline:
            self._check_orphans()
            time.sleep(0.1)
        self._check_orphans(final=True)

    # -- faults ----------------------------------------------------------------------------
    def _begin(self, fault: Fault) -> bool:
        logger.info("fault %s", fault)
        if fault.kind == "partition":
            self.cluster.board.split(*fault.groups)
            with self.lock:
                self.split_now = True
                self.log.partitions += 1
                self.log.epoch += 1
            return True
        process = self.cluster.node(fault.node).process(fault.kind)
        starting = any(r.process is process for r in self.restarting)
        if starting or not process.running:  # still coming up, or a restart that failed
            logger.info("skipped: %s is not up", process.name)
            with self.lock:
                self.log.skipped += 1
            return False
        workers = child_pids(process.pid) if fault.kind == "miner" and process.pid else []
        process.kill()
        with self.lock:
            self.log.kills[fault.kind] += 1
            if fault.kind == "ledger":
                self.log.epoch += 1
        if workers:
            self.orphan_checks.append((time.monotonic(), process.name, workers))
        return True

    def _end(self, fault: Fault) -> None:
        if fault.kind == "partition":
            self.cluster.board.join()
            with self.lock:
                self.split_now = False
                self.log.heals += 1
            self.observer_watch(f"heal #{self.log.heals}", "consensus")
            return
        node = self.cluster.node(fault.node)
        if fault.kind == "ledger":
            result = integrity_check(node.db_path, quick=True)
            self.log.crash_checks.append(result)
            if result != "ok":
                self.log.problems.append(f"{node.db_path} after kill -9: quick_check {result}")
        self._spawn(Restart(node.process(fault.kind), fault))

    def _spawn(self, restart: Restart) -> None:
        try:
            self.cluster.spawn(restart.process)
        except StartError as exc:
            self._failed(restart, exc)
            return
        self.restarting.append(restart)

    def _failed(self, restart: Restart, exc: StartError) -> None:
        name = restart.process.name
        logger.warning("restart failed %s attempt=%d: %s", name, restart.attempt, exc)
        if restart.attempt >= RESTART_ATTEMPTS:
            self.log.problems.append(f"{name} did not restart: {exc}")
            return
        self._spawn(Restart(restart.process, restart.fault, restart.attempt + 1))

    def _poll_restarts(self) -> None:
        for restart in list(self.restarting):
            process = restart.process
            try:
                if not process.ready():
                    continue
            except StartError as exc:
                self.restarting.remove(restart)
                self._failed(restart, exc)
                continue
            self.restarting.remove(restart)
            took = time.monotonic() - getattr(process, "spawned_at", time.monotonic())
            with self.lock:
                self.log.restarts[process.kind] += 1
                longest = self.log.restart_seconds.get(process.kind, 0.0)
                self.log.restart_seconds[process.kind] = max(longest, took)
            logger.info("restarted %s pid=%s in %.1fs", process.name, process.pid, took)
            if process.kind == "ledger":
                self.observer_watch(f"{process.name} restart", "consensus")
            elif process.kind == "redis":
                self.observer_watch(f"{process.name} restart", "bus", process.node)

    def _check_orphans(self, final: bool = False) -> None:
        """A killed miner's hashing workers must exit by themselves within a few seconds."""
        for check in list(self.orphan_checks):
            killed_at, name, workers = check
            alive = [pid for pid in workers if is_running(pid)]
            if not alive:
                self.orphan_checks.remove(check)
            elif final or time.monotonic() - killed_at > WORKER_EXIT_TIMEOUT:
                self.orphan_checks.remove(check)
                self.log.problems.append(f"{name} killed: its workers {alive} still run")

    def observer_watch(self, what: str, kind: str, node: str = "") -> None:
        """Start timing a recovery (the observer finishes it)."""
        height = 0
        if kind == "consensus":
            height = max(_height(n) for n in self.cluster.nodes)
        with self.lock:
            recovery = Recovery(what, kind, time.monotonic(), self.log.epoch, node, height)
            # Timed from a moment the network was still cut or a ledger down: not clean.
            recovery.clean = not self.split_now and all(
                n.ledger.running for n in self.cluster.nodes
            )
            self.log.recoveries.append(recovery)


def _height(node: Node) -> int:
    try:
        return int(get_json(f"{node.url}/status")["height"])
    except (*NO_ANSWER, AssertionError, ValueError):
        return 0


class Observer(threading.Thread):
    """Samples memory and finishes the recoveries the driver started timing."""

    def __init__(self, cluster: Cluster, driver: Driver, interval: float = 0.25) -> None:
        super().__init__(name="observer", daemon=True)
        self.cluster = cluster
        self.driver = driver
        self.interval = interval
        self.peak_rss: dict[str, int] = {}
        """The highest resident memory seen per process name (`node0/ledger`, ...)."""
        self.last_rss: dict[str, int] = {}
        """The latest sample per process name."""
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                self.sample()
                self.check_recoveries()
        except Exception as exc:
            logger.exception("the observer failed")
            self.errors.append(f"observer: {type(exc).__name__}: {exc}")

    def sample(self) -> None:
        self.cluster.renice_workers()
        for process in self.cluster.processes():
            rss = rss_bytes(process.pid)
            if rss is None:
                continue
            self.last_rss[process.name] = rss
            self.peak_rss[process.name] = max(rss, self.peak_rss.get(process.name, 0))

    def check_recoveries(self) -> None:
        driver = self.driver
        with driver.lock:
            open_ = [r for r in driver.log.recoveries if r.took is None and not r.timed_out]
            epoch, split = driver.log.epoch, driver.split_now
        for recovery in open_:
            now = time.monotonic()
            if recovery.epoch != epoch:
                recovery.clean = False
            done = False
            if recovery.kind == "consensus" and not split:
                done = self._same_block_at(recovery.height)
            elif recovery.kind == "bus":
                done = self._bus_back(self.cluster.node(recovery.node))
            if done:
                recovery.took = now - recovery.started
                logger.info("recovered %s in %.2fs", recovery.what, recovery.took)
            elif now - recovery.started > WATCH_TIMEOUT:
                recovery.timed_out = True
                logger.warning("not recovered %s in %.0fs", recovery.what, WATCH_TIMEOUT)

    def _same_block_at(self, height: int) -> bool:
        hashes = set()
        for node in self.cluster.nodes:
            if not node.ledger.running:
                return False
            try:
                reply = http("GET", f"{node.url}/blocks/height/{height}", timeout=5)
            except NO_ANSWER:
                return False
            if reply.status != 200:
                return False
            hashes.add(reply.json()["block"]["hash"])
        return len(hashes) == 1

    def _bus_back(self, node: Node) -> bool:
        for service in node.services.values():
            if not service.running:
                continue
            with contextlib.suppress(*NO_ANSWER, ValueError):
                body = http("GET", f"{service.url}/healthz", timeout=5).json()
                if body["checks"].get("redis", {}).get("ok"):
                    continue
            return False
        return True
