"""`pybtc.mempool`: the one mining order, the projected blocks, the fee to reach them.

The order is checked three ways: worked examples, a property test against a plain reference
(scan every sender's next transaction, take the best), and a property test that the ledger's
real block template (`Ledger.template` over a real SQLite store) takes exactly its first
`capacity` transactions.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybtc import REGTEST, Transaction
from pybtc.errors import ValidationError
from pybtc.mempool import (
    BlockSummary,
    fee_to_reach,
    mining_order,
    place_newest,
    projected_block,
    projected_blocks,
    summarize,
)
from pybtc.mining import build_block, mine_block
from services.common.web import ServiceError
from services.node.ledger import Ledger, MempoolPolicy
from services.node.store import Store
from tests.chainutil import test_key

ADDRESSES = [test_key(i).address for i in range(6)]
RECIPIENT = test_key(99).address


@dataclass(frozen=True)
class Item:
    """A pending transaction as the order sees it."""

    sender: str
    nonce: int
    fee: int
    amount: int = 1
    name: str = ""


def reference_order(pending: list[Item]) -> list[Item]:
    """The rule as the contract says it, slowly: each sender's lowest pending nonce is its next;
    of those, the highest fee, then the earliest arrival."""
    left = list(pending)
    out = []
    while left:
        heads = [
            (i, item)
            for i, item in enumerate(left)
            if item.nonce == min(o.nonce for o in left if o.sender == item.sender)
        ]
        arrival = {id(item): pending.index(item) for _, item in heads}
        _, best = min(heads, key=lambda h: (-h[1].fee, arrival[id(h[1])]))
        left.remove(best)
        out.append(best)
    return out


@st.composite
def pools(draw: st.DrawFn, max_senders: int = 5, max_chain: int = 5) -> list[Item]:
    """Pools of pending chains (each sender's nonces contiguous) in a shuffled arrival order
    in which each sender's chain may arrive in any order (replacements, reorgs re-queue)."""
    items = []
    for sender in ADDRESSES[: draw(st.integers(1, max_senders))]:
        start = draw(st.integers(0, 3))
        fees = draw(st.lists(st.integers(1_000, 1_010), min_size=1, max_size=max_chain))
        items += [Item(sender, start + i, fee) for i, fee in enumerate(fees)]
    return draw(st.permutations(items))


def test_one_senders_rising_fees_go_in_nonce_order() -> None:
    """The issue's case: nonces 1, 2, 3 with rising fees are mined 1, 2, 3 (not 3, 2, 1)."""
    a = ADDRESSES[0]
    pending = [Item(a, 1, 1_000), Item(a, 2, 2_000), Item(a, 3, 3_000)]
    assert [i.nonce for i in mining_order(pending)] == [1, 2, 3]


def test_worked_example_of_the_docs() -> None:
    """docs/protocol.md's example: A 1/1000 → A 2/5000, B 7/3000, C 4/3000 (C arrived later)."""
    a, b, c = ADDRESSES[:3]
    pending = [
        Item(a, 1, 1_000, name="A1"),
        Item(b, 7, 3_000, name="B7"),
        Item(a, 2, 5_000, name="A2"),
        Item(c, 4, 3_000, name="C4"),
    ]
    assert [i.name for i in mining_order(pending)] == ["B7", "C4", "A1", "A2"]
    blocks = projected_blocks(mining_order(pending), 3)
    assert [[i.name for i in b] for b in blocks] == [["B7", "C4", "A1"], ["A2"]]
    assert summarize(blocks) == [
        BlockSummary(1, 3, 7_000, 1_000, 3_000, 3),
        BlockSummary(2, 1, 5_000, 5_000, 5_000, 1),
    ]
    assert fee_to_reach(blocks, 3, 1, 1_000) == 1_001  # block 1 is full: outbid A1
    assert fee_to_reach(blocks, 3, 2, 1_000) == 1_000  # block 2 has room
    assert fee_to_reach(blocks, 3, 3, 1_000) == 1_000


def test_ties_go_to_the_earlier_arrival() -> None:
    a, b = ADDRESSES[:2]
    first, second = Item(b, 0, 2_000), Item(a, 0, 2_000)
    assert mining_order([first, second]) == [first, second]
    assert mining_order([second, first]) == [second, first]


def test_projected_block_numbers_and_empty_pool() -> None:
    assert [projected_block(p, 3) for p in (1, 3, 4, 6, 7)] == [1, 1, 2, 2, 3]
    assert projected_blocks([], 5) == []
    assert fee_to_reach([], 5, 1, 1_000) == 1_000
    with pytest.raises(ValueError, match="at least one"):
        projected_blocks([], 0)


@settings(max_examples=300, deadline=None)
@given(pools())
def test_order_keeps_nonces_and_matches_the_reference(pending: list[Item]) -> None:
    """Never a sender's nonce n+1 before n; every transaction exactly once; the same order as
    the contract's rule taken literally."""
    ordered = mining_order(pending)
    assert sorted(map(id, ordered)) == sorted(map(id, pending))
    seen: dict[str, int] = {}
    for item in ordered:
        assert item.nonce > seen.get(item.sender, -1)
        seen[item.sender] = item.nonce
    assert ordered == reference_order(pending)


@settings(max_examples=200, deadline=None)
@given(pools(), st.integers(1, 6), st.integers(1, 3), st.integers(0, 1_005))
def test_fee_to_reach_lands_a_newcomer_in_time(
    pending: list[Item], capacity: int, within: int, minimum: int
) -> None:
    """A new sender paying `fee_to_reach(within)` is taken within the first `within` blocks."""
    blocks = projected_blocks(mining_order(pending), capacity)
    fee = fee_to_reach(blocks, capacity, within, minimum)
    assert fee >= minimum
    newcomer = Item(ADDRESSES[5], 0, fee, name="new")
    place = mining_order([*pending, newcomer]).index(newcomer) + 1
    assert projected_block(place, capacity) <= within
    blocks_after = projected_blocks(mining_order([*pending, newcomer]), capacity)
    assert sum(len(b) for b in blocks_after) == len(pending) + 1


@settings(max_examples=300, deadline=None)
@given(pools(), st.integers(0, 5), st.integers(1_000, 1_010), st.data())
def test_a_newcomer_and_an_evicted_leaf_keep_the_rest_in_order(
    pending: list[Item], sender: int, fee: int, data: st.DataObject
) -> None:
    """What the ledger derives on a new transaction equals ordering the pool afresh: the
    newcomer (its sender's next nonce, arrived last) goes where `place_newest` says, and
    leaving out a sender's last transaction leaves the others' order as it was."""
    ordered = mining_order(pending)
    leaves = [
        i for i in pending if not any(o.sender == i.sender and o.nonce > i.nonce for o in pending)
    ]
    leaf = data.draw(st.sampled_from(leaves))
    rest = [i for i in pending if i is not leaf]
    assert [i for i in ordered if i is not leaf] == mining_order(rest)
    address = ADDRESSES[sender]
    nonce = max((i.nonce + 1 for i in rest if i.sender == address), default=0)
    newcomer = Item(address, nonce, fee, name="new")
    kept = [i for i in ordered if i is not leaf]
    index = place_newest(kept, newcomer)
    assert [*kept[:index], newcomer, *kept[index:]] == mining_order([*rest, newcomer])


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "ledger.sqlite3")
        yield Ledger(store, REGTEST, MempoolPolicy())
        store.close()


def _transaction(item: Item) -> Transaction:
    # The template only orders and assembles: unsigned transactions are enough here.
    return Transaction(item.sender, RECIPIENT, item.amount, item.fee, item.nonce, 0)


@settings(max_examples=80, deadline=None)
@given(pools(max_chain=4), st.integers(2, 8))
def test_the_template_takes_the_order(
    ledger: Ledger, pending: list[Item], max_block_transactions: int
) -> None:
    """`Ledger.template` (real store, real pool rows) holds the first `capacity` transactions
    of `mining_order` over the pool in arrival order, and the view's positions agree."""
    ledger.params = replace(REGTEST, max_block_transactions=max_block_transactions)
    store = ledger.store
    for entry in store.mempool_entries():
        store.mempool_remove(entry.txid)
    txs = [_transaction(item) for item in pending]
    for tx in txs:
        store.mempool_add(tx, 0)
    block = ledger.template(RECIPIENT, 10**9)
    capacity = max_block_transactions - 1
    expected = mining_order(txs)[:capacity]
    assert list(block.transactions[1:]) == expected
    view = ledger.mempool_view()
    assert [view.position(tx.txid) for tx in expected] == list(range(1, len(expected) + 1))
    assert all(view.block(tx.txid) == 1 for tx in expected)


KEYS = [test_key(i) for i in range(4)]


@pytest.fixture(scope="module")
def funded_ledger() -> Iterator[Ledger]:
    """A real ledger whose four keys each own a block's coinbase; its pool holds at most 6."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "ledger.sqlite3")
        ledger = Ledger(store, REGTEST, MempoolPolicy(max_count=6))
        for key in KEYS:
            parent = ledger.tip_header()
            block = build_block(
                REGTEST,
                parent,
                bits=parent.bits,
                transactions=[],
                miner_address=key.address,
                timestamp=parent.timestamp + 1,
            )
            mined = mine_block(block)
            assert mined is not None
            ledger.submit_block(mined, parent.timestamp + 1)
        yield ledger
        store.close()


_signed: dict[tuple[int, int, int], Transaction] = {}


def _signed_tx(key: int, nonce: int, fee: int) -> Transaction:
    if (key, nonce, fee) not in _signed:
        _signed[(key, nonce, fee)] = Transaction.create(
            KEYS[key],
            RECIPIENT,
            1,
            fee=fee,
            nonce=nonce,
            timestamp=0,
            network_id=REGTEST.network_id,
        )
    return _signed[(key, nonce, fee)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(1_000, 1_006)), max_size=16
    )
)
def test_the_ledgers_kept_order_is_always_the_fresh_one(
    funded_ledger: Ledger, sends: list[tuple[int, int, int]]
) -> None:
    """Through admissions, replacements (`back` nonces below the next), evictions from a full
    pool and refusals, the order the ledger keeps (derived step by step) is `mining_order` over
    the pool's rows as the database holds them, in arrival order."""
    ledger, store = funded_ledger, funded_ledger.store
    for entry in store.mempool_entries():
        store.mempool_remove(entry.txid)
    for key, back, fee in sends:
        ledger.mempool_view()  # a read before each change: the next view is derived from it
        pending, _ = store.mempool_sender_totals(KEYS[key].address)
        with contextlib.suppress(ValidationError, ServiceError):
            ledger.submit_transaction(_signed_tx(key, max(0, pending - back), fee), 0)
        rows = store.db.execute("SELECT txid, sender, nonce, fee FROM mempool ORDER BY seq")
        fresh = mining_order([Item(r[1], r[2], r[3], name=r[0]) for r in rows])
        assert [e.txid for e in ledger.mempool_view().ordered] == [i.name for i in fresh]
        assert len(fresh) <= 6


def test_the_kept_order_follows_a_rollback(ledger: Ledger) -> None:
    """A change of the pool undone by a rollback (a reorg onto a branch that fails to connect)
    is undone in the kept rows and order too: they are the database's again."""
    ledger.params = REGTEST
    store = ledger.store
    for entry in store.mempool_entries():
        store.mempool_remove(entry.txid)
    kept = _transaction(Item(ADDRESSES[0], 0, 1_000))
    store.mempool_add(kept, 0)
    assert [e.txid for e in ledger.mempool_view().ordered] == [kept.txid]

    def failing_reorg() -> None:
        with store.transaction():
            store.mempool_remove(kept.txid)
            store.mempool_add(_transaction(Item(ADDRESSES[1], 0, 5_000)), 0)
            assert [e.fee for e in ledger.mempool_view().ordered] == [5_000]
            raise RuntimeError("the branch failed to connect")

    with pytest.raises(RuntimeError, match="branch"):
        failing_reorg()
    assert [e.txid for e in store.mempool_entries()] == [kept.txid]
    assert [e.txid for e in ledger.mempool_view().ordered] == [kept.txid]
    assert [tx.txid for tx in ledger.template(RECIPIENT, 10**9).transactions[1:]] == [kept.txid]
