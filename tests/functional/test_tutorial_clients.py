"""The tutorial's own programs pointed at a pyBTC ledger: its Block Scan page and its wallet site.

`seed_scan.py` and `seed_wallet.py` (the shared `reference/` folder beside this repo) are the
tutorial's Flask sites, reconstructed faithfully: they read `GET /chain` with requests and build
their pages with pandas. pyBTC keeps the tutorial's HTTP contract, so they must keep working
unchanged. They run as subprocesses with the Python of a separate virtualenv holding flask,
requests and pandas (not pyBTC dependencies, so never in `.venv`): `.venv-reference/` at the
repo root, built once and reused while its imports work.

Each test starts a real regtest ledger, mines blocks to a known key, sends one signed transfer
to a second key and mines it, then starts one tutorial site against the ledger and reads its
HTML the way a browser would.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from pybtc import COIN
from tests.chainutil import test_key
from tests.functional.conftest import (
    ChildProcesses,
    LedgerProcess,
    child_env,
    free_port,
    get_json,
    http,
    mine,
    send,
    wait_for,
)
from tests.reference import REFERENCE_DIR, reference_venv

logger = logging.getLogger(__name__)


MINER, ALICE, NOBODY = test_key(0), test_key(1), test_key(7)
TRANSFER = 7 * COIN
FEE = 1_000


# -- the reference programs and their virtualenv ---------------------------------------------


def reference_script(name: str) -> Path:
    """A tutorial program from the shared reference folder; fail (not skip) when it is absent."""
    script = REFERENCE_DIR / name
    if not script.is_file():
        pytest.fail(
            f"the tutorial's reference programs are missing: expected {script} "
            "(the shared/ folder must sit beside the repository, as in CI)"
        )
    return script


def reference_python() -> Path:
    python, error = reference_venv()
    if python is None:
        pytest.fail(f"cannot build the tutorial's virtualenv: {error}")
    return python


def start_site(children: ChildProcesses, script: Path, ledger: LedgerProcess) -> str:
    """Run a tutorial site (`--node <ledger> --port <free>`) and return its URL once it answers."""
    port = free_port()
    log = ledger.data_dir / f"{script.stem}.log"
    proc = children.spawn(
        [str(reference_python()), str(script), "--node", ledger.url, "--port", str(port)],
        env=child_env(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost"),
        log_path=log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/", proc, log, timeout=60)
    return url


# -- the chain the tutorial's programs look at -----------------------------------------------


def start_funded_ledger(children: ChildProcesses, data_dir: Path) -> LedgerProcess:
    """A regtest ledger with 3 blocks to MINER and a signed MINER -> ALICE transfer mined."""
    ledger = LedgerProcess(children, data_dir)
    ledger.start()
    logger.info("mine 3 blocks to the miner, send %d units to alice, mine it", TRANSFER)
    mine(ledger.url, MINER.address, 3)
    tx = send(ledger.url, MINER, ALICE.address, TRANSFER, fee=FEE)
    mine(ledger.url, MINER.address)
    assert get_json(f"{ledger.url}/tx/{tx.txid}")["status"] == "confirmed"
    return ledger


SCAN_ROW = re.compile(
    r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td[^>]*>(.*?)</td>\s*</tr>",
    re.DOTALL,
)


def test_block_scan_page_shows_pybtc_chain(children: ChildProcesses, tmp_path: Path) -> None:
    """The tutorial's Block Scan page lists pyBTC's blocks exactly as `GET /chain` has them.

    `seed_scan.py` renders one table row per block: timestamp, previous_hash, nonce and the
    block's transactions (a pandas cell, printed as a Python list of dicts and HTML-escaped).
    Every row must match the ledger's block at that height, so every block hash but the tip's
    is on the page (as its child's previous_hash), and so is every transaction field.
    """
    script = reference_script("seed_scan.py")
    ledger = start_funded_ledger(children, tmp_path / "node")
    chain = get_json(f"{ledger.url}/chain")["chain"]
    assert len(chain) == 5

    scan_url = start_site(children, script, ledger)
    page = http("GET", f"{scan_url}/")
    assert page.status == 200, page.text[:1000]
    assert "pyBTC Block Scan" in page.text
    rows = [tuple(html.unescape(cell) for cell in row) for row in SCAN_ROW.findall(page.text)]
    logger.info("the scan page shows %d rows for %d blocks", len(rows), len(chain))
    assert len(rows) == len(chain)
    for row, block in zip(rows, chain, strict=True):
        timestamp, previous_hash, nonce, transactions = row
        assert (timestamp, previous_hash, nonce) == (
            str(block["timestamp"]),
            block["previous_hash"],
            str(block["nonce"]),
        ), f"row of block {block['index']}"
        assert transactions == str(block["transactions"]), f"transactions of {block['index']}"
    for parent, child in itertools.pairwise(chain):
        assert parent["hash"] == child["previous_hash"]
        assert parent["hash"] in page.text
    transfer = chain[-1]["transactions"][1]
    for value in (
        transfer["txid"],
        transfer["sender"],
        transfer["recipient"],
        transfer["signature"],
    ):
        assert value in page.text
    assert str(TRANSFER) in page.text


def tutorial_balance(chain: list[dict[str, Any]], address: str) -> int:
    """The wallet site's arithmetic: amounts received minus amounts sent (fees not counted)."""
    txs = [tx for block in chain for tx in block["transactions"]]
    received = sum(tx["amount"] for tx in txs if tx["recipient"] == address)
    sent = sum(tx["amount"] for tx in txs if tx["sender"] == address)
    return received - sent


def shown_balance(page: str) -> float:
    """The number on the wallet page (pandas prints it as a float: `700000000.0`)."""
    found = re.search(r"내 지갑 잔액 : ([^<]*?)pyBTC", page)
    assert found, f"no balance on the wallet page:\n{page[:1000]}"
    return float(found.group(1))


def test_wallet_site_shows_balance_and_cannot_send_unsigned(
    children: ChildProcesses, tmp_path: Path
) -> None:
    """The tutorial's wallet shows pyBTC balances, and its unsigned send form moves nothing.

    Log in (POST / with `wallet_id`) as ALICE, who only received coins: the page shows her
    pyBTC balance in base units. Log in as the miner: the page shows received - sent as the
    tutorial computes it, which differs from pyBTC's balance by the fee the miner paid (the
    tutorial has no fees). An address that never appeared is refused as in the tutorial. Then
    the send form (POST /wallet, sender/recipient/amount, no signature) says "sent", but the
    ledger refused it: no balance or mempool changed, and GET /rejections lists a
    `signature-required` rejection.
    """
    script = reference_script("seed_wallet.py")
    ledger = start_funded_ledger(children, tmp_path / "node")
    chain = get_json(f"{ledger.url}/chain")["chain"]
    wallet_url = start_site(children, script, ledger)

    logger.info("log in as alice (only received coins)")
    page = http("POST", f"{wallet_url}/", form={"wallet_id": ALICE.address})
    assert page.status == 200, page.text[:1000]
    assert f"내 지갑 주소 : {ALICE.address}" in page.text
    alice = get_json(f"{ledger.url}/address/{ALICE.address}")
    assert alice["balance"] == TRANSFER == tutorial_balance(chain, ALICE.address)
    assert shown_balance(page.text) == alice["balance"]

    logger.info("log in as the miner (mined 4 blocks, sent one transfer)")
    page = http("POST", f"{wallet_url}/", form={"wallet_id": MINER.address})
    assert page.status == 200, page.text[:1000]
    miner = get_json(f"{ledger.url}/address/{MINER.address}")
    assert shown_balance(page.text) == tutorial_balance(chain, MINER.address)
    assert tutorial_balance(chain, MINER.address) - miner["balance"] == FEE

    page = http("POST", f"{wallet_url}/", form={"wallet_id": NOBODY.address})
    assert page.text == "잘못된 지갑 주소입니다!"

    logger.info("the tutorial's unsigned send form: alice -> miner, 1 pyBTC")
    before = [get_json(f"{ledger.url}/address/{a}") for a in (ALICE.address, MINER.address)]
    status_before = get_json(f"{ledger.url}/status")
    page = http(
        "POST",
        f"{wallet_url}/wallet",
        form={"send_from": ALICE.address, "send_target": MINER.address, "send_value": str(COIN)},
    )
    assert page.status == 200, page.text[:1000]
    assert page.text == "전송 완료!"  # the tutorial says "sent" whatever the node answered
    after = [get_json(f"{ledger.url}/address/{a}") for a in (ALICE.address, MINER.address)]
    assert after == before, "an unsigned transaction moved coins"
    status_after = get_json(f"{ledger.url}/status")
    assert (status_after["tip"], status_after["mempool_size"]) == (status_before["tip"], 0)
    # the ledger's answer to that body, asked directly: 400 signature-required
    unsigned = {"sender": ALICE.address, "recipient": MINER.address, "amount": COIN}
    reply = http("POST", f"{ledger.url}/transactions/new", json_body=unsigned)
    assert (reply.status, reply.json()["reason"]) == (400, "signature-required"), reply.text
    rejections = get_json(f"{ledger.url}/rejections")["rejections"]
    assert any(r["kind"] == "tx" and r["reason"] == "signature-required" for r in rejections), (
        f"GET /rejections does not list the unsigned transaction: {rejections}"
    )
