"""`pybtc mine`, `pybtc faucet` and `--auto-mine` against a real `pybtc up --network regtest`.

The commands are the installed console script, run with only PYBTC_LEDGER_PORT,
PYBTC_MINER_PORT and PYBTC_WALLET_PORT pointing at the node: that they find it through the
node's own settings is part of what is checked. One node serves every check of the module but
the auto-mine ones (which need a node that mines by itself).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybtc import COIN, REGTEST
from tests.chainutil import test_key
from tests.functional.conftest import child_env, free_port
from tests.upnode import UpNode

PYBTC = str(Path(sys.executable).with_name("pybtc"))


def _drained(node: UpNode) -> threading.Thread:
    """Read the node's output as it comes (a full pipe would stall its services)."""
    stdout = node.proc.stdout
    assert stdout is not None
    thread = threading.Thread(target=lambda: node.lines.extend(stdout), daemon=True)
    thread.start()
    return thread


def _stop(node: UpNode, drain: threading.Thread | None) -> None:
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
    if drain is not None:
        drain.join(30)
    node.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    started = UpNode(tmp_path_factory.mktemp("dev") / "data", PYBTC_FAUCET_INTERVAL="600")
    drain = None
    try:
        started.wait_ready()
        drain = _drained(started)
        yield started
    finally:
        _stop(started, drain)


def pybtc(node: UpNode, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    ports = {
        "PYBTC_LEDGER_PORT": str(node.port),
        "PYBTC_MINER_PORT": str(node.miner_port),
        "PYBTC_WALLET_PORT": str(node.wallet_port),
    }
    return subprocess.run(
        [PYBTC, *args],
        env=child_env(**(ports | env)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def height(node: UpNode) -> int:
    return int(node.get("/status")["height"])


def balance(node: UpNode, address: str) -> int:
    return int(node.get(f"/address/{address}")["balance"])


def test_mine_n_blocks_to_the_node_or_to_an_address(node: UpNode) -> None:
    """`pybtc mine 5` adds 5 blocks paid to the miner's address (it says so); `--to` pays the
    subsidies to that address."""
    start = height(node)
    miner_address = node.get("/status", node.miner_port)["address"]
    mined = pybtc(node, "mine", "5")
    assert mined.returncode == 0, mined.stderr
    assert f"paying the node's mining address {miner_address}" in mined.stdout
    assert f"height {start + 5}" in mined.stdout.splitlines()[-1]
    assert height(node) == start + 5
    assert mined.stdout.count("block ") == 5

    to = test_key(41).address
    start = height(node)
    paid = pybtc(node, "mine", "3", "--to", to)
    assert paid.returncode == 0, paid.stderr
    assert height(node) == start + 3
    assert balance(node, to) == sum(REGTEST.subsidy(h) for h in range(start + 1, start + 4))

    start = height(node)
    many = pybtc(node, "mine", "30")  # past 20 blocks: a line every tenth of the way
    assert many.returncode == 0, many.stderr
    assert many.stdout.count("block ") == 10
    assert f"block 30/30  height {start + 30}" in many.stdout
    assert height(node) == start + 30


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("mine", "0"), 2, "0 is not in the range 1<=x<=1000"),
        (("mine", "1001"), 2, "1001 is not in the range"),
        (("mine", "2", "--to", "Pnonsense"), 1, "is not a pyBTC address"),
        (("faucet", "Pnonsense"), 1, "is not a pyBTC address"),
    ],
    ids=["zero", "too-many", "bad-to", "faucet-bad-address"],
)
def test_bad_arguments_are_one_line_refusals(
    node: UpNode, args: tuple[str, ...], code: int, says: str
) -> None:
    start = height(node)
    result = pybtc(node, *args)
    assert result.returncode == code, result.stdout
    assert says in result.stderr
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert height(node) == start


def test_no_node_is_one_line_and_exit_1(node: UpNode) -> None:
    """With the ports pointing where nothing listens: exit 1, one line naming the node."""
    nowhere = str(free_port())
    for args in (("mine", "1"), ("faucet", test_key(42).address, "1")):
        result = pybtc(node, *args, PYBTC_LEDGER_PORT=nowhere, PYBTC_WALLET_PORT=nowhere)
        assert result.returncode == 1, result.stdout
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"cannot reach the {'node' if args[0] == 'mine' else 'wallet service'}" in (
            result.stderr
        )


def test_faucet_pays_the_amount_twice_in_a_row(node: UpNode) -> None:
    """The operator's `pybtc faucet ADDRESS AMOUNT` pays exactly AMOUNT, twice in a row (not
    rate-limited); a bad amount is refused with one line and pays nothing."""
    assert pybtc(node, "mine", "2").returncode == 0  # the node key's coins
    to = test_key(43).address
    for _ in range(2):
        paid = pybtc(node, "faucet", to, "1.5")
        assert paid.returncode == 0, paid.stderr
        assert f"address  {to}" in paid.stdout
        assert "amount   1.50000000 pyBTC" in paid.stdout
        assert "txid     " in paid.stdout
    for amount, says in (
        ("abc", "AMOUNT 'abc'"),
        ("0", "more than 0"),
        ("1.123456789", "at most 8 decimal places"),
    ):
        refused = pybtc(node, "faucet", to, amount)
        assert refused.returncode == 1
        assert says in refused.stderr
    refused = pybtc(node, "faucet", to, "20000000")
    assert refused.returncode == 1
    assert "amount-over-balance" in refused.stderr
    # PYBTC_WALLET_URL comes first, as for `pybtc wallet faucet`: the port named is closed
    moved = pybtc(node, "faucet", to, "1", PYBTC_WALLET_PORT="1", PYBTC_WALLET_URL=node.wallet_url)
    assert moved.returncode == 0, moved.stderr
    assert pybtc(node, "mine", "1").returncode == 0
    assert balance(node, to) == 4 * COIN


def test_two_local_wallets_are_funded_one_after_the_other(node: UpNode) -> None:
    """`pybtc faucet ADDRESS` (no amount: the browser's request) for two addresses from this
    machine: both paid; the same address again: refused, the faucet paid it recently."""
    assert pybtc(node, "mine", "1").returncode == 0
    first, second = test_key(44).address, test_key(45).address
    for address in (first, second):
        paid = pybtc(node, "faucet", address)
        assert paid.returncode == 0, paid.stderr
        assert "amount   10.00000000 pyBTC" in paid.stdout
    again = pybtc(node, "faucet", first)
    assert again.returncode == 1
    assert "the faucet paid recently" in again.stderr


def test_get_mine_logs_and_the_miner_says_what_it_waits_for(node: UpNode) -> None:
    """The miner's /status says it waits for GET /mine when idle; a GET /mine is logged by the
    ledger when it starts waiting (on what) and when it ends."""
    status = node.get("/status", node.miner_port)
    assert status["activity"] == "idle: on-demand, waiting for GET /mine"
    assert status["auto_mine"] == 0
    mined = node.get("/mine", timeout=60)
    assert mined["message"] == "new block found"
    deadline = time.monotonic() + 10
    while not any("mine request done" in line for line in node.lines):
        assert time.monotonic() < deadline, "".join(node.lines[-30:])
        time.sleep(0.1)
    text = "".join(node.lines)
    assert f"mine request waiting for the miner url=http://127.0.0.1:{node.miner_port}/mine" in text
    assert f"mine request done height={mined['index']}" in text


def _grows_by_itself(started: UpNode) -> None:
    drain = None
    try:
        started.wait_ready()
        drain = _drained(started)
        status = started.get("/status", started.miner_port)
        assert status["auto_mine"] == 1.0
        assert status["activity"].startswith(("next auto-mined block in", "mining block")), status
        start = height(started)
        deadline = time.monotonic() + 60
        while height(started) < start + 2:
            assert time.monotonic() < deadline, "no two auto-mined blocks within 60 s"
            time.sleep(0.5)
    finally:
        _stop(started, drain)


def test_auto_mine_by_the_flag(tmp_path: Path) -> None:
    """`pybtc up --auto-mine 1` on regtest: the height grows by itself."""
    _grows_by_itself(UpNode(tmp_path / "data", args=("--auto-mine", "1")))


def test_mine_on_devnet_asks_the_miner_and_refuses_to(tmp_path: Path) -> None:
    """On devnet (real proof of work, an on-demand miner) `pybtc mine 2` asks the node's miner
    through GET /mine: a line per block with its height and seconds; `--to` is refused there
    with one line, nothing mined."""
    started = UpNode(tmp_path / "data", args=("--network", "devnet"), PYBTC_MINER_MODE="on-demand")
    drain = None
    try:
        started.wait_ready()
        drain = _drained(started)
        start = height(started)
        refused = pybtc(started, "mine", "1", "--to", test_key(46).address)
        assert refused.returncode == 1
        assert "--to works on regtest only" in refused.stderr
        assert height(started) == start
        mined = pybtc(started, "mine", "2")
        assert mined.returncode == 0, mined.stderr
        for k in (1, 2):
            assert re.search(
                rf"block {k}/2  height {start + k}  [0-9a-f]{{16}}  [0-9.]+ s", mined.stdout
            ), mined.stdout
        assert height(started) == start + 2
    finally:
        _stop(started, drain)
