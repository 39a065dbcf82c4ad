"""Ledger restarts: what the ledger acknowledged survives a clean stop and a kill -9.

The ledger runs as a real process (`python -m services.node`, regtest, its own SQLite file and
port) and is driven over HTTP the way the miner and the wallets drive it.

- `test_clean_restart_keeps_chain_and_mempool`: mine, send (some transfers confirmed, some left
  pending), stop with SIGTERM, start again on the same data: tip, height, balances and the
  pending transfers are all still there, and the pending ones are mined after the restart.
- `test_kill9_loop`: ~15 times, a burst of concurrent requests (two miners, one signed-transfer
  sender per key, a forker that builds competing branches to cause reorgs) is cut by SIGKILL at
  a random moment. After each kill the SQLite file, opened read-only, must pass
  `PRAGMA integrity_check` and be self-consistent (the tip tops `main_chain`, the accounts equal
  a replay of the main chain from empty state, undo records and indexes match the main chain,
  nothing acknowledged is missing). After each restart the tip is the stored block with the most
  work (an interrupted tip move is finished), every transfer answered 201 is confirmed or
  pending, the served balances equal a replay of `GET /chain`, and the ledger accepts a block.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import signal
import sqlite3
import time
from collections.abc import Coroutine, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pybtc import COIN, REGTEST, Account, Block, Transaction, connect_block
from pybtc.mining import build_block, mine_block
from tests.chainutil import test_key
from tests.functional.conftest import ChildProcesses, LedgerProcess, get_json, mine, send

logger = logging.getLogger(__name__)

ITERATIONS = 15
SENDERS = [test_key(i) for i in range(4)]
SINK = test_key(5)  # only receives
FORKER = test_key(9)  # paid by the competing branches' coinbases only
RECIPIENTS = [k.address for k in SENDERS] + [SINK.address]


def replay(blocks: Iterable[Block]) -> dict[str, Account]:
    """Account state rebuilt from empty by connecting `blocks` in order (zero accounts left out)."""
    state: dict[str, Account] = {}

    def lookup(address: str) -> Account:
        return state.get(address, Account())

    for block in blocks:
        changed, _ = connect_block(block, lookup, REGTEST)
        state.update(changed)
    return {address: acct for address, acct in state.items() if acct != Account()}


def snapshot(url: str, addresses: Iterable[str]) -> dict[str, Any]:
    """What a user of the ledger sees: status, accounts, mempool, and the chain's hashes."""
    status = get_json(f"{url}/status")
    return {
        "status": {k: status[k] for k in ("tip", "height", "chain_work", "mempool_size")},
        "accounts": {a: get_json(f"{url}/address/{a}") for a in addresses},
        "mempool": [tx["txid"] for tx in get_json(f"{url}/mempool")["transactions"]],
        "chain": [b["hash"] for b in get_json(f"{url}/chain")["chain"]],
    }


def test_clean_restart_keeps_chain_and_mempool(
    children: ChildProcesses, tmp_path: Path, redis_url: str
) -> None:
    """A SIGTERM and a restart keep the chain, the balances and the pending transactions.

    The miner key mines 3 blocks; two transfers are mined into a fourth; two more are answered
    201 and left pending. The ledger (with the session's Redis as its bus) is stopped with
    SIGTERM and must exit 0; started again on the same data dir it must show the same /status,
    the same /address answers for every key, the same /mempool and /chain; then the next block
    mines the two pending transfers.
    """
    miner, alice, bob, carol = (test_key(i) for i in range(4))
    addresses = [k.address for k in (miner, alice, bob, carol)]
    ledger = LedgerProcess(children, tmp_path / "node", redis_url=redis_url)
    ledger.start()
    url = ledger.url

    logger.info("mine 3 blocks, then two transfers into block 5")
    mine(url, miner.address, 3)
    confirmed = [
        send(url, miner, alice.address, 5 * COIN),
        send(url, miner, bob.address, 3 * COIN, fee=2_000),
    ]
    mine(url, miner.address)
    logger.info("two more transfers, left pending")
    pending = [
        send(url, miner, carol.address, 1 * COIN),
        send(url, alice, bob.address, COIN // 2, fee=1_500),
    ]
    for tx in confirmed:
        assert get_json(f"{url}/tx/{tx.txid}")["status"] == "confirmed"
    for tx in pending:
        assert get_json(f"{url}/tx/{tx.txid}")["status"] == "pending"
    before = snapshot(url, addresses)
    assert before["status"]["height"] == 5
    assert before["mempool"] == [tx.txid for tx in sorted(pending, key=lambda t: -t.fee)]
    assert before["accounts"][alice.address]["balance"] == 5 * COIN
    assert before["accounts"][alice.address]["unconfirmed_balance"] == 5 * COIN - COIN // 2 - 1_500

    logger.info("stop with SIGTERM and start again")
    assert ledger.stop() == 0, ledger.log()
    assert "ledger closed" in ledger.log()
    ledger.start()
    after = snapshot(url, addresses)
    assert after == before, "the restart changed what the ledger shows"
    for tx in pending:
        assert get_json(f"{url}/tx/{tx.txid}")["status"] == "pending"

    logger.info("the pending transfers are mined after the restart")
    mine(url, miner.address)
    for tx in pending:
        assert get_json(f"{url}/tx/{tx.txid}")["status"] == "confirmed"
    assert get_json(f"{url}/address/{bob.address}")["balance"] == 3 * COIN + COIN // 2
    assert get_json(f"{url}/address/{carol.address}")["balance"] == 1 * COIN
    assert get_json(f"{url}/mempool")["count"] == 0
    assert ledger.stop() == 0, ledger.log()


# -- the kill -9 loop ------------------------------------------------------------------------


@dataclass
class Tally:
    """What the ledger acknowledged across the loop, and what happened to it."""

    txs: dict[str, Transaction] = field(default_factory=dict)
    """Transfers answered 201."""
    blocks: set[str] = field(default_factory=set)
    """Blocks answered 201 (main chain or not)."""
    kills: int = 0
    resumes: int = 0
    """Restarts that found a stored block with more work than the tip (a cut tip move)."""


@dataclass(frozen=True)
class DiskState:
    """The ledger's SQLite file as a dead process left it."""

    tip: str
    main: list[Block]
    heights: list[int]
    works: dict[str, int]
    best_valid: str
    accounts: dict[str, Account]
    chain_txids: set[str]
    undo: set[str]
    mempool: list[Transaction]


def read_disk_state(path: Path) -> DiskState:
    """Open the file read-only, check its integrity, and read what the checks need."""
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)], f"PRAGMA integrity_check: {integrity}"
        tip = db.execute("SELECT value FROM meta WHERE key = 'tip'").fetchone()[0]
        rows = db.execute(
            "SELECT m.height, m.hash, b.body FROM main_chain m LEFT JOIN blocks b USING (hash) "
            "ORDER BY m.height"
        ).fetchall()
        assert all(body is not None for _, _, body in rows), "a main_chain row has no block"
        works = {h: int(w, 16) for h, w in db.execute("SELECT hash, chain_work FROM blocks")}
        best_valid = db.execute(
            "SELECT hash FROM blocks WHERE invalid_reason IS NULL "
            "ORDER BY chain_work DESC, seq ASC LIMIT 1"
        ).fetchone()[0]
        accounts = {
            a: Account(b, n)
            for a, b, n in db.execute("SELECT address, balance, nonce FROM accounts")
        }
        chain_txids = {r[0] for r in db.execute("SELECT txid FROM chain_txs")}
        undo = {r[0] for r in db.execute("SELECT block_hash FROM undo")}
        mempool = [
            Transaction.from_dict(json.loads(r[0]))
            for r in db.execute("SELECT body FROM mempool ORDER BY sender, nonce")
        ]
    main = [Block.from_dict(json.loads(body)) for _, _, body in rows]
    return DiskState(
        tip,
        main,
        [h for h, _, _ in rows],
        works,
        best_valid,
        accounts,
        chain_txids,
        undo,
        mempool,
    )


def check_disk_state(disk: DiskState, tally: Tally) -> None:
    """The file is one consistent state that holds everything that was acknowledged."""
    main = disk.main
    assert disk.heights == list(range(1, len(main) + 1)), "main_chain heights have a gap"
    assert main[0].hash == REGTEST.genesis.hash
    for parent, child in itertools.pairwise(main):
        assert child.previous_hash == parent.hash, f"main_chain breaks at height {child.index}"
    assert disk.tip == main[-1].hash, "the stored tip is not the top of main_chain"
    assert disk.accounts == replay(main), "accounts differ from a replay of the main chain"
    assert disk.undo == {b.hash for b in main}, "undo records do not match the main chain"
    chain_txids = {tx.txid for b in main for tx in b.transactions}
    assert disk.chain_txids == chain_txids, "chain_txs does not index the main chain"
    pending = {tx.txid for tx in disk.mempool}
    assert not pending & chain_txids, "a confirmed transaction is still in the mempool"
    by_sender: dict[str, list[Transaction]] = {}
    for tx in disk.mempool:
        by_sender.setdefault(tx.sender, []).append(tx)
    for sender, txs in by_sender.items():
        account = disk.accounts.get(sender, Account())
        nonces = [tx.nonce for tx in txs]
        assert nonces == list(range(account.nonce, account.nonce + len(txs))), (sender, nonces)
        assert sum(tx.amount + tx.fee for tx in txs) <= account.balance, sender
    missing_blocks = tally.blocks - disk.works.keys()
    assert not missing_blocks, f"blocks answered 201 are not stored: {sorted(missing_blocks)}"
    lost = tally.txs.keys() - chain_txids - pending
    assert not lost, f"transactions answered 201 are lost: {sorted(lost)}"


def check_restarted(url: str, disk: DiskState, tally: Tally) -> tuple[int, int]:
    """The restarted ledger serves the best stored chain, its state, and everything acked;
    returns how many acknowledged transfers are (confirmed, pending)."""
    status = get_json(f"{url}/status")
    assert status["tip"] == disk.best_valid, (
        f"restarted on tip {status['tip'][:16]}, the best stored block is {disk.best_valid[:16]}"
    )
    chain = [Block.from_dict(b) for b in get_json(f"{url}/chain")["chain"]]
    assert chain[-1].hash == status["tip"]
    assert len(chain) == status["height"]
    state = replay(chain)
    for address in sorted(state.keys() | set(RECIPIENTS)):
        served = get_json(f"{url}/address/{address}")
        expected = state.get(address, Account())
        assert (served["balance"], served["nonce"]) == (expected.balance, expected.nonce), address
    mempool = get_json(f"{url}/mempool?limit=500")
    assert mempool["count"] <= 500
    confirmed = {tx.txid for b in chain for tx in b.transactions}
    pending = {tx["txid"] for tx in mempool["transactions"]}
    lost = tally.txs.keys() - confirmed - pending
    assert not lost, f"after the restart, transactions answered 201 are lost: {sorted(lost)}"
    return len(tally.txs.keys() & confirmed), len(tally.txs.keys() & pending)


class Burst:
    """Concurrent clients of one ledger: miners, one sender per key, and a forker."""

    def __init__(self, session: aiohttp.ClientSession, rng: random.Random, tally: Tally) -> None:
        self.session = session
        self.rng = rng
        self.tally = tally

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, path, json=body) as response:
            return response.status, await response.json()

    async def submit(self, block: Block) -> bool:
        """True if stored; False if the chain outran it (409 `low-work`: not stored)."""
        status, body = await self.call("POST", "/mining/submit", block.to_dict())
        if status == 409 and body.get("reason") == "low-work":
            return False
        assert status == 201, body
        self.tally.blocks.add(block.hash)
        return True

    async def miner(self) -> None:
        """Template, solve, submit, forever; two of these race, so some blocks go stale."""
        while True:
            address = self.rng.choice(SENDERS).address
            status, body = await self.call("GET", f"/mining/template?address={address}")
            assert status == 200, body
            block = mine_block(Block.from_dict(body["block"]), start=self.rng.randrange(2**32))
            assert block is not None
            await self.submit(block)
            await asyncio.sleep(self.rng.uniform(0.01, 0.05))

    async def sender(self, index: int) -> None:
        """Signed transfers from one key, each with its next nonce, forever."""
        key = SENDERS[index]
        while True:
            status, info = await self.call("GET", f"/address/{key.address}")
            assert status == 200, info
            tx = Transaction.create(
                key,
                self.rng.choice([a for a in RECIPIENTS if a != key.address]),
                self.rng.randint(1, 100_000),
                fee=self.rng.choice((1_000, 1_500, 2_000)),
                nonce=info["next_nonce"],
                timestamp=int(time.time()),
                network_id=REGTEST.network_id,
            )
            status, body = await self.call("POST", "/transactions/new", tx.to_dict())
            assert status == 201, body
            self.tally.txs[tx.txid] = tx
            await asyncio.sleep(self.rng.uniform(0.0, 0.02))

    async def forker(self) -> None:
        """Two empty blocks on the tip's parent: a sibling of the tip (as much work: stored),
        then one more: a reorg (with transfers re-queued) unless the miners extend the tip
        first; the race is lost when the chain outran a block (409 `low-work`). A deeper fork
        cannot be handed in through /mining/submit: its first block has less work than the
        tip, and nobody asked for it."""
        while True:
            await asyncio.sleep(self.rng.uniform(0.03, 0.1))
            status, tip = await self.call("GET", "/status")
            assert status == 200, tip
            depth = 1
            if tip["height"] - depth < 2:
                continue
            status, view = await self.call("GET", f"/blocks/height/{tip['height'] - depth}")
            assert status == 200, view
            parent = Block.from_dict(view["block"]).header
            start_time = max(tip["tip_time"], parent.timestamp) + 1
            for i in range(depth + 1):
                template = build_block(
                    REGTEST,
                    parent,
                    bits=parent.bits,
                    transactions=(),
                    miner_address=FORKER.address,
                    timestamp=start_time + i,
                )
                block = mine_block(template, start=self.rng.randrange(2**32))
                assert block is not None
                if not await self.submit(block):
                    break
                parent = block.header


async def _until_killed(job: Coroutine[Any, Any, None], killed: asyncio.Event) -> None:
    """Run a client until its connection dies; dying before the kill is a failure."""
    try:
        await job
    except (aiohttp.ClientError, TimeoutError) as exc:
        if not killed.is_set():
            raise AssertionError(f"the ledger failed before it was killed: {exc!r}") from exc


async def burst_then_kill(ledger: LedgerProcess, rng: random.Random, tally: Tally) -> None:
    """Start every client, SIGKILL the ledger after a random delay, collect the clients."""
    killed = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url=ledger.url, timeout=timeout) as session:
        burst = Burst(session, rng, tally)
        jobs = [burst.miner(), burst.miner(), burst.forker()]
        jobs += [burst.sender(i) for i in range(len(SENDERS))]
        tasks = [asyncio.create_task(_until_killed(job, killed)) for job in jobs]
        await asyncio.sleep(rng.uniform(0.05, 0.6))
        code = ledger.kill()  # no await between the kill and the event: clients see both
        killed.set()
        tally.kills += 1
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert code == -signal.SIGKILL, f"the ledger had exited by itself ({code}):\n{ledger.log()}"
    for result in results:  # client failures, not the kill's connection errors
        if isinstance(result, BaseException):
            raise result


@pytest.mark.slow
async def test_kill9_loop(children: ChildProcesses, tmp_path: Path) -> None:
    """SIGKILL in the middle of concurrent mining, transfers and reorgs loses nothing.

    Setup: four sender keys mine two blocks each (plenty of coins for the whole loop). Then
    ITERATIONS times: a burst (see `Burst`) is cut by SIGKILL after 50–600 ms; the SQLite file,
    opened read-only, is checked (`check_disk_state`); the ledger is restarted on it and checked
    over HTTP (`check_restarted`) and must accept a new block as its tip. The ledger runs
    without a bus: the bus is a hint and not part of crash safety.
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    logger.info("kill -9 loop seed=%d", seed)
    tally = Tally()
    ledger = LedgerProcess(children, tmp_path / "node")
    ledger.start()
    for key in SENDERS:
        mine(ledger.url, key.address, 2)
    # a sender could only run dry after ~100,000 transfers of the largest size
    assert get_json(f"{ledger.url}/address/{SENDERS[0].address}")["balance"] == 100 * COIN

    for iteration in range(1, ITERATIONS + 1):
        await burst_then_kill(ledger, rng, tally)
        disk = read_disk_state(ledger.db_path)
        check_disk_state(disk, tally)
        if disk.best_valid != disk.tip:
            assert disk.works[disk.best_valid] > disk.works[disk.tip]
            tally.resumes += 1
        logger.info(
            "iteration=%d killed at height=%d blocks=%d txs_acked=%d mempool=%d resume=%s",
            iteration,
            len(disk.main),
            len(disk.works),
            len(tally.txs),
            len(disk.mempool),
            disk.best_valid != disk.tip,
        )
        ledger.start()
        confirmed, pending = check_restarted(ledger.url, disk, tally)
        height = get_json(f"{ledger.url}/status")["height"]
        mine(ledger.url, SINK.address)
        assert get_json(f"{ledger.url}/status")["height"] == height + 1

    height = get_json(f"{ledger.url}/status")["height"]
    reorgs = get_json(f"{ledger.url}/reorgs?limit=500")["reorgs"]
    assert ledger.stop() == 0, ledger.log()
    stored = len(read_disk_state(ledger.db_path).works)
    summary = (
        f"kill -9 loop: seed={seed} iterations={ITERATIONS} kills={tally.kills} "
        f"resumed_tip_moves={tally.resumes} reorgs={len(reorgs)} height={height} "
        f"blocks_stored={stored} blocks_acked={len(tally.blocks)} "
        f"txs_acknowledged={len(tally.txs)} at_last_restart: confirmed={confirmed} "
        f"pending={pending} lost=0"
    )
    logger.info("%s", summary)
    print(summary)
