"""The benchmark report's arithmetic: which way a ratio points, when a goal counts as met, and
the tutorial-shaped chains the benchmarks load into the tutorial's node. (No timing here: the
benchmarks print figures; these check that the figures are computed and labelled right.)"""

from __future__ import annotations

import hashlib
import itertools
import json

from bench.chainbuild import ChainBuilder, bench_key
from bench.common import Figure, cell, flat, percentile, ratio_at_least
from bench.run import render
from bench.tutorial import tutorial_chain
from pybtc import REGTEST, MemoryChain


def test_ratio_reads_times_better_for_pybtc_both_ways() -> None:
    rate = Figure("s", "tx/s", "/s", [800.0, 1000.0, 1200.0], [200.0, 250.0, 300.0])
    assert rate.ratio == 4.0
    latency = Figure("s", "p99", "ms", [10.0], [30.0], higher_is_better=False)
    assert latency.ratio == 3.0
    slower = Figure("s", "p99", "ms", [30.0], [10.0], higher_is_better=False)
    assert slower.ratio is not None
    assert abs(slower.ratio - 1 / 3) < 1e-12
    assert Figure("s", "alone", "ms", [1.0]).ratio is None


def test_goals_are_judged_from_the_medians() -> None:
    check = ratio_at_least(4.0)
    met = Figure("s", "tx/s", "/s", [4.0], [1.0], check=check)
    missed = Figure("s", "tx/s", "/s", [3.9], [1.0], check=check)
    alone = Figure("s", "tx/s", "/s", [3.9], None, check=check)
    assert (met.verdict, missed.verdict, alone.verdict) == ("met", "**not met**", "—")
    small = Figure("s", "page, 1k", "ms", [2.0, 2.2, 9.0], higher_is_better=False)
    assert Figure("s", "page, 10k", "ms", [3.0], check=flat(small)).verdict == "met"
    assert Figure("s", "page, 10k", "ms", [3.4], check=flat(small)).verdict == "**not met**"


def test_percentile_and_cells() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([5.0], 99) == 5.0
    assert cell([3.0, 1.0, 2.0], "ms") == "2.0 (1.0–3.0)"
    assert cell([1234.5], "/s") == "1,234"
    assert cell(None, "ms") == "—"


def test_the_report_has_one_table_per_section_and_every_figure() -> None:
    figures = [
        Figure(
            "Intake",
            "accepted tx/s",
            "/s",
            [2000.0],
            [500.0],
            goal="≥ 4×",
            check=ratio_at_least(4.0),
        ),
        Figure("Intake", "latency p99", "ms", [40.0], [20.0], higher_is_better=False),
        Figure("Memory", "peak RSS", "MiB", [70.0]),
    ]
    text = render(figures, ["# title"])
    assert text.count("### ") == 2
    assert "| accepted tx/s (/s) | 2,000 | 500 | 4.00× | ≥ 4× | met |" in text
    assert "| latency p99 (ms) | 40.0 | 20.0 | 0.50× |" in text
    assert "| peak RSS (MiB) | 70.0 | — | — |" in text


def test_tutorial_chains_link_as_the_tutorial_checks_them() -> None:
    chain = tutorial_chain(30, txs_per_block=5)
    assert [b["index"] for b in chain] == list(range(1, 31))
    for before, block in itertools.pairwise(chain):
        digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
        assert block["previous_hash"] == digest  # what the tutorial's valid_chain() compares
        assert len(block["transactions"]) == 6  # five transfers and the miner's reward
    assert json.loads(json.dumps(chain)) == chain  # survives the trip through its /chain


def test_builder_funds_the_given_addresses_once() -> None:
    chain = MemoryChain(REGTEST)
    funded = {bench_key(900).address: 5_000, bench_key(901).address: 7_000}
    builder = ChainBuilder(REGTEST.genesis.header, txs_per_block=2, recipients=3, fund=funded)
    for block in builder.blocks(4):
        assert chain.add_block(block, now=block.header.timestamp).is_tip
    for address, amount in funded.items():
        assert chain.account(address).balance == amount
    assert builder.nonce == 2 + 3 * 2  # the two payments, then three blocks of two transfers
