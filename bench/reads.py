"""Reads as the chain grows: balance lookups, chain download, explorer pages, a ledger restart
and its memory — pyBTC at the fixture's heights, the tutorial at the smaller one.

The tutorial's node holds a chain of its own shape with as many blocks and transfers per block
as pyBTC's (bench/tutorial.py); its wallet site (`seed_wallet.py`) answers a balance by
fetching the whole `/chain` and running its pandas code over every transaction, which is what
is timed (the login form's POST), beside pyBTC's `GET /address/{address}`. Every request is on
a fresh connection and reads the whole body; the two sides take turns of five requests each.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from bench import explorer
from bench.chainbuild import ChainBuilder, bench_key
from bench.common import (
    Figure,
    Proc,
    alternate,
    flat,
    get,
    http_post_form,
    ratio_at_least,
    rss_peak_mib,
    say,
    service_pid,
    timed_get,
    wait_http,
)
from bench.fixture import TXS_PER_BLOCK, Snapshot
from bench.tutorial import TutorialApp, TutorialNode, tutorial_chain
from pybtc import REGTEST
from tests.upnode import UpNode, free_port

PAGE = 100
TURN = 5
"""Requests in a row to one side before the other side's turn."""


class Reads:
    """Collects the read figures at each height of the fixture."""

    def __init__(self, work: Path, small: int, large: int, rounds: int) -> None:
        self.work, self.small, self.large, self.rounds = work, small, large, rounds
        chain_file = work / f"tutorial-chain-{small}.json"
        chain_file.write_text(json.dumps(tutorial_chain(small, TXS_PER_BLOCK)))
        self.tutorial = TutorialNode(work, chain_file)
        self.tutorial.wait()
        self.wallet = TutorialApp(work, "seed_wallet.py", self.tutorial.url)
        self.scan = TutorialApp(work, "seed_scan.py", self.tutorial.url)
        self.wallet.wait()
        self.scan.wait()
        self.samples: dict[str, dict[int, list[float]]] = {}
        self.tutorial_samples: dict[str, list[float]] = {}
        self.pages: dict[int, dict[str, list[float]]] = {}
        self.memory_after_import = 0.0

    def stop(self) -> None:
        for proc in (self.wallet, self.scan, self.tutorial):
            proc.stop()

    def _keep(self, name: str, height: int, values: list[float]) -> None:
        self.samples.setdefault(name, {})[height] = values

    def at_height(self, height: int, node: UpNode, builder: ChainBuilder) -> None:
        if height not in (self.small, self.large):
            return
        say(f"reads at {height:,} blocks")
        quiet = bench_key(7).address  # one of the 50 recipients of the transfers
        busy = builder.funder.address  # in every block
        middle = height // 2
        sides = {
            "balance": lambda: timed_get(f"{node.url}/address/{quiet}"),
            "balance, busy": lambda: timed_get(f"{node.url}/address/{busy}"),
            "chain page": lambda: timed_get(f"{node.url}/chain?start={middle}&limit={PAGE}"),
        }
        tutorial_sides = {}
        if height == self.small:
            sides["chain whole"] = lambda: timed_get(f"{node.url}/chain")
            tutorial_sides = {
                "balance": lambda: http_post_form(self.wallet.url + "/", {"wallet_id": "wallet_7"}),
                "chain whole": lambda: timed_get(f"{self.tutorial.url}/chain"),
            }
        both = sides | {f"tutorial {k}": v for k, v in tutorial_sides.items()}
        samples = alternate(both, max(3, self.rounds // TURN), TURN)
        for name in sides:
            self._keep(name, height, samples[name])
        for name in tutorial_sides:
            self.tutorial_samples[name] = samples[f"tutorial {name}"]

        pages = explorer.explorer_pages(node.explorer_url, node.url, builder)
        if height == self.small:
            pages["tutorial Block Scan /"] = self.scan.url + "/"
        self.pages[height] = explorer.time_pages(pages, self.rounds)
        if height == self.large:
            self.memory_after_import = rss_peak_mib(service_pid(node.proc.pid, "services.node"))

    def figures(self) -> list[Figure]:
        s, large = self.small, self.large
        out = []

        def pair(name: str, section: str, label: str, goal: str = "flat") -> Figure:
            small_fig = Figure(
                section,
                f"{label}, {s:,} blocks",
                "ms",
                self.samples[name][s],
                higher_is_better=False,
            )
            large_fig = Figure(
                section,
                f"{label}, {large:,} blocks",
                "ms",
                self.samples[name][large],
                higher_is_better=False,
                goal=goal,
                check=flat(small_fig),
            )
            large_fig.note = f"{large_fig.median / small_fig.median:.2f}× the {s:,}-block figure"
            return small_fig, large_fig  # type: ignore[return-value]

        section = "Balance lookup (GET /address/{a}; tutorial: wallet login = /chain + pandas)"
        small_fig, large_fig = pair("balance", section, "address in 1 of 50 blocks")
        small_fig.tutorial = self.tutorial_samples.get("balance")
        small_fig.goal, small_fig.check = "≥ 30× faster than the tutorial", ratio_at_least(30)
        out += [small_fig, large_fig]
        out += list(pair("balance, busy", section, "address in every block"))

        section = "Chain download (GET /chain)"
        whole = self.samples["chain whole"][s]
        tutorial_whole = self.tutorial_samples.get("chain whole")
        per_block = Figure(
            section,
            f"whole chain, per block, {s:,} blocks",
            "µs",
            [v * 1000 / s for v in whole],
            [v * 1000 / s for v in tutorial_whole] if tutorial_whole else None,
            higher_is_better=False,
            goal="no slower per block than the tutorial",
            check=ratio_at_least(1.0),
        )
        out.append(
            Figure(
                section,
                f"whole chain, {s:,} blocks",
                "ms",
                whole,
                tutorial_whole,
                higher_is_better=False,
            )
        )
        out.append(per_block)
        out += list(pair("chain page", section, f"one page of {PAGE} (middle)"))

        section = "Explorer pages (fresh connection, whole page)"
        at_small, at_large = self.pages[s], self.pages[large]
        for name, values in at_small.items():
            if name.startswith("tutorial") or name not in at_large:
                continue
            small_page = Figure(section, f"{name}, {s:,}", "ms", values, higher_is_better=False)
            large_page = Figure(
                section,
                f"{name}, {large:,}",
                "ms",
                at_large[name],
                higher_is_better=False,
                goal="flat",
                check=flat(small_page),
            )
            if name == "dashboard /":
                small_page.tutorial = at_small.get("tutorial Block Scan /")
                small_page.note = "tutorial: its Block Scan page"
            out += [small_page, large_page]
        return out


def restart(
    work: Path, snapshots: dict[int, Snapshot], rounds: int
) -> tuple[dict[int, list[float]], float]:
    """Seconds from starting a ledger on each snapshot to its first `/chain` answer, heights
    alternating round by round; and the peak RSS (MiB) of a ledger at the largest height after
    it has served the whole chain."""
    times: dict[int, list[float]] = {h: [] for h in snapshots}
    largest = max(snapshots)
    peak = 0.0
    for r in range(rounds):
        for height, snapshot in sorted(snapshots.items()):
            data = work / f"restart-{height}"
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir()
            shutil.copy(snapshot.path, data / f"ledger-{REGTEST.name}.sqlite3")
            port = free_port()
            env = {
                "PYBTC_NETWORK": REGTEST.name,
                "PYBTC_DATA_DIR": str(data),
                "PYBTC_LEDGER_PORT": str(port),
                "PYBTC_REDIS_URL": "",
                "PYBTC_PEERS": "",
            }
            start = time.monotonic()
            proc = Proc([sys.executable, "-m", "services.node"], work / "restart.log", env).start()
            try:
                wait_http(f"http://127.0.0.1:{port}/chain?start={height}&limit=1", proc)
                times[height].append(time.monotonic() - start)
                if height == largest and r == 0:
                    status, body = get(f"http://127.0.0.1:{port}/chain")
                    assert status == 200, body[:200]
                    assert json.loads(body)["length"] == height
                    peak = rss_peak_mib(proc.pid)
            finally:
                proc.stop()
                shutil.rmtree(data, ignore_errors=True)
    return times, peak


def restart_figures(
    times: dict[int, list[float]], peak: float, after_import: float
) -> list[Figure]:
    section = "Restart and memory (ledger alone)"
    heights = sorted(times)
    first = Figure(
        section,
        f"start to serving /chain, {heights[0]:,} blocks",
        "s",
        times[heights[0]],
        higher_is_better=False,
    )
    out = [first]
    for h in heights[1:]:
        out.append(
            Figure(
                section,
                f"start to serving /chain, {h:,} blocks",
                "s",
                times[h],
                higher_is_better=False,
                goal="no replay of the chain (flat)",
                check=flat(first),
            )
        )
    out.append(
        Figure(
            section,
            f"peak RSS after importing {heights[-1]:,} blocks",
            "MiB",
            [after_import],
            higher_is_better=False,
            note="the node's ledger process",
        )
    )
    out.append(
        Figure(
            section,
            "peak RSS, restarted, after serving the whole /chain",
            "MiB",
            [peak],
            higher_is_better=False,
        )
    )
    return out
