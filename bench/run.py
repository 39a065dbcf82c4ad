"""Benchmarks of the protocol library: print figures, assert nothing.

    make bench            # or: .venv/bin/python bench/run.py [--quick]

Each figure is the median of several runs, with the spread (min–max), on one core. The
side-by-side comparison with the tutorial's node (transaction intake, balance lookups, block
propagation) arrives with the services; see the benchmarks issue.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pybtc import REGTEST, MemoryChain, PrivateKey, Transaction
from pybtc.keys import verify_signature
from pybtc.pow import search_nonce
from pybtc.validation import validate_transaction


def rate(work: Callable[[], int], runs: int) -> tuple[float, float, float]:
    """Median, min and max of items per second over `runs` runs of `work` (returns items)."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        items = work()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates), min(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs")
    args = parser.parse_args()
    runs, scale = (3, 1) if args.quick else (7, 4)

    key, other = PrivateKey.generate(), PrivateKey.generate()
    txs = [
        Transaction.create(
            key, other.address, 1_000, fee=10, nonce=n, timestamp=0, network_id=REGTEST.network_id
        )
        for n in range(500 * scale)
    ]
    message = b"x" * 120
    signature = key.sign(message)

    def hashes() -> int:
        count = 200_000 * scale
        search_nonce(b"\x00" * 84, 0, 0, count)  # target 0: nothing matches, every try runs
        return count

    def verify() -> int:
        for _ in range(2_000 * scale):
            verify_signature(key.public_key, signature, message)
        return 2_000 * scale

    def sign() -> int:
        for _ in range(2_000 * scale):
            key.sign(message)
        return 2_000 * scale

    def validate() -> int:
        for tx in txs:
            validate_transaction(tx, REGTEST)
        return len(txs)

    def connect() -> int:
        chain = MemoryChain(REGTEST)
        funder = txs[0].sender
        count = 0
        # fund the key, then blocks of 100 transfers each, every one fully validated
        for _ in range(len(txs) // 1000 + 1):
            chain.add_block(chain.next_block([], funder), REGTEST.genesis.timestamp + 10**6)
        for start in range(0, len(txs), 100):
            block = chain.next_block(txs[start : start + 100], funder)
            chain.add_block(block, REGTEST.genesis.timestamp + 10**6)
            count += 100
        return count

    print(f"pyBTC protocol benchmarks — {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; runs: {runs} (median, min–max), one core"
    )
    print()
    print(f"{'figure':<44} {'median':>12} {'min':>12} {'max':>12}")
    for name, work in [
        ("header hashes/s (sha256d, midstate)", hashes),
        ("Ed25519 signatures/s", sign),
        ("Ed25519 verifications/s", verify),
        ("transactions validated/s (stateless)", validate),
        ("transactions connected/s (blocks of 100)", connect),
    ]:
        median, low, high = rate(work, runs)
        print(f"{name:<44} {median:>12,.0f} {low:>12,.0f} {high:>12,.0f}")


if __name__ == "__main__":
    main()
