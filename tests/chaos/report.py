"""The figures of a chaos run, and its verdict: `Report.text()` is what the run prints.

A run passes when `problems` is empty; every check adds a line there when it fails (a lost
transfer, a database that fails its check, a service over the memory cap, a restart that did not
come up, ...). The text always shows the seed, so a failing run can be replayed with the same
fault schedule (`python -m tests.chaos --seed N --seconds S`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pybtc import COIN
from tests.chaos.driver import WATCH_TIMEOUT

if TYPE_CHECKING:
    from tests.chaos.driver import FaultLog
    from tests.chaos.invariants import DbFacts, Settled, TxAccount
    from tests.chaos.run import Traffic

KIND_ORDER = ("ledger", "miner", "explorer", "wallet", "redis")
RSS_CAP_MIB = 400
"""Any process above this fails the run: far above what a service needs, far below a leak
left running for ten minutes."""


def _counts(counter: Counter[str], limit: int = 8) -> str:
    if not counter:
        return "none"
    return ", ".join(f"{key} {n}" for key, n in counter.most_common(limit))


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f}"


@dataclass
class Report:
    """Everything a run measured; filled in as the run goes (a failed run leaves gaps)."""

    seed: int
    seconds: float
    schedule: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0
    chaos_seconds: float = 0.0
    total_seconds: float = 0.0
    faults: FaultLog | None = None
    traffic: Traffic | None = None
    settled: Settled | None = None
    transactions: TxAccount | None = None
    databases: dict[str, DbFacts] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    last_rss: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    passed: bool = False

    def judge(self) -> None:
        """Pass only if every figure is in and no check failed."""
        if self.faults is not None:
            self.problems += [p for p in self.faults.problems if p not in self.problems]
        complete = None not in (self.faults, self.traffic, self.settled, self.transactions)
        if not complete and not self.problems:
            self.problems.append("the run stopped before all figures were in")
        self.passed = not self.problems

    def text(self) -> str:
        lines = [
            f"pyBTC chaos run: seed {self.seed}, 3 nodes (devnet), {self.seconds:.0f}s of faults",
            f"  replay:             python -m tests.chaos --seconds {self.seconds:.0f} "
            f"--seed {self.seed}",
            f"  duration:           chaos {self.chaos_seconds:.1f}s, start-up "
            f"{self.startup_seconds:.1f}s, whole run {self.total_seconds:.1f}s",
        ]
        lines += self._transactions() + self._faults() + self._state() + self._memory()
        lines.append(f"  result:             {'PASS' if self.passed else 'FAIL'}")
        lines += [f"    - {problem}" for problem in self.problems[:40]]
        if len(self.problems) > 40:
            lines.append(f"    ... and {len(self.problems) - 40} more")
        return "\n".join(lines)

    def _transactions(self) -> list[str]:
        t, a = self.traffic, self.transactions
        if t is None:
            return ["  transactions:       (not measured)"]
        lines = [
            f"  transactions:       offered {t.offered}, acknowledged (201) {t.acked}"
            + (
                f", confirmed {a.confirmed}, dropped with a reason {sum(a.dropped.values())}, "
                f"lost {len(a.lost)}"
                if a is not None
                else ""
            )
        ]
        if a is not None:
            lines.append(
                f"    dropped by reason: {_counts(a.dropped)} (of which its nonce taken by a "
                f"transfer on the final chain: {a.dropped_consistent})"
            )
            lines.append(f"    acknowledged via:  {_counts(a.by_way)}")
            lines.append(
                f"    not acknowledged:  {_counts(t.refused)}; no answer: "
                f"{sum(t.no_answer.values())} (of which posted {a.unacked_posted}, confirmed "
                f"anyway {a.unacked_confirmed}); failovers to another node {t.failovers}"
            )
        lines.append(f"    turns skipped:     {t.skipped} (the sender had not the coins yet)")
        lines.append(f"    429 answers:       {t.too_many_requests}")
        lines.append(f"  pages read:         {_counts(t.pages)}")
        lines.append(f"  live events:        {_counts(t.events)}")
        return lines

    def _faults(self) -> list[str]:
        f = self.faults
        if f is None:
            return ["  faults:             (not carried out)"]
        kills = ", ".join(f"{k} {f.kills[k]}" for k in KIND_ORDER)
        restarts = ", ".join(f"{k} {f.restarts[k]}" for k in KIND_ORDER)
        slowest = ", ".join(
            f"{k} {f.restart_seconds[k]:.1f}s" for k in KIND_ORDER if k in f.restart_seconds
        )
        consensus = [r for r in f.recoveries if r.kind == "consensus"]
        bus = [r for r in f.recoveries if r.kind == "bus"]
        clean = [r.took for r in consensus if r.took is not None and r.clean]
        overlapped = [r.took for r in consensus if r.took is not None and not r.clean]
        return [
            f"  kills (kill -9):    {kills} ({sum(f.kills.values())} in all; "
            f"{f.skipped} skipped: still starting)",
            f"  restarts survived:  {restarts} ({sum(f.restarts.values())} in all)",
            f"    slowest start-up: {slowest or '-'}",
            f"  partitions healed:  {f.heals} of {f.partitions}",
            f"  time to converge:   longest {max(clean, default=0.0):.2f}s after a heal or "
            f"ledger restart, the network whole and every ledger up meanwhile ({len(clean)} "
            f"timed); {max(overlapped, default=0.0):.2f}s with a split or a ledger down "
            f"meanwhile ({len(overlapped)}); not converged within {WATCH_TIMEOUT:.0f}s: "
            f"{sum(r.timed_out for r in consensus)}",
            f"  bus back after a Redis restart: longest "
            f"{max((r.took for r in bus if r.took is not None), default=0.0):.2f}s "
            f"({len(bus)} restarts)",
            f"  databases after kill -9: quick_check {_counts(Counter(f.crash_checks))}",
        ]

    def _state(self) -> list[str]:
        s = self.settled
        lines = []
        if s is not None:
            lines.append(
                f"  final convergence:  {s.seconds:.1f}s to one tip with empty mempools "
                f"(a miner started again after the stop for: {_counts(s.miners_restarted)}); "
                f"height {s.height} tip {s.tip[:16]}"
            )
        for name, db in self.databases.items():
            lines.append(
                f"  {name} database:    integrity_check {db.integrity}; height {db.height}; "
                f"supply {db.supply / COIN:,.8f} = subsidies {db.expected_supply / COIN:,.8f}: "
                f"{'yes' if db.supply == db.expected_supply else 'NO'}; {db.accounts} accounts, "
                f"negative {db.negative}, lowest {db.lowest_balance}; {db.blocks} blocks stored, "
                f"{db.reorgs} reorgs (deepest {db.deepest_reorg})"
            )
        return lines

    def _memory(self) -> list[str]:
        by_kind: dict[str, list[str]] = {}
        for name in sorted(self.peak_rss):
            node, kind = name.split("/")
            last = self.last_rss.get(name, 0)
            by_kind.setdefault(kind, []).append(
                f"{node} {_mib(self.peak_rss[name])} ({_mib(last)})"
            )
        if not by_kind:
            return ["  memory (RSS):       (not sampled)"]
        lines = [f"  memory (RSS, MiB):  peak per process (at the last sample); cap {RSS_CAP_MIB}"]
        for kind in KIND_ORDER:
            if kind in by_kind:
                lines.append(f"    {kind:9} {', '.join(by_kind[kind])}")
        return lines
