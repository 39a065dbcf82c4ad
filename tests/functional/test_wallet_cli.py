"""`pybtc wallet` (the CLI wallet of docs/wallet.md) against a real regtest ledger process.

Each test starts one ledger (`python -m services.node` on regtest, the session's Redis as its
bus), makes wallet files with the installed `pybtc` console script, funds them by mining blocks
to their addresses, and drives `pybtc wallet` the way a script would: the passphrase from
PYBTC_WALLET_PASSPHRASE, the node from --node or PYBTC_LEDGER_URL. What the CLI says is checked
against what the ledger then holds: a refused `send` must leave the mempool as it was.
"""

from __future__ import annotations

import json
import logging
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pybtc import COIN, REGTEST, Transaction, format_amount
from services.wallet.keyfile import decrypt_key, read_key_file
from tests.chainutil import test_key
from tests.functional.conftest import (
    ChildProcesses,
    LedgerProcess,
    child_env,
    free_port,
    get_json,
    http,
    mine,
)

logger = logging.getLogger(__name__)

PYBTC = Path(sys.executable).with_name("pybtc")
PASSPHRASE = "correct horse \u2603 battery"
MINER = test_key(0)  # mines the blocks that confirm, so the wallets' balances stay simple
SUBSIDY = REGTEST.subsidy(2)
FEE = 1_000


def wallet(
    *args: str,
    cwd: Path,
    passphrase: str | None = PASSPHRASE,
    stdin: str = "",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run `pybtc wallet ARGS` in `cwd` with the passphrase (if any) in the environment."""
    extra = dict(env)
    if passphrase is not None:
        extra["PYBTC_WALLET_PASSPHRASE"] = passphrase
    result = subprocess.run(
        [str(PYBTC), "wallet", *args],
        cwd=cwd,
        env=child_env(**extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal: prompts read stdin, never /dev/tty
    )
    logger.info("pybtc wallet %s -> %d", " ".join(args[:2]), result.returncode)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, f"expected a refusal, got:\n{result.stdout}"
    assert message in result.stderr, result.stderr
    assert "txid" not in result.stdout


def field(output: str, name: str) -> str:
    """The value on the line `name  value` of a command's output."""
    match = re.search(rf"^{re.escape(name)}\s+(\S+)", output, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{output}"
    return match.group(1)


def new_wallet(home: Path, *args: str) -> str:
    """Make a regtest wallet in `home` (./wallet-regtest.json unless args say) -> its address."""
    home.mkdir(parents=True, exist_ok=True)
    return field(ok(wallet("new", "--network", "regtest", *args, cwd=home)), "address")


@pytest.fixture
def ledger(children: ChildProcesses, tmp_path: Path, redis_url: str) -> LedgerProcess:
    node = LedgerProcess(children, tmp_path / "node", redis_url=redis_url)
    node.start()
    return node


def mempool_count(ledger: LedgerProcess) -> int:
    count = get_json(f"{ledger.url}/mempool")["count"]
    assert isinstance(count, int)
    return count


def test_new_fund_send_confirm(ledger: LedgerProcess, tmp_path: Path) -> None:
    """Alice makes a wallet, is paid two block rewards, sends Bob 12.5 pyBTC; the transfer is
    pending, then mined, and both wallets' balances and histories show it."""
    alice_home, bob_home = tmp_path / "alice", tmp_path / "bob"
    alice = new_wallet(alice_home)
    alice_file = alice_home / "wallet-regtest.json"
    assert stat.S_IMODE(alice_file.stat().st_mode) == 0o600
    assert decrypt_key(read_key_file(alice_file), PASSPHRASE, network="regtest").address == alice
    assert ok(wallet("address", "--network", "regtest", cwd=alice_home)).strip() == alice

    bob_home.mkdir()
    bob_env = {"PYBTC_NETWORK": "regtest", "PYBTC_WALLET_FILE": str(bob_home / "bob.json")}
    bob = field(ok(wallet("new", cwd=tmp_path, **bob_env)), "address")
    assert (bob_home / "bob.json").is_file()
    assert ok(wallet("address", cwd=tmp_path, passphrase=None, **bob_env)).strip() == bob

    node = {"PYBTC_LEDGER_URL": ledger.url}
    before = ok(wallet("balance", "--network", "regtest", cwd=alice_home, **node))
    assert field(before, "confirmed") == "0.00000000"
    logger.info("mine two blocks to alice")
    mine(ledger.url, alice, 2)
    funded = ok(wallet("balance", "--network", "regtest", "--node", ledger.url, cwd=alice_home))
    assert field(funded, "confirmed") == format_amount(2 * SUBSIDY)
    assert field(funded, "next nonce") == "0"

    logger.info("alice sends bob 12.5 pyBTC")
    amount = 12 * COIN + COIN // 2
    sent = ok(wallet("send", bob, "12.5", "--yes", "--network", "regtest", cwd=alice_home, **node))
    assert field(sent, "send") == "12.50000000"
    assert field(sent, "fee") == "0.00001000"
    txid = field(sent, "txid")
    pending = get_json(f"{ledger.url}/tx/{txid}")
    assert pending["status"] == "pending"
    tx = pending["transaction"]
    assert (tx["sender"], tx["recipient"], tx["amount"], tx["fee"], tx["nonce"]) == (
        alice,
        bob,
        amount,
        FEE,
        0,
    )
    waiting = ok(wallet("balance", "--network", "regtest", cwd=alice_home, **node))
    assert field(waiting, "confirmed") == format_amount(2 * SUBSIDY)
    assert field(waiting, "unconfirmed") == format_amount(2 * SUBSIDY - amount - FEE)
    assert field(waiting, "next nonce") == "1"
    bob_pending = ok(wallet("history", cwd=tmp_path, passphrase=None, **bob_env, **node))
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d"
    assert re.search(
        rf"^pending\s+{when}\s+-\s+from {alice[:7]}…{alice[-5:]}\s+\+12\.50000000\s+-\s+-\s+"
        rf"{txid}$",
        bob_pending,
        re.MULTILINE,
    ), bob_pending

    logger.info("mine the transfer")
    mine(ledger.url, MINER.address)
    assert get_json(f"{ledger.url}/tx/{txid}")["status"] == "confirmed"
    height = get_json(f"{ledger.url}/tx/{txid}")["height"]
    alice_history = ok(wallet("history", "--network", "regtest", cwd=alice_home, **node))
    left = format_amount(2 * SUBSIDY - amount - FEE).replace(".", r"\.")
    assert re.search(
        rf"^confirmed\s+{when}\s+{height}\s+to {bob[:7]}…{bob[-5:]}\s+-12\.50001000\s+"
        rf"0\.00001000\s+{left}\s+{txid}$",
        alice_history,
        re.MULTILINE,
    ), alice_history
    assert alice_history.count("mining reward") == 2  # the two block rewards
    assert alice_history.count("+50.00000000") == 2
    bob_history = ok(wallet("history", bob, "--network", "regtest", cwd=tmp_path, **node))
    assert re.search(
        rf"^confirmed\s+{when}\s+{height}\s+from \S+\s+\+12\.50000000\s+-\s+12\.50000000\s+{txid}$",
        bob_history,
        re.M,
    ), bob_history

    alice_after = ok(wallet("balance", "--network", "regtest", cwd=alice_home, **node))
    assert field(alice_after, "confirmed") == format_amount(2 * SUBSIDY - amount - FEE)
    assert field(alice_after, "unconfirmed") == field(alice_after, "confirmed")
    bob_after = ok(wallet("balance", bob, "--network", "regtest", cwd=tmp_path, **node))
    assert field(bob_after, "confirmed") == "12.50000000"
    assert get_json(f"{ledger.url}/address/{alice}")["balance"] == 2 * SUBSIDY - amount - FEE
    assert get_json(f"{ledger.url}/address/{bob}")["balance"] == amount


def test_refused_sends_send_nothing(ledger: LedgerProcess, tmp_path: Path) -> None:
    """Every bad `send` exits non-zero with a message saying what is wrong, and the ledger's
    mempool is unchanged afterwards."""
    home = tmp_path / "alice"
    alice = new_wallet(home)
    bob = new_wallet(tmp_path / "bob")
    mine(ledger.url, alice)  # one block reward: 50 pyBTC
    typo = bob[:-1] + ("a" if bob[-1] != "a" else "b")
    node = {"PYBTC_LEDGER_URL": ledger.url}
    cases = [
        (["0"], {}, "amount '0': must be more than 0"),
        (["0.00000000"], {}, "must be more than 0"),
        (["-1"], {}, "amount '-1': cannot be negative"),
        (["1.000000001"], {}, "an amount has at most 8 decimal places"),
        (["lots"], {}, "an amount is digits with at most one decimal point"),
        (["1e3"], {}, "an amount is digits"),
        (["21000001"], {}, "an amount cannot exceed 21,000,000 pyBTC"),
        (["50"], {}, "not enough coins: 50.00000000 + fee 0.00001000 pyBTC is more than the "),
        (["1000"], {}, "this wallet can spend now"),
        (["1", "--fee", "-0.1"], {}, "fee '-0.1': cannot be negative"),
        (["1", "--fee", "0.000000001"], {}, "fee '0.000000001': an amount has at most 8"),
        (["1", "--fee", "0"], {}, "fee must be at least 1000 base units (fee-too-low)"),
        (["1"], {"passphrase": "wrong"}, "wrong passphrase, or the file was changed"),
        (["1"], {"to": typo}, "invalid recipient address: address checksum does not match"),
        (["1"], {"to": "P123"}, "invalid recipient address: an address has 34 characters"),
        (["1"], {"to": alice}, "the recipient is this wallet's own address; not sending"),
        (["1"], {"yes": False}, "Aborted!"),  # nothing on stdin to confirm with
        (["1"], {"yes": False, "stdin": "n\n"}, "Aborted!"),
    ]
    assert mempool_count(ledger) == 0
    for args, how, message in cases:
        command = ["send", str(how.get("to", bob)), *args, "--network", "regtest"]
        if how.get("yes", True):
            command.append("--yes")
        result = wallet(
            *command,
            cwd=home,
            passphrase=str(how.get("passphrase", PASSPHRASE)),
            stdin=str(how.get("stdin", "")),
            **node,
        )
        refused(result, message)
        assert mempool_count(ledger) == 0, f"{command} sent something"
    assert get_json(f"{ledger.url}/address/{alice}")["next_nonce"] == 0

    # Sending everything but the fee is allowed: the largest amount the wallet can send.
    sent = ok(wallet("send", bob, "49.99999", "--yes", "--network", "regtest", cwd=home, **node))
    assert get_json(f"{ledger.url}/tx/{field(sent, 'txid')}")["status"] == "pending"
    assert mempool_count(ledger) == 1


def test_send_checks_the_ledgers_spendable_figure(ledger: LedgerProcess, tmp_path: Path) -> None:
    """Coins on their way in cannot be spent yet. Alice (50 pyBTC) has 30 pending from Bob and
    40 pending to Bob: her balance including pending is 40, but what the ledger will accept is
    its `spendable`, what she has left of her confirmed coins (about 10). `balance` shows that
    figure and `send` refuses 20 with it, before signing; the mempool keeps just the two. The
    most it allows (spendable less the fee) is accepted by the ledger."""
    alice_home, bob_home = tmp_path / "alice", tmp_path / "bob"
    alice, bob = new_wallet(alice_home), new_wallet(bob_home)
    mine(ledger.url, alice)
    mine(ledger.url, bob)
    node = {"PYBTC_LEDGER_URL": ledger.url}
    ok(wallet("send", alice, "30", "--yes", "--network", "regtest", cwd=bob_home, **node))
    ok(wallet("send", bob, "40", "--yes", "--network", "regtest", cwd=alice_home, **node))
    balance = ok(wallet("balance", "--network", "regtest", cwd=alice_home, **node))
    spendable = SUBSIDY - 40 * COIN - FEE
    assert field(balance, "unconfirmed") == format_amount(spendable + 30 * COIN)
    assert field(balance, "spendable") == format_amount(spendable)
    assert get_json(f"{ledger.url}/address/{alice}")["spendable"] == spendable
    assert mempool_count(ledger) == 2
    result = wallet("send", bob, "20", "--yes", "--network", "regtest", cwd=alice_home, **node)
    refused(result, f"is more than the {format_amount(spendable)} pyBTC this wallet can spend")
    assert mempool_count(ledger) == 2
    most = format_amount(spendable - FEE)
    ok(wallet("send", bob, most, "--yes", "--network", "regtest", cwd=alice_home, **node))
    assert mempool_count(ledger) == 3


def test_history_tells_a_dropped_transaction_and_why(ledger: LedgerProcess, tmp_path: Path) -> None:
    """A pending transfer replaced by one with its nonce and a higher fee leaves the mempool
    without a block: `history` lists it as dropped, with the reason in words, beside the
    replacement (pending, its fee shown)."""
    home = tmp_path / "alice"
    alice = new_wallet(home)
    bob = new_wallet(tmp_path / "bob")
    mine(ledger.url, alice)
    key = decrypt_key(read_key_file(home / "wallet-regtest.json"), PASSPHRASE, network="regtest")
    first, second = (
        Transaction.create(
            key, bob, COIN, fee=fee, nonce=0, timestamp=0, network_id=REGTEST.network_id
        )
        for fee in (FEE, 5 * FEE)
    )
    for tx in (first, second):
        reply = http("POST", f"{ledger.url}/transactions/new", json_body=tx.to_dict())
        assert reply.status == 201, reply.text
    node = {"PYBTC_LEDGER_URL": ledger.url}
    history = ok(wallet("history", "--network", "regtest", cwd=home, **node))
    lines = history.splitlines()
    [dropped] = [n for n, line in enumerate(lines) if line.endswith(first.txid)]
    assert lines[dropped].startswith("dropped ")
    assert "-1.00001000" in lines[dropped]
    assert lines[dropped + 1].strip() == (
        "dropped: replaced by a transaction with the same nonce and a higher fee"
    )
    [pending] = [line for line in lines if line.endswith(second.txid)]
    assert pending.split()[0] == "pending"
    assert "-1.00005000" in pending
    assert "0.00005000" in pending


def test_wrong_network_and_unreachable_node(ledger: LedgerProcess, tmp_path: Path) -> None:
    """A node that is down, a node of another network, a wallet of another network: each is one
    clear line, no traceback, and nothing is sent."""
    home = tmp_path / "alice"
    new_wallet(home)
    bob = new_wallet(tmp_path / "bob")
    down = f"http://127.0.0.1:{free_port()}"
    for command in (["balance"], ["history"], ["send", bob, "1", "--yes"]):
        result = wallet(*command, "--network", "regtest", "--node", down, cwd=home)
        refused(result, f"cannot reach the node at {down}: Connection refused")

    devnet_home = tmp_path / "devnet"
    devnet_home.mkdir()
    ok(wallet("new", cwd=devnet_home))  # the default network is devnet
    assert (devnet_home / "wallet-devnet.json").is_file()
    result = wallet("balance", "--node", ledger.url, cwd=devnet_home)
    refused(result, f"the node at {ledger.url} runs regtest, not devnet (use --network regtest")
    result = wallet("address", "--network", "regtest", cwd=devnet_home)
    refused(result, "no wallet file at wallet-regtest.json (make one with `pybtc wallet new`")
    theirs = str(home / "wallet-regtest.json")
    result = wallet("send", bob, "1", "--yes", "--file", theirs, "--node", ledger.url, cwd=home)
    refused(result, "is a regtest wallet, not devnet (use --network regtest)")
    result = wallet("balance", "--network", "regtest", "--node", "ftp://example.org", cwd=home)
    refused(result, "--node or PYBTC_LEDGER_URL: 'ftp://example.org' is not an http:// or")
    assert mempool_count(ledger) == 0


def test_new_never_overwrites_and_needs_a_passphrase(tmp_path: Path) -> None:
    """`new` refuses an empty passphrase (from the variable or the prompt) and an existing
    file; at the prompt the passphrase is typed twice and must match."""
    refused(wallet("new", cwd=tmp_path, passphrase=""), "the passphrase is empty")
    refused(wallet("new", cwd=tmp_path, passphrase=None, stdin="\n\n"), "the passphrase is empty")
    assert list(tmp_path.iterdir()) == []

    typed = wallet("new", cwd=tmp_path, passphrase=None, stdin="first try\nsecond try\n")
    assert "do not match" in typed.stderr + typed.stdout
    assert typed.returncode != 0
    assert list(tmp_path.iterdir()) == []

    made = ok(wallet("new", cwd=tmp_path, passphrase=None, stdin="s3cret \u00e9\ns3cret \u00e9\n"))
    path = tmp_path / "wallet-devnet.json"
    text = path.read_text()
    doc = json.loads(text)
    assert doc["address"] == field(made, "address")
    assert doc["kdf"]["iterations"] == 600_000
    assert str(path.resolve()) in made
    assert decrypt_key(doc, "s3cret \u00e9", network="devnet").address == doc["address"]

    refused(wallet("new", cwd=tmp_path), "wallet-devnet.json exists already; not overwriting")
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wallet-devnet.json"]


def test_the_wallet_finds_the_node_by_the_nodes_settings(
    ledger: LedgerProcess, tmp_path: Path
) -> None:
    """With only the node's own settings (PYBTC_LEDGER_PORT, or a port and PYBTC_PORT_OFFSET),
    `pybtc wallet balance` talks to that ledger, not to whatever listens on 5000; --help says
    which URL it will use and why."""
    home = tmp_path / "alice"
    alice = new_wallet(home)
    mine(ledger.url, alice)
    regtest = {"PYBTC_NETWORK": "regtest"}
    by_port = {"PYBTC_LEDGER_PORT": str(ledger.port)} | regtest
    assert field(ok(wallet("balance", cwd=home, **by_port)), "confirmed") == format_amount(
        REGTEST.subsidy(1)
    )
    shifted = {"PYBTC_LEDGER_PORT": str(ledger.port - 7), "PYBTC_PORT_OFFSET": "7"} | regtest
    assert field(ok(wallet("balance", alice, cwd=tmp_path, **shifted)), "confirmed") == (
        format_amount(REGTEST.subsidy(1))
    )
    shown = " ".join(ok(wallet("balance", "--help", cwd=home, **shifted)).split())
    assert f"[default: {ledger.url}, from PYBTC_HOST, PYBTC_LEDGER_PORT and PYBTC_PORT_OFFSET]" in (
        shown
    )
    refused(wallet("balance", cwd=home, PYBTC_LEDGER_PORT="99999"), "error: PYBTC_LEDGER_PORT=")
