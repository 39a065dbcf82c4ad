"""The explorer's page latency at 1,000 and 10,000 blocks, beside the tutorial's Block Scan.

    .venv/bin/python bench/explorer.py [--quick] [--rounds N]

A benchmark: it prints figures and asserts nothing. What it does, in one run:

1. Starts a whole pyBTC node (`pybtc up --network regtest`: embedded Redis, ledger, miner,
   explorer) in a temporary data dir and imports 999 blocks through the ledger's
   `POST /mining/submit` (bench/chainbuild.py: each block a coinbase plus two signed
   transfers, so the chain holds 1,000 blocks and about 3,000 transactions).
2. Starts the tutorial's node (`../shared/reference/seed_node.py`, in the reference virtualenv)
   with a 1,000-block chain of the tutorial's own shape (a reward and two transfers per
   block) put straight into its memory (mining 1,000 tutorial blocks would take minutes;
   the Block Scan page never checks proof of work), and the tutorial's Block Scan page
   (`seed_scan.py`) reading from it.
3. Times every explorer page and the Block Scan page, alternating, `--rounds` times each
   (a fresh connection per request, the whole body read): median and 90th percentile.
4. Imports 9,000 more blocks (1,000 in `--quick` mode) and times the explorer's pages again.

pyBTC's pages read a page's worth of rows from the ledger's indexes, so their figures should
not move between 1,000 and 10,000 blocks; the Block Scan page re-reads and renders the whole
chain on every view.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.chainbuild import ChainBuilder, Ledger, bench_key, import_blocks  # noqa: E402
from bench.common import percentile, timed_get  # noqa: E402
from bench.tutorial import TutorialApp, TutorialNode, tutorial_chain  # noqa: E402
from bench.tutorial import python as tutorial_python  # noqa: E402
from tests.reference import reference_venv  # noqa: E402
from tests.upnode import UpNode  # noqa: E402


def time_pages(pages: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per page, the pages interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in pages}
    for url in pages.values():  # one warm-up request each (templates, caches, imports)
        timed_get(url)  # raises on anything but 200
    for _ in range(rounds):
        for name, url in pages.items():
            times[name].append(timed_get(url))
    return times


def explorer_pages(base: str, ledger_url: str, builder: ChainBuilder) -> dict[str, str]:
    """Every explorer page, aimed at blocks, transactions and addresses in the chain's middle
    (deep pages: nothing near the tip that a cache could favour)."""
    ledger = Ledger(ledger_url)  # a fresh connection: an idle one is closed by the server
    status, info = ledger.request("GET", "/status")
    assert status == 200
    assert isinstance(info, dict)
    middle = int(info["height"]) // 2
    _, view = ledger.request("GET", f"/blocks/height/{middle}")
    assert isinstance(view, dict)
    block = view["block"]
    txid = block["transactions"][-1]["txid"]
    busy = builder.funder.address  # in every block: its history is the whole chain
    quiet = bench_key(7).address  # one of 50 recipients
    ledger.close()
    return {
        "dashboard /": f"{base}/",
        "blocks, newest": f"{base}/blocks",
        "blocks, middle page": f"{base}/blocks?before={middle}",
        "block (middle)": f"{base}/block/{block['hash']}",
        "transaction (middle)": f"{base}/tx/{txid}",
        "address, in every block": f"{base}/address/{busy}",
        "address, its history middle": f"{base}/address/{busy}?offset={middle}",
        "address, 1 in 50 blocks": f"{base}/address/{quiet}",
        "mempool": f"{base}/mempool",
        "network": f"{base}/network",
        "forks": f"{base}/forks",
        "charts (499 blocks)": f"{base}/charts?blocks=499",
        "search by height": f"{base}/search?q={middle}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 blocks instead of 10,000")
    parser.add_argument("--rounds", type=int, default=0, help="requests per page (default 21)")
    args = parser.parse_args()
    rounds = args.rounds or (7 if args.quick else 21)
    small, large = 1_000, (2_000 if args.quick else 10_000)

    work = Path(tempfile.mkdtemp(prefix="pybtc-bench-explorer-"))
    started: list[TutorialNode | TutorialApp] = []
    node = UpNode(work / "pybtc")
    try:
        node.wait_ready()
        print(f"pyBTC node up: ledger {node.url}, explorer {node.explorer_url}", file=sys.stderr)
        builder = import_blocks(node.url, small - 1)
        pages = explorer_pages(node.explorer_url, node.url, builder)

        scan_url = None
        if tutorial_python() is not None:
            chain_file = work / "tutorial-chain.json"
            chain_file.write_text(json.dumps(tutorial_chain(small, 2)))
            seed = TutorialNode(work, chain_file)
            started.append(seed)
            seed.wait()
            scan = TutorialApp(work, "seed_scan.py", seed.url)
            started.append(scan)
            scan.wait()
            scan_url = f"{scan.url}/"
        else:
            print(f"the tutorial's side is left out: {reference_venv()[1]}", file=sys.stderr)

        at_small_pages = pages | ({"tutorial Block Scan /": scan_url} if scan_url else {})
        print(f"timing {len(at_small_pages)} pages at {small:,} blocks", file=sys.stderr)
        at_small = time_pages(at_small_pages, rounds)
        import_blocks(node.url, large - small, builder)
        pages_large = explorer_pages(node.explorer_url, node.url, builder)
        print(f"timing {len(pages_large)} pages at {large:,} blocks", file=sys.stderr)
        at_large = time_pages(pages_large, rounds)
        report(at_small, at_large, small, large, rounds, args.quick)
    finally:
        for proc in started:
            proc.stop()
        node.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(
    at_small: dict[str, list[float]],
    at_large: dict[str, list[float]],
    small: int,
    large: int,
    rounds: int,
    quick: bool,
) -> None:
    cpu = platform.processor() or platform.machine()
    print(
        f"\n# Explorer page latency ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"{cpu}, Python {platform.python_version()})"
    )
    print(
        f"median and 90th percentile of {rounds} requests per page, milliseconds"
        + (" (--quick)" if quick else "")
    )
    head = f"{'page':<30} {f'{small:,} blocks':>19} {f'{large:,} blocks':>19} {'ratio':>7}"
    print(head)
    print("-" * len(head))

    def fmt(v: list[float]) -> str:
        return f"{statistics.median(v):7.1f} (p90 {percentile(v, 90):5.1f})"

    for name, values in at_small.items():
        if name not in at_large:
            continue
        ratio = statistics.median(at_large[name]) / statistics.median(values)
        print(f"{name:<30} {fmt(values):>19} {fmt(at_large[name]):>19} {ratio:6.2f}x")
    scan = at_small.get("tutorial Block Scan /")
    if scan is not None:
        dashboard = statistics.median(at_small["dashboard /"])
        print(f"{'tutorial Block Scan /':<30} {fmt(scan):>19} {'—':>19}")
        print(
            f"\nAt {small:,} blocks the tutorial's Block Scan page takes "
            f"{statistics.median(scan) / dashboard:.1f}x as long as pyBTC's dashboard."
        )


if __name__ == "__main__":
    main()
