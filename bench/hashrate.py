"""Hash rates: the miner's engine against plain loops and the tutorial's proof of work.

    .venv/bin/python bench/hashrate.py [--quick]

A benchmark: it prints figures and asserts nothing. Every figure is tries per second on the
same devnet block header (the tutorial's figure on its own puzzle), the median of several runs
of about two seconds with the spread (min–max):

- the miner's `Engine` with 1 worker and with one worker per usable core (spawned processes,
  SHA-256 midstate, the hash counters read before and after each run);
- `pybtc.pow.search_nonce` in this process, one core (what each worker runs);
- a plain hashlib sha256d loop over the 92-byte header, one core, no midstate: the baseline;
- the tutorial's `Blockchain.valid_proof(last_proof, proof)` from the shared reference
  `seed_node.py`, timed over a fixed number of calls in a subprocess run by the reference
  virtualenv (`.venv-reference/`, built as the tutorial-client tests build it when missing);
  and its `pow()` loop body, which also draws each proof with `random.randint`.

One tutorial try is a single SHA-256 of a short decimal string, checked for four leading hex
zeros (16 bits: 65,536 tries per block on average); one pyBTC try is sha256d of a full header
compared with a 256-bit target. The ratios compare tries, not security.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import cpu_model  # noqa: E402
from pybtc import DEVNET, PrivateKey  # noqa: E402
from pybtc.mining import build_block  # noqa: E402
from pybtc.pow import search_nonce  # noqa: E402
from services.miner.engine import Engine, Job  # noqa: E402
from tests.reference import REFERENCE_DIR, reference_venv  # noqa: E402

# The same pins as tests/functional/test_tutorial_clients.py, so both use one virtualenv.

IMPOSSIBLE = 1
"""A target nothing meets: every try runs to the end."""
BATCH = 16_384
"""Tries between looks at the clock in the single-core loops."""

TUTORIAL_SCRIPT = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
from seed_node import Blockchain

runs, seconds = int(sys.argv[2]), float(sys.argv[3])
valid_proof, randint, clock = Blockchain.valid_proof, random.randint, time.perf_counter
last_proof = 100  # the tutorial's genesis proof
first = -1_000_000  # proofs of the width pow() draws (-1e6..1e6)

start = clock()
for proof in range(first, first + 20_000):
    valid_proof(last_proof, proof)
count = max(20_000, int(20_000 / (clock() - start) * seconds))

out = {"count": count, "python": sys.version.split()[0], "valid_proof": [], "pow_loop": []}
for _ in range(runs):
    start = clock()
    for proof in range(first, first + count):  # a fixed number of calls
        valid_proof(last_proof, proof)
    out["valid_proof"].append(count / (clock() - start))
for _ in range(runs):
    start = clock()
    for _ in range(count):  # pow()'s loop: draw a proof, test it
        valid_proof(last_proof, randint(-1000000, 1000000))
    out["pow_loop"].append(count / (clock() - start))
print(json.dumps(out))
"""


def header_prefix() -> bytes:
    """The fixed 84 bytes of a devnet block on genesis (a real template's header)."""
    block = build_block(
        DEVNET,
        DEVNET.genesis.header,
        bits=DEVNET.genesis.header.bits,
        transactions=[],
        miner_address=PrivateKey(b"\x01" * 32).address,
        timestamp=DEVNET.genesis.timestamp + 600,
    )
    return block.header.prefix_bytes()


def timed(loop: Callable[[float], int], runs: int, seconds: float) -> list[float]:
    """Tries per second of `runs` runs of `loop(deadline)`, which returns its tries."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        tries = loop(start + seconds)
        rates.append(tries / (time.perf_counter() - start))
    return rates


def plain_sha256d(prefix: bytes) -> Callable[[float], int]:
    """sha256d of the whole 92-byte header for each nonce: no midstate."""
    sha256, pack, from_bytes = hashlib.sha256, struct.Struct(">Q").pack, int.from_bytes

    def loop(deadline: float) -> int:
        nonce = 0
        while True:
            for n in range(nonce, nonce + BATCH):
                if from_bytes(sha256(sha256(prefix + pack(n)).digest()).digest(), "big") <= 1:
                    break
            nonce += BATCH
            if time.perf_counter() >= deadline:
                return nonce

    return loop


def search_loop(prefix: bytes) -> Callable[[float], int]:
    """`pybtc.pow.search_nonce` (midstate) over consecutive ranges, in this process."""

    def loop(deadline: float) -> int:
        nonce = 0
        while time.perf_counter() < deadline:
            search_nonce(prefix, IMPOSSIBLE, nonce, BATCH)
            nonce += BATCH
        return nonce

    return loop


def engine_rates(prefix: bytes, workers: int, runs: int, seconds: float) -> list[float]:
    """Hashes per second of an Engine with `workers` processes, read from its hash counters."""
    engine = Engine(workers)
    engine.start()
    rates = []
    try:
        for run in range(1, runs + 1):
            engine.submit(Job(run, prefix, IMPOSSIBLE))
            settle = time.monotonic() + 10.0  # spawned interpreters take a moment to start
            base = [engine.hashes[i] for i in range(workers)]
            while any(engine.hashes[i] == base[i] for i in range(workers)):
                if time.monotonic() > settle:
                    raise RuntimeError("the engine's workers do not hash")
                time.sleep(0.005)
            time.sleep(0.1)
            h0, t0 = engine.total_hashes(), time.perf_counter()
            time.sleep(seconds)
            h1, t1 = engine.total_hashes(), time.perf_counter()
            rates.append((h1 - h0) / (t1 - t0))
            engine.idle()
    finally:
        engine.stop()
    return rates


def tutorial_rates(runs: int, seconds: float) -> tuple[dict[str, list[float]], str]:
    """The tutorial's valid_proof and pow()-loop tries per second, or ({}, why not)."""
    if not (REFERENCE_DIR / "seed_node.py").is_file():
        return {}, f"no {REFERENCE_DIR / 'seed_node.py'}"
    python, why = reference_venv()
    if python is None:
        return {}, why
    done = subprocess.run(
        [str(python), "-c", TUTORIAL_SCRIPT, str(REFERENCE_DIR), str(runs), str(seconds)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REFERENCE_DIR,
    )
    if done.returncode != 0:
        return {}, f"the tutorial's script failed: {done.stderr.strip()[-300:]}"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    note = f"{out['count']:,} calls per run, Python {out['python']}"
    return {"valid_proof": out["valid_proof"], "pow_loop": out["pow_loop"]}, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of 0.5 s per figure")
    args = parser.parse_args()
    runs, seconds = (3, 0.5) if args.quick else (5, 2.0)
    cores = len(os.sched_getaffinity(0))
    prefix = header_prefix()

    print(f"pyBTC hash rates — {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"machine: {os.cpu_count()} cores ({cores} usable), {cpu_model()}, "
        f"Python {platform.python_version()}; {runs} runs of ~{seconds:g}s per figure"
    )
    print(flush=True)

    figures: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    print("timing the engine...", flush=True)
    figures["engine, 1 worker"] = engine_rates(prefix, 1, runs, seconds)
    figures[f"engine, {cores} workers"] = engine_rates(prefix, cores, runs, seconds)
    print("timing the single-core loops...", flush=True)
    figures["search_nonce, one core (midstate)"] = timed(search_loop(prefix), runs, seconds)
    figures["plain sha256d loop, one core"] = timed(plain_sha256d(prefix), runs, seconds)
    print("timing the tutorial's proof of work...", flush=True)
    tutorial, note = tutorial_rates(runs, seconds)
    if tutorial:
        figures["tutorial valid_proof(), one core"] = tutorial["valid_proof"]
        figures["tutorial pow() loop (randint + valid_proof)"] = tutorial["pow_loop"]
        notes["tutorial"] = note
    else:
        notes["tutorial"] = f"unavailable: {note}"

    plain = statistics.median(figures["plain sha256d loop, one core"])
    tut = statistics.median(tutorial["valid_proof"]) if tutorial else None
    print()
    header = f"{'figure':<44} {'median/s':>12} {'min–max/s':>23} {'x plain':>8} {'x tutorial':>10}"
    print(header)
    print("-" * len(header))
    for name, rates in figures.items():
        median = statistics.median(rates)
        spread = f"{min(rates):,.0f}–{max(rates):,.0f}"
        versus_tutorial = f"{median / tut:10.2f}" if tut else f"{'-':>10}"
        print(f"{name:<44} {median:>12,.0f} {spread:>23} {median / plain:>8.2f} {versus_tutorial}")
    print()
    print(f"tutorial: {notes['tutorial']}")
    print(
        "a pyBTC try is sha256d of a 92-byte header against a 256-bit target; a tutorial try "
        "is one SHA-256 of a short decimal string (a block needs 65,536 tries on average)."
    )


if __name__ == "__main__":
    main()
