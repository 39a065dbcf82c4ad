"""One chaos run from start to figures: `run_chaos(seconds, seed, root)` returns a `Report`.

1. Start three nodes (see `cluster`): Redis and ledgers first, until every ledger lists the
   other two as peers; then miners (auto), explorers and wallets. The load starts at once: its
   first money is the miners' (see `load`).
2. For `seconds`: the transfer load, the page readers and the live-update followers run while
   the driver carries out the seeded fault schedule and the observer samples memory and times
   recoveries.
3. Stop the load, restart what is down, heal the cut; settle (see `invariants`).
4. Check: one tip; every acknowledged transfer confirmed or dropped with a recorded reason;
   every explorer and wallet page answers; every service stops cleanly on SIGTERM; every
   database passes `PRAGMA integrity_check`, holds exactly the sum of subsidies, no negative
   balance; no process of the run is left; the peak memory of each process under `RSS_CAP`.

Everything started is stopped in a `finally`, pass or fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.cluster import NO_ANSWER, Cluster, Node
from tests.chaos.driver import Driver, Observer, make_schedule
from tests.chaos.invariants import (
    DbFacts,
    Settled,
    SettleError,
    TxAccount,
    check_database,
    check_transactions,
    settle,
    wait_until,
)
from tests.chaos.load import EXPLORER_PAGES, SENDERS, WALLET_PAGES, Readers, TxLoad, follow_events
from tests.chaos.procfs import leftovers
from tests.chaos.report import RSS_CAP_MIB, Report
from tests.functional.conftest import get_json, http
from tests.functional.netproxy import LoopThread, Switchboard
from tests.functional.p2p import status

logger = logging.getLogger(__name__)

RSS_CAP = RSS_CAP_MIB * 2**20
TX_INTERVAL = 0.1
READ_INTERVAL = 0.2
SETTLE_TIMEOUT = 180.0


def start_network(cluster: Cluster) -> None:
    """Redis and ledgers until every ledger knows the other two; then the other services."""
    cluster.start_all(("redis", "ledger"))
    fronts = {n.name: n.front.url for n in cluster.nodes}

    def mesh() -> bool:
        for node in cluster.nodes:
            peers = {p["url"] for p in get_json(f"{node.url}/nodes")["peers"]}
            if peers != {url for name, url in fronts.items() if name != node.name}:
                return False
        return True

    wait_until(mesh, cluster, "every ledger knows the other two", 60)
    cluster.start_all(("miner", "explorer", "wallet"))


def page_sweep(nodes: list[Node], txid: str | None) -> list[str]:
    """Every explorer and wallet page once; each must answer 200. The failures."""
    failures = []
    address = SENDERS[0].address
    for node in nodes:
        explorer = [*EXPLORER_PAGES, f"/address/{address}"]
        wallet = [*WALLET_PAGES, f"/api/address/{address}"]
        if txid:
            explorer.append(f"/tx/{txid}")
            wallet.append(f"/api/tx/{txid}")
        for kind, paths in (("explorer", explorer), ("wallet", wallet)):
            for path in paths:
                url = node.services[kind].url + path
                try:
                    reply = http("GET", url, timeout=30)
                except NO_ANSWER as exc:
                    failures.append(f"GET {url}: no answer ({exc})")
                    continue
                if reply.status != 200:
                    failures.append(f"GET {url} -> {reply.status}: {reply.text[:200]}")
    return failures


@dataclass
class Traffic:
    """What the load and the readers saw."""

    offered: int = 0
    skipped: int = 0
    acked: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    no_answer: Counter[str] = field(default_factory=Counter)
    failovers: int = 0
    too_many_requests: int = 0
    pages: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)


def run_chaos(seconds: float, seed: int, root: Path) -> Report:
    """The whole run (see the module docstring); never raises for a failed invariant."""
    report = Report(seed=seed, seconds=seconds)
    began = time.monotonic()
    schedule = make_schedule(seed, seconds)
    report.schedule = [str(f) for f in schedule]
    logger.info("chaos seed=%d seconds=%.0f faults=%d root=%s", seed, seconds, len(schedule), root)
    board = Switchboard()
    followers = LoopThread()  # the live-update streams, apart from the proxies' loop
    cluster = Cluster(root, board)
    load: TxLoad | None = None
    readers: Readers | None = None
    observer: Observer | None = None
    follows: list[concurrent.futures.Future[None]] = []
    threads: list[TxLoad | Readers | Observer] = []
    events: Counter[str] = Counter()
    try:
        start_network(cluster)
        report.startup_seconds = time.monotonic() - began
        driver = Driver(cluster, schedule)
        load = TxLoad(cluster.nodes, seed + 1, TX_INTERVAL, root / "transfers.jsonl")
        readers = Readers(cluster.nodes, load, seed + 2, READ_INTERVAL)
        observer = Observer(cluster, driver)
        for node in cluster.nodes:
            for kind in ("explorer", "wallet"):
                url = f"{node.services[kind].url}/events"
                coro = follow_events(url, events, kind)
                follows.append(asyncio.run_coroutine_threadsafe(coro, followers.loop))
        threads = [load, readers, observer]
        for thread in threads:
            thread.start()
        chaos_began = time.monotonic()
        driver.run(seconds)
        load.stop()
        readers.stop()
        driver.finish()
        report.chaos_seconds = time.monotonic() - chaos_began
        report.faults = driver.log
        report.traffic = Traffic(
            load.stats.offered,
            load.stats.skipped,
            len(load.stats.acked),
            load.stats.refused,
            load.stats.no_answer,
            load.stats.failovers,
            load.stats.too_many_requests,
            readers.answers,
            events,
        )
        report.problems += load.errors + readers.errors
        _settle_and_check(report, cluster, load, observer)
    except SettleError as exc:
        report.problems.append(str(exc))
    except Exception:  # the run itself broke: still stop everything and report
        logger.exception("the chaos run failed")
        report.problems.append(f"the run failed:\n{traceback.format_exc()}")
    finally:
        for future in follows:
            future.cancel()
        followers.close()
        for thread in threads:
            if thread.is_alive():
                thread.stop()
        if observer is not None:
            report.peak_rss = dict(observer.peak_rss)
            report.last_rss = dict(observer.last_rss)
            report.problems += observer.errors
        cluster.close()
        board.close()
        for pid in leftovers(root):
            report.problems.append(f"pid {pid} of this run was still running after the stop")
            os.kill(pid, signal.SIGKILL)
        report.total_seconds = time.monotonic() - began
    for name, peak in report.peak_rss.items():
        if peak > RSS_CAP:
            report.problems.append(f"{name} peaked at {peak / 2**20:.0f} MiB (cap {RSS_CAP >> 20})")
    report.judge()
    return report


def _settle_and_check(report: Report, cluster: Cluster, load: TxLoad, observer: Observer) -> None:
    settled: Settled = settle(cluster, SETTLE_TIMEOUT)
    report.settled = settled
    for name, code in settled.miner_exit_codes.items():
        if code != 0:
            report.problems.append(f"{name} exited with {code} on SIGTERM")
    tips = {n.name: status(n)["tip"] for n in cluster.nodes}
    if len(set(tips.values())) != 1:
        report.problems.append(f"the nodes are on different tips: {tips}")
    account: TxAccount = check_transactions(cluster, load.stats.acked, load.stats.unanswered)
    report.transactions = account
    report.problems += [f"lost: {line}" for line in account.lost]
    confirmed = next(
        (t for t in reversed(list(load.stats.acked)) if _confirmed(cluster.nodes[0], t)), None
    )
    report.problems += page_sweep(cluster.nodes, confirmed)
    observer.stop()
    for name, code in cluster.stop_all().items():
        if code != 0:
            report.problems.append(f"{name} exited with {code} on SIGTERM")
    facts: dict[str, DbFacts] = {}
    for node in cluster.nodes:
        facts[node.name] = db = check_database(node)
        if db.integrity != "ok":
            report.problems.append(f"{node.db_path}: integrity_check {db.integrity}")
        if db.supply != db.expected_supply:
            report.problems.append(
                f"{node.name}: balances sum to {db.supply}, subsidies to {db.expected_supply}"
            )
        if db.negative:
            report.problems.append(f"{node.name}: {db.negative} negative balances")
        if db.tip != settled.tip:
            report.problems.append(f"{node.name}: stored tip {db.tip} is not {settled.tip}")
    report.databases = facts


def _confirmed(node: Node, txid: str) -> bool:
    reply = http("GET", f"{node.url}/tx/{txid}")
    return reply.status == 200 and reply.json()["status"] == "confirmed"
