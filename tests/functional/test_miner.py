"""The miner service as a real process beside a real ledger process, over a real Redis bus.

Every test starts `python -m services.node` and/or `python -m services.miner` with PYBTC_*
variables only (one explicit PYBTC_NODE_ID shared by the node's services, the session's Redis),
drives them over HTTP, watches the bus where it matters, and ends with no process of its node
left (found through /proc by the node id in their environment).

- `test_get_mine_on_demand` (regtest, on-demand): without a miner, `GET /mine` is an immediate
  503 `no-miner`; with one (asked over HTTP), it answers in the tutorial's shape once the block
  is in `/chain` and `/status`, and an on-demand miner mines nothing unasked.
- `test_restart_keeps_reward_address`: the reward key is kept in the data dir across restarts;
  PYBTC_MINER_ADDRESS overrides it.
- `test_killed_miner_leaves_no_worker` (devnet, auto): after SIGKILL of a busy miner its hashing
  workers exit by themselves (and are reaped by their new parent); after SIGTERM and SIGINT the
  miner exits 0 having reaped them.
- `test_dead_workers_do_not_hang_get_mine` (regtest, on-demand): once its workers are killed,
  the miner must replace them or refuse the ledger's request; `GET /mine` must not hang.
- `test_auto_mining_crosses_a_retarget` (devnet, auto): the miner alone builds a chain past
  devnet's first retarget; every block carries the bits `next_bits` demands and the retarget
  moves the target the way the window's timestamps call for.
- `test_own_blocks_are_not_stale_work` (the same node): a miner alone drops no job as stale.
- `test_stale_work_dropped_on_new_tip` (devnet, auto, the same node): a competing block for the
  height the miner works on reaches the ledger; within a second the miner works on top of it,
  and none of its later blocks builds on the old parent.

The last three tests share one devnet node (a module fixture) because reaching the first
retarget costs tens of seconds of hashing (30-55 s measured on 2 cores); they come last so that
node's miner competes with no other test for the cores.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import redis

from pybtc import DEVNET, Block, BlockHeader, PrivateKey, get_params
from pybtc.difficulty import is_retarget_height, next_bits
from pybtc.pow import bits_to_target, search_nonce
from services.common.embedded_redis import EmbeddedRedis
from services.common.envelope import Envelope, Kind, channel
from services.common.settings import Settings
from tests.chainutil import test_key
from tests.functional.conftest import (
    ChildProcesses,
    LedgerProcess,
    child_env,
    free_port,
    get_json,
    http,
    log_tail,
    wait_for,
)

logger = logging.getLogger(__name__)

RIVAL = test_key(6)
"""Pays the competing blocks the tests make themselves."""
SWITCH_BOUND = 1.0
"""Seconds within which the miner must leave a job whose parent is no longer the tip."""
EXIT_BOUND = 5.0
"""Seconds within which every hashing worker of a stopped or killed miner must be gone."""
MINE_TIMEOUT = 3.0
"""PYBTC_MINE_TIMEOUT for the ledger of the dead-workers test: how long GET /mine may wait."""
HEARTBEAT_SECONDS = 1.0
"""How often the miner checks its workers (services.miner.miner.HEARTBEAT)."""
RETARGET_DEADLINE = 300.0
"""Seconds the devnet miner gets to pass the first retarget: a guard against a hang, not a
speed test (30-55 s measured on 2 idle cores; a loaded machine has taken over 120 s)."""


# -- processes -------------------------------------------------------------------------------


def node_id() -> str:
    """A fresh node id: the origin the node's services share on the bus (and a process tag)."""
    return f"minertest-{uuid.uuid4().hex[:10]}"


def start_ledger(
    children: ChildProcesses, data_dir: Path, redis_url: str, network: str, node: str
) -> LedgerProcess:
    """A ledger process on `network` with node id `node`, answering /healthz."""
    ledger = LedgerProcess(
        children,
        data_dir,
        redis_url=redis_url,
        extra_env={"PYBTC_NETWORK": network, "PYBTC_NODE_ID": node},
    )
    ledger.start()
    logger.info("ledger up network=%s node=%s url=%s", network, node, ledger.url)
    return ledger


class MinerProcess:
    """`python -m services.miner` with its own port; the settings are PYBTC_* variables."""

    def __init__(
        self,
        children: ChildProcesses,
        data_dir: Path,
        *,
        network: str,
        mode: str,
        node: str,
        ledger_url: str,
        redis_url: str = "",
        workers: int = 0,
        address: str = "",
        port: int = 0,
    ) -> None:
        self.children = children
        self.data_dir = data_dir
        self.port = port or free_port()  # the ledger's miner_port, for GET /mine
        self.log_path = data_dir / "miner.log"
        self.env = child_env(
            PYBTC_NETWORK=network,
            PYBTC_MINER_MODE=mode,
            PYBTC_NODE_ID=node,
            PYBTC_LEDGER_URL=ledger_url,
            PYBTC_REDIS_URL=redis_url,
            PYBTC_DATA_DIR=str(data_dir),
            PYBTC_HOST="127.0.0.1",
            PYBTC_MINER_PORT=str(self.port),
            PYBTC_MINER_WORKERS=str(workers),
        )
        if address:
            self.env["PYBTC_MINER_ADDRESS"] = address
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MinerProcess:
        """Start the miner and wait until its `/status` answers."""
        self.proc = self.children.spawn(
            [sys.executable, "-m", "services.miner"], env=self.env, log_path=self.log_path
        )
        wait_for(f"{self.url}/status", self.proc, self.log_path, timeout)
        logger.info(
            "miner up pid=%d url=%s workers=%s",
            self.proc.pid,
            self.url,
            self.status()["worker_pids"],
        )
        return self

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = get_json(f"{self.url}/status")
        return body

    def signal(self, sig: signal.Signals, timeout: float = 15.0) -> int:
        """Send `sig`, wait for the process to end, and return its exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the miner ignored {sig.name} for {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        return log_tail(self.log_path)


def wait_status(
    service: MinerProcess | LedgerProcess,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float,
    poll: float = 0.01,
) -> tuple[dict[str, Any], float]:
    """Poll the service's `/status` until `predicate` holds; (that status, seconds it took)."""
    start = time.monotonic()
    while True:
        body: dict[str, Any] = get_json(f"{service.url}/status")
        if predicate(body):
            return body, time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s; last /status: {body}\n{service.log()}")
        time.sleep(poll)


# -- /proc: is a process still there? --------------------------------------------------------


@dataclass(frozen=True)
class ProcessId:
    """A pid plus its kernel start time, so a reused pid is never mistaken for the old process."""

    pid: int
    start: str

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        stat_ = _stat(pid)
        assert stat_ is not None, f"process {pid} does not exist"
        return cls(pid, stat_[1])

    def state(self) -> str | None:
        """The process's state letter (R, S, Z...), or None once it is gone (reaped)."""
        stat_ = _stat(self.pid)
        return None if stat_ is None or stat_[1] != self.start else stat_[0]


def _stat(pid: int) -> tuple[str, str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], fields[19]  # state (field 3), start time (field 22)


def wait_exited(
    workers: list[ProcessId], *, reaped: bool = False, timeout: float = EXIT_BOUND
) -> dict[int, str | None]:
    """Wait until every worker has exited (with `reaped`, also been reaped: gone from /proc);
    fail naming the ones still there. Returns each worker's state (None: gone, "Z": exited, not
    yet reaped by its parent)."""
    done = (None,) if reaped else (None, "Z")
    deadline = time.monotonic() + timeout
    while True:
        states = {w.pid: w.state() for w in workers}
        if all(s in done for s in states.values()):
            return states
        if time.monotonic() > deadline:
            what = "not reaped" if reaped else "still running"
            pytest.fail(f"workers {what} {timeout:.0f}s after their miner ended: {states}")
        time.sleep(0.02)


def processes_tagged(tag: str) -> list[str]:
    """Running processes of ours whose environment mentions `tag` (a test's node id)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if tag.encode() in environ:
                state = _stat(int(entry.name))
                if state is not None and state[0] != "Z":
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found.append(f"{entry.name} {cmd[:120]}")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def assert_gone(tag: str) -> None:
    """Wait a little for every process carrying `tag` to end; fail listing those that remain."""
    deadline = time.monotonic() + EXIT_BOUND
    while (left := processes_tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of node {tag} outlived the test: {left}"


@pytest.fixture
def node(children: ChildProcesses) -> Iterator[str]:
    """This test's node id; afterwards (children reaped) no process carrying it may remain."""
    tag = node_id()
    yield tag
    children.reap_all()
    assert_gone(tag)


# -- the bus, watched from the test ----------------------------------------------------------


class BusRecorder:
    """Every announcement of some kinds on one network, with the monotonic time it arrived."""

    def __init__(self, redis_url: str, network: str, *kinds: Kind) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        self.channels = [channel(network, kind) for kind in kinds]
        self.seen: list[tuple[float, Envelope]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bus recorder", daemon=True)

    def __enter__(self) -> Self:
        self.pubsub.subscribe(*self.channels)
        confirmed = 0
        deadline = time.monotonic() + 5.0
        while confirmed < len(self.channels):  # subscribed before anything is published
            message = self.pubsub.get_message(timeout=0.5)
            confirmed += message is not None and message["type"] == "subscribe"
            assert time.monotonic() < deadline, "the recorder could not subscribe"
        self.thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.pubsub.close()
        self.client.close()

    poll = 0.05
    """Seconds each wait for the next message lasts at most (then `tick` runs)."""

    def _run(self) -> None:
        while not self.stopping.is_set():
            message = self.pubsub.get_message(timeout=self.poll)
            if message is not None and message["type"] == "message":
                self.heard(Envelope.from_json(message["data"]))
            self.tick()

    def heard(self, envelope: Envelope) -> None:
        """One announcement arrived (a subclass may also answer it)."""
        with self.lock:
            self.seen.append((time.monotonic(), envelope))

    def tick(self) -> None:
        """Called after every wait for a message: what a subclass does on its own clock."""

    def messages(self, kind: Kind, *, origin: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, data) of each `kind` announcement `origin` published, in order."""
        with self.lock:
            return [(t, e.data) for t, e in self.seen if e.type == kind and e.origin == origin]


# -- chain helpers ---------------------------------------------------------------------------


def main_chain(url: str) -> list[Block]:
    """The ledger's whole main chain, parsed (and so hash-checked) by pybtc."""
    return [Block.from_dict(b) for b in get_json(f"{url}/chain")["chain"]]


def assert_linked(chain: list[Block]) -> None:
    """Heights count up from genesis and every block names its parent's hash."""
    for height, (parent, block) in enumerate(itertools.pairwise(chain), start=2):
        assert block.index == height, f"block {block.hash[:16]} at position {height}"
        assert block.previous_hash == parent.hash, f"block {height} does not follow {parent.hash}"


def template(url: str, address: str) -> Block:
    body = get_json(f"{url}/mining/template?address={address}")
    return Block.from_dict(body["block"])


def solve(url: str, address: str, deadline: float, chunk: int = 65_536) -> Block | None:
    """A template for `address` solved in this process, in chunks; None when the ledger's tip
    moved meanwhile (the block would no longer extend it)."""
    block = template(url, address)
    prefix, target = block.header.prefix_bytes(), bits_to_target(block.header.bits)
    start = 0
    while time.monotonic() < deadline:
        nonce = search_nonce(prefix, target, start, chunk)
        if nonce is not None:
            return block.with_nonce(nonce)
        start += chunk
        if get_json(f"{url}/status")["tip"] != block.previous_hash:
            return None
    pytest.fail("no competing block could be solved in time")


def submit(url: str, block: Block) -> dict[str, Any]:
    reply = http("POST", f"{url}/mining/submit", json_body=block.to_dict())
    assert reply.status == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


# -- GET /mine --------------------------------------------------------------------------------


def test_get_mine_on_demand(
    children: ChildProcesses, node: str, tmp_path: Path, redis_url: str
) -> None:
    """GET /mine without a miner is an immediate 503; with an on-demand miner it returns the
    tutorial's answer for a block that /chain and /status then show, and nothing else is mined.
    """
    data = tmp_path / "node"
    ledger = start_ledger(children, data, redis_url, "regtest", node)

    logger.info("no miner: GET /mine must refuse at once")
    t0 = time.monotonic()
    reply = http("GET", f"{ledger.url}/mine")
    refused_in = time.monotonic() - t0
    logger.info("GET /mine -> %d in %.3fs: %s", reply.status, refused_in, reply.text)
    assert reply.status == 503, reply.text
    assert reply.json()["reason"] == "no-miner"
    assert refused_in < Settings().mine_timeout  # refused, not the mine timeout waited out

    miner = MinerProcess(
        children,
        data,
        network="regtest",
        mode="on-demand",
        node=node,
        ledger_url=ledger.url,
        port=ledger.miner_port,
        redis_url=redis_url,
    ).start()
    address = miner.status()["address"]

    logger.info("poll GET /mine until the miner answers the ledger")
    deadline = time.monotonic() + 15.0
    refusals = 0
    while (reply := http("GET", f"{ledger.url}/mine", timeout=30.0)).status == 503:
        assert reply.json()["reason"] == "no-miner", reply.text
        refusals += 1
        assert time.monotonic() < deadline, f"still no-miner after 15s:\n{miner.log()}"
        time.sleep(0.1)
    logger.info(
        "GET /mine -> %d after %d no-miner answers: %s", reply.status, refusals, reply.text[:200]
    )
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body["message"] == "new block found"
    assert {"index", "transactions", "nonce", "previous_hash"} <= body.keys()
    assert body["index"] == 2
    assert body["previous_hash"] == get_params("regtest").genesis.hash
    coinbase = body["transactions"][0]
    assert (coinbase["sender"], coinbase["recipient"]) == ("0", address)

    chain = main_chain(ledger.url)
    assert_linked(chain)
    mined = chain[body["index"] - 1]
    assert (mined.hash, mined.header.nonce) == (body["hash"], body["nonce"])
    status = get_json(f"{ledger.url}/status")
    assert (status["height"], status["tip"]) == (body["index"], body["hash"])

    logger.info("on-demand: nothing more is mined unasked")
    time.sleep(1.5)
    assert get_json(f"{ledger.url}/status")["height"] == 2
    state, _ = wait_status(miner, lambda s: s["job"] is None, "miner idle", 5.0)
    assert state["blocks_accepted"] == 1
    assert state["last_block"] == body["hash"]
    assert state["requests_pending"] == 0
    assert state["blocks_rejected"] == {}

    logger.info("a second GET /mine builds on the first block")
    second = http("GET", f"{ledger.url}/mine", timeout=30.0)
    assert second.status == 200, second.text
    assert (second.json()["index"], second.json()["previous_hash"]) == (3, body["hash"])
    assert miner.signal(signal.SIGTERM) == 0
    assert ledger.stop() == 0


# -- the reward key ------------------------------------------------------------------------------


def test_restart_keeps_reward_address(children: ChildProcesses, node: str, tmp_path: Path) -> None:
    """The reward key made at first start is kept in the data dir and reused after a restart;
    PYBTC_MINER_ADDRESS takes precedence and leaves the key file alone."""
    data = tmp_path / "node"
    nowhere = f"http://127.0.0.1:{free_port()}"  # no ledger needed: nobody asks for a block

    def run(address: str = "") -> str:
        miner = MinerProcess(
            children,
            data,
            network="regtest",
            mode="on-demand",
            node=node,
            ledger_url=nowhere,
            workers=1,
            address=address,
        ).start()
        got: str = miner.status()["address"]
        assert miner.signal(signal.SIGTERM) == 0
        return got

    first = run()
    key_file = data / "miner-regtest.key"
    logger.info("first start: address=%s key=%s", first, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_text = key_file.read_text()
    assert PrivateKey.from_hex(key_text.strip()).address == first

    assert run() == first, "a restart must keep the reward address"
    chosen = test_key(4).address
    assert run(chosen) == chosen
    assert key_file.read_text() == key_text
    assert run() == first


# -- stopping and killing ------------------------------------------------------------------------


def test_killed_miner_leaves_no_worker(
    children: ChildProcesses, node: str, tmp_path: Path, redis_url: str
) -> None:
    """SIGKILL of a busy miner: its workers notice and exit. SIGTERM and SIGINT: the miner
    stops its workers, reaps them and exits 0."""
    data = tmp_path / "node"
    ledger = start_ledger(children, data, redis_url, "devnet", node)
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        miner = MinerProcess(
            children,
            data,
            network="devnet",
            mode="auto",
            node=node,
            ledger_url=ledger.url,
            port=ledger.miner_port,
            redis_url=redis_url,
            workers=2,
        ).start()
        state, _ = wait_status(
            miner, lambda s: s["job"] is not None and s["hashes"] > 0, "busy workers", 15.0
        )
        workers = [ProcessId.of(pid) for pid in state["worker_pids"]]
        assert len(workers) == 2
        t0 = time.monotonic()
        code = miner.signal(sig)
        states = wait_exited(workers)
        exited = time.monotonic() - t0
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
            # orphans now: their new parent (init or a subreaper) must reap them
            wait_exited(workers, reaped=True)
        else:
            assert code == 0, miner.log()
            assert set(states.values()) == {None}, "the miner reaps its own workers"
        logger.info(
            "%s: miner exit=%d; workers exited within %.2fs (states then: %s), reaped within %.2fs",
            sig.name,
            code,
            exited,
            states,
            time.monotonic() - t0,
        )
    assert ledger.stop() == 0


def test_dead_workers_do_not_hang_get_mine(
    children: ChildProcesses, node: str, tmp_path: Path, redis_url: str
) -> None:
    """A miner whose hashing workers have died (OOM killer, a stray kill) cannot mine: it must
    either replace them or refuse the ledger's request at once, so that `GET /mine` is served or
    refused at once rather than left hanging until PYBTC_MINE_TIMEOUT.
    """
    data = tmp_path / "node"
    ledger = LedgerProcess(
        children,
        data,
        redis_url=redis_url,
        extra_env={"PYBTC_NODE_ID": node, "PYBTC_MINE_TIMEOUT": str(MINE_TIMEOUT)},
    )
    ledger.start()
    miner = MinerProcess(
        children,
        data,
        network="regtest",
        mode="on-demand",
        node=node,
        ledger_url=ledger.url,
        port=ledger.miner_port,
        redis_url=redis_url,
    ).start()
    deadline = time.monotonic() + 15.0
    while (reply := http("GET", f"{ledger.url}/mine", timeout=30.0)).status == 503:
        assert time.monotonic() < deadline, f"still no-miner after 15s:\n{miner.log()}"
        time.sleep(0.1)
    assert reply.status == 200, reply.text

    workers = [ProcessId.of(pid) for pid in miner.status()["worker_pids"]]
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    wait_exited(workers)
    health = http("GET", f"{miner.url}/healthz")
    logger.info("workers killed; miner /healthz -> %d %s", health.status, health.text)
    time.sleep(2 * HEARTBEAT_SECONDS)  # a heartbeat or two after the loss

    t0 = time.monotonic()
    reply = http("GET", f"{ledger.url}/mine", timeout=MINE_TIMEOUT + 10)
    took = time.monotonic() - t0
    logger.info("GET /mine with dead workers -> %d after %.1fs: %s", reply.status, took, reply.text)
    assert reply.status in (200, 503), (
        f"GET /mine answered {reply.status} after {took:.1f}s: the miner still takes requests "
        "able to mine with no worker alive, and nothing replaces the workers"
    )
    assert took < MINE_TIMEOUT
    assert miner.signal(signal.SIGTERM) == 0
    assert ledger.stop() == 0


# -- auto mode on devnet: one node shared by the retarget and stale-work tests ------------------


@dataclass
class DevnetNode:
    """A devnet ledger with an auto-mode miner, and every block announcement of that ledger."""

    ledger: LedgerProcess
    miner: MinerProcess
    bus: BusRecorder
    origin: str
    started: float

    def blocks_announced(self) -> list[tuple[float, dict[str, Any]]]:
        return self.bus.messages(Kind.BLOCK, origin=self.origin)


@pytest.fixture(scope="module")
def devnet_node(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevnetNode]:
    """One devnet node mining from genesis for the module's devnet tests: reaching the first
    retarget takes tens of seconds of hashing, so the chain is shared rather than rebuilt.
    At the end the miner must stop cleanly on SIGTERM, and nothing of the node may remain."""
    children = ChildProcesses()
    tag = node_id()
    data = tmp_path_factory.mktemp("devnet") / "node"
    try:
        with BusRecorder(redis_server.url, "devnet", Kind.BLOCK) as bus:
            ledger = start_ledger(children, data, redis_server.url, "devnet", tag)
            miner = MinerProcess(
                children,
                data,
                network="devnet",
                mode="auto",
                node=tag,
                ledger_url=ledger.url,
                port=ledger.miner_port,
                redis_url=redis_server.url,
            ).start()
            yield DevnetNode(ledger, miner, bus, f"{tag}/ledger", time.monotonic())
            assert miner.signal(signal.SIGTERM) == 0, miner.log()
            assert ledger.stop() == 0, ledger.log()
    finally:
        children.reap_all()
        assert_gone(tag)


@pytest.mark.timeout(RETARGET_DEADLINE + 120)
def test_auto_mining_crosses_a_retarget(devnet_node: DevnetNode) -> None:
    """An auto-mode miner alone builds a devnet chain across the first retarget (height 21):
    blocks keep coming, each carries the bits `next_bits` demands, and the retarget moves the
    target the way its window's timestamps call for.

    Devnet's genesis has a fixed timestamp, so the first window (heights 1-20) spans from
    genesis day to now and the first retarget eases the target by the clamp (x4) however fast
    the miner is; the miner's own block times (heights 2-20) are logged beside it. Reaching
    height 21 takes 19 blocks at genesis difficulty (2**21 expected hashes each): about 40-60 s
    on two cores, the longest wait of the suite.
    """
    ledger, miner = devnet_node.ledger, devnet_node.miner
    goal = DEVNET.retarget_interval + 2  # one block past the first retarget (height 21)
    logger.info("mine until height %d (deadline %.0fs)", goal, RETARGET_DEADLINE)
    seen: list[tuple[float, int]] = []
    height = 0
    while height < goal:
        height = get_json(f"{ledger.url}/status")["height"]
        waited = time.monotonic() - devnet_node.started
        if not seen or height != seen[-1][1]:
            seen.append((waited, height))
            logger.info("t=%5.1fs height=%d", waited, height)
        if waited > RETARGET_DEADLINE:
            pytest.fail(f"only height {height} after {RETARGET_DEADLINE:.0f}s:\n{miner.log()}")
        time.sleep(0.1)
    state = miner.status()
    logger.info(
        "height %d after %.1fs; miner hash_rate=%s/s accepted=%d rejected=%s stale_dropped=%d",
        height,
        seen[-1][0],
        state["hash_rate"],
        state["blocks_accepted"],
        state["blocks_rejected"],
        state["stale_jobs_dropped"],
    )
    assert state["blocks_rejected"] == {}
    assert state["hash_rate"] > 0

    chain = main_chain(ledger.url)
    assert_linked(chain)
    assert {b.transactions[0].recipient for b in chain[1:]} <= {state["address"], RIVAL.address}
    by_height = {b.index: b.header for b in chain}

    def ancestor(h: int) -> BlockHeader:
        return by_height[h]

    for block in chain[1:]:
        parent = by_height[block.index - 1]
        assert block.header.bits == next_bits(parent, ancestor, DEVNET), f"height {block.index}"

    retargets = [h for h in sorted(by_height) if is_retarget_height(h, DEVNET)]
    assert retargets, "the chain crosses a retarget"
    for h in retargets:
        first, last = by_height[h - DEVNET.retarget_interval], by_height[h - 1]
        actual = last.timestamp - first.timestamp
        old, new = bits_to_target(last.bits), bits_to_target(by_height[h].bits)
        own = (last.timestamp - by_height[max(2, first.index)].timestamp) / (
            last.index - max(2, first.index)
        )
        logger.info(
            "retarget at %d: window %d-%d took %ds (expected %ds); the miner's blocks in it came "
            "every %.2fs on average; target x%.3f (bits %08x -> %08x)",
            h,
            first.index,
            last.index,
            actual,
            DEVNET.target_timespan,
            own,
            new / old,
            last.bits,
            by_height[h].bits,
        )
        if actual < DEVNET.target_timespan:
            assert new < old, f"blocks came faster than wanted, yet the target at {h} grew"
        elif actual > DEVNET.target_timespan:
            assert new > old or old == DEVNET.pow_limit, f"slow blocks, the target at {h} shrank"
    first_window = by_height[DEVNET.retarget_interval].timestamp - DEVNET.genesis.timestamp
    assert first_window > DEVNET.target_timespan * DEVNET.retarget_clamp  # genesis is old
    assert bits_to_target(by_height[21].bits) == min(
        bits_to_target(by_height[20].bits) * DEVNET.retarget_clamp, DEVNET.pow_limit
    )


def test_own_blocks_are_not_stale_work(devnet_node: DevnetNode) -> None:
    """A miner alone on its chain has no stale work to drop: the tip announcement of the block
    it has just had accepted is not news (its next template is built on that block anyway).

    `stale_jobs_dropped` may count one drop per tip change someone else caused (none here when
    run before the stale-work test; the rival's blocks when after) and no more.
    """
    ledger, miner = devnet_node.ledger, devnet_node.miner
    wait_status(ledger, lambda s: s["height"] >= 12, "a dozen blocks", 90.0, poll=0.2)
    state = miner.status()
    chain = main_chain(ledger.url)
    foreign = [b for b in chain[1:] if b.transactions[0].recipient != state["address"]]
    logger.info(
        "height=%d accepted=%d jobs dropped as stale=%d foreign tips=%d",
        len(chain),
        state["blocks_accepted"],
        state["stale_jobs_dropped"],
        len(foreign),
    )
    assert state["stale_jobs_dropped"] <= len(foreign), (
        "jobs already on the tip were dropped as stale: the miner's own tip announcement, "
        "arriving while it fetched its next template, woke the loop"
    )


def test_stale_work_dropped_on_new_tip(devnet_node: DevnetNode) -> None:
    """A block for the height the miner works on arrives from elsewhere: within a second the
    miner works on top of it, and none of its later blocks has the old parent.

    The competing block is solved in this process on the ledger's template for another
    address, in chunks, while the miner races for the same height; it is submitted only while
    the miner's job is on the same parent, and the test competes again whenever the miner wins.
    Run after the retarget test, blocks are 4x easier (about 2**19 hashes) and this is quick.
    """
    ledger, miner = devnet_node.ledger, devnet_node.miner
    ours: list[str] = []
    deadline = time.monotonic() + 90.0
    while True:
        rival = solve(ledger.url, RIVAL.address, deadline)
        if rival is None:
            logger.info("the miner found this height first; compete on the new tip")
            continue
        job = miner.status()["job"]
        if job is None or job["previous_hash"] != rival.previous_hash:
            continue
        sent = time.monotonic()
        result = submit(ledger.url, rival)
        ours.append(rival.hash)
        if result["is_tip"]:
            break
        logger.info("the miner's block for height %d came first; compete again", rival.index)
    old_parent = rival.previous_hash
    logger.info(
        "rival block height=%d hash=%s is the tip; the miner was on job %d (parent %s)",
        rival.index,
        rival.hash[:16],
        job["id"],
        old_parent[:16],
    )

    state, _ = wait_status(
        miner,
        lambda s: s["job"] is not None and s["job"]["previous_hash"] != old_parent,
        "the miner leaves the stale job",
        timeout=10.0,
    )
    switched = time.monotonic()
    new_job = state["job"]
    logger.info(
        "miner on job %d height=%d parent=%s %.3fs after the submit",
        new_job["id"],
        new_job["height"],
        new_job["previous_hash"][:16],
        switched - sent,
    )
    assert switched - sent < SWITCH_BOUND
    assert new_job["height"] > rival.index

    logger.info("let the miner find a block on the new tip")
    wait_status(
        ledger, lambda s: s["height"] > rival.index, "a block on the rival", 60.0, poll=0.05
    )
    for _ in range(5):  # a consistent view: no block accepted while the chain was read
        before = miner.status()
        chain = main_chain(ledger.url)
        final = miner.status()
        if before["blocks_accepted"] == final["blocks_accepted"]:
            break
    time.sleep(0.3)  # the announcements of those blocks reach the recorder
    announced = devnet_node.blocks_announced()

    assert_linked(chain)
    assert chain[rival.index - 1].hash == rival.hash
    assert new_job["previous_hash"] == chain[new_job["height"] - 2].hash
    mined = [b for b in chain if b.transactions[0].recipient == final["address"]]
    assert any(b.index > rival.index for b in mined), "the miner mines on the rival's block"

    siblings = [(t, d) for t, d in announced if d["previous_hash"] == old_parent]
    late = [d for t, d in siblings if d["hash"] not in ours and t > switched + 0.1]
    logger.info(
        "blocks on the old parent: %s (rival %s); after the switch: %s",
        [d["hash"][:16] for _, d in siblings],
        rival.hash[:16],
        late,
    )
    assert not late, "the miner submitted stale work after moving to the new tip"

    side = [d for _, d in announced if not d["is_tip"] and d["hash"] not in ours]
    logger.info(
        "miner: accepted=%d (main chain %d, side %d) rejected=%s stale_dropped=%d",
        final["blocks_accepted"],
        len(mined),
        len(side),
        final["blocks_rejected"],
        final["stale_jobs_dropped"],
    )
    assert final["blocks_rejected"] == {}
    assert final["stale_jobs_dropped"] >= 1
    rejected = get_json(f"{ledger.url}/rejections")["rejections"]
    assert [r for r in rejected if r.get("kind") == "block"] == [], rejected
    assert final["blocks_accepted"] == len(mined) + len(side)
