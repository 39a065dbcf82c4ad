"""The tutorial's programs (`../shared/reference/`) started for a benchmark, in their own venv.

`TutorialNode` runs `seed_node.py` unchanged, through a small runner that can first put a
chain of the tutorial's own shape into its memory (mining 1,000 tutorial blocks would take
minutes, and nothing on the read paths checks proof of work), and adds one route the tutorial
lacks, `GET /_bench/mined`: the wall-clock time (`time.time()`) at which `new_block` last
appended a block. With it, block propagation is measured from the moment the miner's node
has the block to the moment its `GET /mine` returns — the tutorial announces a block by
calling `/nodes/resolve` on each peer in turn and waiting, so when `/mine` answers, every
peer has re-downloaded the chain and decided.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from bench.common import Proc, wait_http
from tests.reference import REFERENCE_DIR, reference_venv
from tests.upnode import free_port

RUNNER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import seed_node
from flask import jsonify

if sys.argv[2] != "-":
    with open(sys.argv[2]) as f:
        seed_node.blockchain.chain = json.load(f)

MINED = []
_new_block = seed_node.blockchain.new_block

def new_block(*args, **kwargs):
    block = _new_block(*args, **kwargs)
    MINED.append(time.time())
    return block

seed_node.blockchain.new_block = new_block

@seed_node.app.route("/_bench/mined")
def mined():
    return jsonify({"at": MINED[-1] if MINED else None, "length": len(seed_node.blockchain.chain)})

seed_node.app.run(host="127.0.0.1", port=int(sys.argv[3]))
"""


def tutorial_chain(length: int, txs_per_block: int = 5) -> list[dict[str, Any]]:
    """`length` blocks as the tutorial's node makes them: index, timestamp, transactions
    (`txs_per_block` transfers, then the miner's reward, as its `/mine` appends it), nonce,
    previous_hash (sha256 of the sorted JSON of the block before)."""
    rng = random.Random(1)
    chain: list[dict[str, Any]] = []
    previous: object = 1
    for i in range(1, length + 1):
        now = 1_790_000_000.0 + i * 5
        txs = [
            {
                "sender": "node_5000",
                "recipient": f"wallet_{rng.randrange(50)}",
                "amount": 1 + j,
                "timestamp": now,
            }
            for j in range(txs_per_block)
        ]
        txs.append({"sender": "master", "recipient": "node_5000", "amount": 0.1, "timestamp": now})
        block = {
            "index": i,
            "timestamp": now,
            "transactions": txs if i > 1 else [],
            "nonce": 100 if i == 1 else rng.randint(-1_000_000, 1_000_000),
            "previous_hash": previous,
        }
        chain.append(block)
        previous = hashlib.sha256(json.dumps(block, sort_keys=True).encode()).hexdigest()
    return chain


def python() -> Path | None:
    """The reference virtualenv's interpreter (built once), or None if it cannot be built."""
    found, _ = reference_venv()
    return found


class TutorialNode:
    """`seed_node.py` on a free port, optionally with a chain loaded and `SEED_FIX` set."""

    def __init__(self, work: Path, chain: Path | None = None, fixes: str = "") -> None:
        interpreter = python()
        if interpreter is None:
            raise RuntimeError(f"no reference virtualenv: {reference_venv()[1]}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the module reads its own address from SEED_HOST/SEED_PORT when imported
        env = {"SEED_HOST": "127.0.0.1", "SEED_PORT": str(self.port), "SEED_FIX": fixes}
        self.proc = Proc(
            [
                str(interpreter),
                "-c",
                RUNNER,
                str(REFERENCE_DIR),
                str(chain) if chain else "-",
                str(self.port),
            ],
            work / f"seed_node-{self.port}.log",
            env=env,
        ).start()

    def wait(self) -> None:
        wait_http(f"{self.url}/_bench/mined", self.proc)

    def stop(self) -> None:
        self.proc.stop()


class TutorialApp:
    """`seed_wallet.py` or `seed_scan.py` pointed at a tutorial node."""

    def __init__(self, work: Path, script: str, node_url: str) -> None:
        interpreter = python()
        assert interpreter is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(
            [str(interpreter), str(REFERENCE_DIR / script), "--node", node_url],
            work / f"{script}-{self.port}.log",
        )
        self.proc.args += ["--port", str(self.port)]
        self.proc.start()

    def wait(self) -> None:
        wait_http(f"{self.url}/", self.proc)

    def stop(self) -> None:
        self.proc.stop()
