"""Property tests of the money rules: random action sequences on a `MemoryChain(REGTEST)`.

A hypothesis `RuleBasedStateMachine` mines blocks to a few test keys, makes transfers among
them, tries transactions and blocks that break one rule each, and grows competing branches from
older blocks so that the chain reorganises (regtest keeps one difficulty, so more blocks means
more work). After every step the invariants hold:

- no balance is negative, and the balances add up to `params.total_supply(height)`: all money
  comes from subsidies, fees only move to the miners;
- each account's nonce is the number of transfers it sent on the main chain;
- the state is what replaying `connect_block` over `chain.main_chain()` from nothing gives;
- the main chain is linked, numbered 1..height, and its work is height blocks of regtest work.

Every rejection must be a `ValidationError` with the expected reason code, and must leave the
tip, the height, the main chain and every account exactly as they were. The counters that the
machine keeps prove the bad actions and the reorgs really happened (the random run checks its
totals; a scripted run goes through every kind of bad input and asserts each was refused).

Below the machine: `connect_block` then writing `disconnect_block(undo)` restores the exact
accounts (also through the undo record's JSON form), and `parse_amount` inverts
`format_amount` and refuses what is not an amount. Tampering with a signed, mined block is in
test_properties_tamper.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from itertools import count, pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from pybtc import (
    COIN,
    DEVNET,
    MAX_MONEY,
    REGTEST,
    Account,
    Block,
    BlockUndo,
    Reason,
    Transaction,
    format_amount,
    parse_amount,
)
from pybtc.chain import AddResult, MemoryChain
from pybtc.encoding import sha256
from pybtc.errors import ValidationError
from pybtc.keys import address_from_public_key
from pybtc.mining import build_block, mine_block
from pybtc.pow import bits_to_target, block_work, target_to_bits
from pybtc.state import connect_block, disconnect_block
from pybtc.validation import validate_transaction, validate_transaction_state
from tests.chainutil import NOW, remine, test_key

KEYS = [test_key(i) for i in range(4)]
ADDRESSES = [key.address for key in KEYS]
N_KEYS = len(KEYS)
WORK = block_work(REGTEST.pow_limit_bits)
"""Every regtest block has the same work, so a branch's work is its height times this."""

Spec = tuple[int, int, int, int]
"""A transfer to plan: (sender key, recipient key, per mille of the spendable balance, fee)."""

KEY = st.integers(0, N_KEYS - 1)
SPECS = st.lists(st.tuples(KEY, KEY, st.integers(1, 1000), st.integers(0, 5_000)), max_size=3)
BIG = st.integers(0, 10**9)

TOTALS: Counter[str] = Counter()
"""What every machine run did, summed in `teardown`."""


def without_empty(accounts: Mapping[str, Account]) -> dict[str, Account]:
    """The accounts as `MemoryChain.accounts()` shows them: Account() means absent."""
    return {address: acct for address, acct in accounts.items() if acct != Account()}


def lookup(state: Mapping[str, Account]) -> Callable[[str], Account]:
    """An account lookup over a dict, as `connect_block` takes it."""
    return lambda address: state.get(address, Account())


def apply_block(state: Mapping[str, Account], block: Block) -> dict[str, Account]:
    """`state` with `block` connected (it must be valid on that state)."""
    changed, _ = connect_block(block, lookup(state), REGTEST)
    return without_empty({**state, **changed})


def replay(blocks: Iterable[Block]) -> dict[str, Account]:
    """The state of a chain of blocks, recomputed from empty state."""
    state: dict[str, Account] = {}
    for block in blocks:
        state = apply_block(state, block)
    return state


def plan_transfers(
    state: Mapping[str, Account], specs: Sequence[Spec], timestamp: int
) -> list[Transaction]:
    """Valid signed transfers, in order, on `state` (a spec the sender cannot pay is skipped)."""
    working = dict(state)
    txs = []
    for sender_i, recipient_i, permille, fee in specs:
        sender, recipient = ADDRESSES[sender_i], ADDRESSES[recipient_i]
        acct = working.get(sender, Account())
        if acct.balance < fee + 1:
            continue
        amount = max(1, (acct.balance - fee) * permille // 1000)
        txs.append(
            Transaction.create(
                KEYS[sender_i],
                recipient,
                amount,
                fee=fee,
                nonce=acct.nonce,
                timestamp=timestamp,
                network_id=REGTEST.network_id,
            )
        )
        working[sender] = Account(acct.balance - amount - fee, acct.nonce + 1)
        other = working.get(recipient, Account())
        working[recipient] = Account(other.balance + amount, other.nonce)
    return txs


def model_connect(
    state: Mapping[str, Account], txs: Sequence[Transaction], miner: str, subsidy: int
) -> dict[str, Account]:
    """The accounts after a block, by plain arithmetic: each transfer moves its amount and bumps
    its sender's nonce, then the miner gets the subsidy plus every fee."""
    working = dict(state)
    for tx in txs:
        sender = working.get(tx.sender, Account())
        working[tx.sender] = Account(sender.balance - tx.amount - tx.fee, sender.nonce + 1)
        recipient = working.get(tx.recipient, Account())
        working[tx.recipient] = Account(recipient.balance + tx.amount, recipient.nonce)
    reward = subsidy + sum(tx.fee for tx in txs)
    paid = working.get(miner, Account())
    working[miner] = Account(paid.balance + reward, paid.nonce)
    return without_empty(working)


def with_coinbase(block: Block, **changes: Any) -> Block:
    """`block` re-mined with its coinbase changed."""
    coinbase, *rest = block.transactions
    return remine(block, (replace(coinbase, **changes), *rest))


def validate_loose(tx: Transaction, account: Account) -> None:
    """What a node checks before taking a transaction into its mempool."""
    validate_transaction(tx, REGTEST)
    validate_transaction_state(tx, account)


def mistyped(address: str) -> str:
    """`address` with its last character changed: its checksum no longer matches."""
    return address[:-1] + ("2" if address[-1] != "2" else "3")


def upper_median_time(chain: MemoryChain, parent: Block) -> int:
    """Median-time-past of `parent`'s branch, computed here without pybtc.difficulty."""
    times: list[int] = []
    current = parent
    while len(times) < REGTEST.median_time_span:
        times.append(current.timestamp)
        if current.index == 1:
            break
        found = chain.get(current.previous_hash)
        assert found is not None
        current = found
    return sorted(times)[len(times) // 2]


REFUSED_BITS = (0x20801234, 0x23010000, 0x20000000, 0x2000007F, 0x03000001, 0x2100FFFF)
"""Negative, 2**256, zero, two non-canonical encodings, easier than the limit: `bad-bits`."""

# kind -> (reason when validated loose, reason when inside a block)
BAD_TRANSACTIONS: dict[str, tuple[Reason, Reason]] = {
    "wrong-nonce": (Reason.BAD_NONCE, Reason.BAD_NONCE),
    "overspend": (Reason.INSUFFICIENT_FUNDS, Reason.INSUFFICIENT_FUNDS),
    "zero-amount": (Reason.BAD_AMOUNT, Reason.BAD_AMOUNT),
    "over-max-money": (Reason.BAD_FEE, Reason.BAD_FEE),
    "forged-signature": (Reason.BAD_SIGNATURE, Reason.BAD_SIGNATURE),
    "wrong-network": (Reason.BAD_SIGNATURE, Reason.BAD_SIGNATURE),
    "key-mismatch": (Reason.SENDER_KEY_MISMATCH, Reason.SENDER_KEY_MISMATCH),
    "no-public-key": (Reason.BAD_PUBLIC_KEY, Reason.BAD_PUBLIC_KEY),
    "neutral-point-key": (Reason.BAD_PUBLIC_KEY, Reason.BAD_PUBLIC_KEY),
    "coinbase-as-transfer": (Reason.COINBASE_OUTSIDE_BLOCK, Reason.MULTIPLE_COINBASE),
}

# kind -> (JSON field, bad value from a number, reason): refused while parsing
BAD_JSON: dict[str, tuple[str, Callable[[int], object], Reason]] = {
    "negative-amount": ("amount", lambda n: -1 - n, Reason.BAD_AMOUNT),
    "huge-amount": ("amount", lambda n: MAX_MONEY + 1 + n * n, Reason.BAD_AMOUNT),
    "float-amount": ("amount", lambda n: n + 0.5, Reason.BAD_TYPE),
    "whole-float-amount": ("amount", lambda n: float(n + 1), Reason.BAD_TYPE),
    "nan-amount": ("amount", lambda n: float("nan"), Reason.BAD_TYPE),
    "string-amount": ("amount", lambda n: str(n + 1), Reason.BAD_TYPE),
    "bool-amount": ("amount", lambda n: True, Reason.BAD_TYPE),
    "negative-fee": ("fee", lambda n: -1 - n, Reason.BAD_FEE),
    "huge-fee": ("fee", lambda n: MAX_MONEY + 1 + n, Reason.BAD_FEE),
    "float-fee": ("fee", lambda n: n / 3 + 0.1, Reason.BAD_TYPE),
    "negative-nonce": ("nonce", lambda n: -1 - n, Reason.OUT_OF_RANGE),
    "mistyped-recipient": (
        "recipient",
        lambda n: mistyped(ADDRESSES[n % N_KEYS]),
        Reason.BAD_ADDRESS,
    ),
}

BAD_BLOCKS: dict[str, Reason] = {
    "coinbase-amount": Reason.BAD_COINBASE_AMOUNT,
    "coinbase-nonce": Reason.BAD_COINBASE,
    "coinbase-fee": Reason.BAD_COINBASE,
    "no-coinbase": Reason.BAD_COINBASE,
    "extra-coinbase": Reason.MULTIPLE_COINBASE,
    "duplicate-tx": Reason.DUPLICATE_TX,
    "merkle-root": Reason.BAD_MERKLE_ROOT,
    "harder-bits": Reason.BAD_DIFFICULTY,
    "refused-bits": Reason.BAD_BITS,
    "pow": Reason.BAD_POW,
    "unknown-parent": Reason.UNKNOWN_PARENT,
    "older-parent": Reason.BAD_INDEX,
    "index-one": Reason.BAD_GENESIS,
    "time-too-old": Reason.TIME_TOO_OLD,
    "time-too-new": Reason.TIME_TOO_NEW,
    "no-transactions": Reason.NO_TRANSACTIONS,
    "too-large": Reason.BLOCK_TOO_LARGE,
}

BAD_BRANCH_BLOCKS: dict[str, Reason] = {
    "coinbase-amount": Reason.BAD_COINBASE_AMOUNT,
    "nonce": Reason.BAD_NONCE,
    "overspend": Reason.INSUFFICIENT_FUNDS,
}


class ChainMachine(RuleBasedStateMachine):
    """Random mining, transfers, bad transactions, bad blocks and forks on one MemoryChain."""

    def __init__(self) -> None:
        super().__init__()
        self.chain = MemoryChain(REGTEST)
        self.valid: list[str] = [REGTEST.genesis.hash]
        """Hashes of the blocks the chain accepted, in order (side branches included)."""
        self.stats: Counter[str] = Counter()

    # -- helpers -----------------------------------------------------------------------------
    def snapshot(self) -> tuple[object, ...]:
        chain = self.chain
        main = tuple(block.hash for block in chain.main_chain())
        return chain.tip.hash, chain.height, chain.chain_work, main, chain.accounts()

    def state_at(self, block_hash: str) -> dict[str, Account]:
        """Accounts after the branch ending at `block_hash`, replayed from genesis."""
        blocks = []
        current = self.chain.get(block_hash)
        while current is not None:
            blocks.append(current)
            current = None if current.index == 1 else self.chain.get(current.previous_hash)
        return replay(reversed(blocks))

    def build_on(
        self,
        parent_hash: str,
        txs: Sequence[Transaction],
        miner: int,
        finish: Callable[[Block], Block] = lambda block: block,
    ) -> Block:
        """A mined block on `parent_hash`, made bad by `finish`, that the chain has not seen."""
        parent = self.chain.get(parent_hash)
        assert parent is not None
        start = max(upper_median_time(self.chain, parent) + 1, parent.timestamp + 1)
        for bump in range(50):
            template = build_block(
                REGTEST,
                parent.header,
                bits=parent.header.bits,
                transactions=txs,
                miner_address=ADDRESSES[miner],
                timestamp=start + bump,
            )
            mined = mine_block(template)
            assert mined is not None
            block = finish(mined)
            if self.chain.get(block.hash) is None:
                return block
        raise AssertionError("could not make an unseen block")  # pragma: no cover

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] += n

    def expect_rejected(self, attempt: Callable[[], object], reason: Reason, what: str) -> None:
        before = self.snapshot()
        with pytest.raises(ValidationError) as info:
            attempt()
        assert info.value.reason == reason, f"{what}: wanted {reason}, got {info.value}"
        assert self.snapshot() == before, f"{what}: a rejection changed the chain"
        self.count(f"rejected {reason}")

    def reject_block(self, block: Block, reason: Reason, what: str) -> None:
        self.expect_rejected(lambda: self.chain.add_block(block, NOW), reason, what)

    def add_valid(self, block: Block) -> AddResult:
        """Add a valid block and check the fork choice: the tip moves iff the work grows."""
        chain = self.chain
        old_height, before = chain.height, self.snapshot()
        fork = chain.get(block.previous_hash)
        assert fork is not None
        while not chain.is_main(fork.hash):
            found = chain.get(fork.previous_hash)
            assert found is not None
            fork = found
        result = chain.add_block(block, NOW)
        self.valid.append(block.hash)
        if block.index > old_height:
            assert result.is_tip
            assert chain.tip == block
            assert chain.height == block.index
            assert [b.index for b in result.disconnected] == list(range(old_height, fork.index, -1))
            assert [b.index for b in result.connected] == list(
                range(fork.index + 1, block.index + 1)
            )
            assert result.connected[-1] == block
            assert all(not chain.is_main(b.hash) for b in result.disconnected)
            self.count("reorg" if result.reorg_depth else "extended")
        else:
            assert not result.is_tip
            assert result.disconnected == result.connected == ()
            assert self.snapshot() == before
            assert chain.get(block.hash) == block
            assert not chain.is_main(block.hash)
            self.count("side block")
        return result

    # -- rules -------------------------------------------------------------------------------
    @rule(miner=KEY, specs=SPECS)
    def mine_on_tip(self, miner: int, specs: list[Spec]) -> None:
        tip, before = self.chain.tip, self.chain.accounts()
        txs = plan_transfers(before, specs, tip.timestamp)
        self.add_valid(self.build_on(tip.hash, txs, miner))
        subsidy = REGTEST.subsidy(tip.index + 1)
        assert self.chain.accounts() == model_connect(before, txs, ADDRESSES[miner], subsidy)
        self.count("transfers", len(txs))

    @rule(kind=st.sampled_from(sorted(BAD_TRANSACTIONS)), sender=KEY, other=KEY, n=BIG)
    def bad_transaction(self, kind: str, sender: int, other: int, n: int) -> None:
        chain = self.chain
        key, account = KEYS[sender], chain.account(ADDRESSES[sender])
        other = (sender + 1 + other % (N_KEYS - 1)) % N_KEYS  # anyone but the sender
        ts = chain.tip.timestamp
        amount, fee, nonce, network = 1 + n % COIN, n % 5_000, account.nonce, REGTEST.network_id
        if kind == "wrong-nonce":
            nonce = account.nonce + 1 + n if n % 2 or not account.nonce else n % account.nonce
        elif kind == "overspend":
            amount = account.balance + 1 + n
        elif kind == "zero-amount":
            amount = 0
        elif kind == "over-max-money":
            amount, fee = MAX_MONEY - n % 1000, n % 1000 + 1
        elif kind == "wrong-network":
            network = DEVNET.network_id
        tx = Transaction.create(
            key, ADDRESSES[other], amount, fee=fee, nonce=nonce, timestamp=ts, network_id=network
        )
        if kind == "forged-signature":
            tx = replace(tx, signature=KEYS[other].sign(tx.signing_message(network)).hex())
        elif kind in ("key-mismatch", "no-public-key"):
            unsigned = (
                replace(tx, sender=ADDRESSES[other], signature="")
                if kind == "key-mismatch"
                else replace(tx, public_key="", signature="")
            )
            signature = key.sign(unsigned.signing_message(network)).hex()
            tx = replace(unsigned, signature=signature)
        elif kind == "neutral-point-key":  # (R = neutral point, S = 0) verifies for any message
            neutral = bytes([1]) + bytes(31)
            tx = replace(
                tx,
                sender=address_from_public_key(neutral),
                public_key=neutral.hex(),
                signature=(neutral + bytes(32)).hex(),
            )
        elif kind == "coinbase-as-transfer":
            tx = Transaction.coinbase(ADDRESSES[other], amount, chain.height + 1, ts)
        loose, in_block = BAD_TRANSACTIONS[kind]
        with pytest.raises(ValidationError) as info:
            validate_loose(tx, account)
        assert info.value.reason == loose, f"{kind}: {info.value}"
        self.reject_block(self.build_on(chain.tip.hash, [tx], other), in_block, kind)

    @rule(kind=st.sampled_from(sorted(BAD_JSON)), sender=KEY, other=KEY, n=BIG)
    def bad_transaction_json(self, kind: str, sender: int, other: int, n: int) -> None:
        field, bad_value, reason = BAD_JSON[kind]
        tip = self.chain.tip
        tx = Transaction.create(
            KEYS[sender],
            ADDRESSES[other],
            1 + n % COIN,
            fee=n % 5_000,
            nonce=self.chain.account(ADDRESSES[sender]).nonce,
            timestamp=tip.timestamp,
            network_id=REGTEST.network_id,
        )
        data = tx.to_dict() | {field: bad_value(n)}
        block_data = self.build_on(tip.hash, [tx], other).to_dict()
        block_data["transactions"][1] = data
        self.expect_rejected(lambda: Transaction.from_dict(data), reason, kind)
        self.expect_rejected(lambda: Block.from_dict(block_data), reason, kind)

    @rule(kind=st.sampled_from(sorted(BAD_BLOCKS)), miner=KEY, specs=SPECS, n=BIG)
    def bad_block(self, kind: str, miner: int, specs: list[Spec], n: int) -> None:
        chain = self.chain
        tip = chain.tip
        txs = plan_transfers(chain.accounts(), specs, tip.timestamp)
        height = tip.index + 1
        reason = BAD_BLOCKS[kind]

        def spoil(block: Block) -> Block:  # one branch per kind
            coinbase, *rest = block.transactions
            if kind == "coinbase-amount":
                delta = 1 + n % COIN
                low = coinbase.amount - delta
                return with_coinbase(block, amount=low if n % 2 and low >= 0 else low + 2 * delta)
            if kind == "coinbase-nonce":
                return with_coinbase(block, nonce=height + 1 + n if n % 2 else n % height)
            if kind == "coinbase-fee":
                return with_coinbase(block, fee=1 + n % COIN)
            if kind == "no-coinbase":
                return (
                    remine(block, rest)
                    if rest
                    else remine(block, [replace(coinbase, sender=ADDRESSES[miner])])
                )
            if kind == "extra-coinbase":
                other = Transaction.coinbase(ADDRESSES[miner], 1 + n, height, tip.timestamp)
                return remine(block, [*block.transactions, other])
            if kind == "duplicate-tx":
                doubled = list(block.transactions)
                doubled.insert(1 + n % len(doubled), doubled[-1])
                return remine(block, doubled)
            if kind == "merkle-root":
                return remine(block, merkle_root=sha256(b"%d" % n).hex())
            if kind == "harder-bits":
                return remine(block, bits=target_to_bits(REGTEST.pow_limit >> (1 + n % 6)))
            if kind == "refused-bits":
                return Block(
                    replace(block.header, bits=REFUSED_BITS[n % len(REFUSED_BITS)]),
                    block.transactions,
                )
            if kind == "pow":
                target = bits_to_target(block.header.bits)
                for nonce in count(n):
                    candidate = block.with_nonce(nonce)
                    if int(candidate.hash, 16) > target:
                        return candidate
            if kind == "unknown-parent":
                return remine(block, previous_hash=sha256(b"nowhere %d" % n).hex())
            if kind == "older-parent":
                if chain.height < 2:  # no block at another height yet: nothing to point at
                    return remine(block, previous_hash=sha256(b"nowhere %d" % n).hex())
                return remine(block, previous_hash=chain.block_at(1 + n % (chain.height - 1)).hash)
            if kind == "index-one":
                return remine(block, index=1)
            if kind == "time-too-old":
                return remine(block, timestamp=max(0, upper_median_time(chain, tip) - n % 3))
            if kind == "time-too-new":
                return remine(block, timestamp=NOW + REGTEST.max_future_block_time + 1 + n)
            if kind == "no-transactions":
                return Block(block.header, ())
            assert kind == "too-large"
            return Block(block.header, (coinbase,) * (REGTEST.max_block_transactions + 1))

        block = self.build_on(tip.hash, txs, miner, spoil)
        if kind == "older-parent" and chain.height < 2:
            reason = Reason.UNKNOWN_PARENT
        self.reject_block(block, reason, kind)

    @rule(pick=st.integers(0, 10**6))
    def add_known_block_again(self, pick: int) -> None:
        block = self.chain.get(self.valid[pick % len(self.valid)])
        assert block is not None
        self.reject_block(block, Reason.DUPLICATE_BLOCK, "known block")

    @rule(
        pick=st.integers(0, 10**6),
        extra=st.integers(-1, 2),
        miners=st.lists(KEY, min_size=1, max_size=3),
        specs=SPECS,
    )
    def fork(self, pick: int, extra: int, miners: list[int], specs: list[Spec]) -> None:
        """A branch from a recent block (main or side), long enough to win about half the time."""
        recent = self.valid[-12:]
        parent_hash = recent[pick % len(recent)]
        parent = self.chain.get(parent_hash)
        assert parent is not None
        state = self.state_at(parent_hash)
        for i in range(max(1, self.chain.height - parent.index + extra)):
            txs = plan_transfers(state, specs if i == 0 else [], parent.timestamp)
            block = self.build_on(parent.hash, txs, miners[i % len(miners)])
            self.add_valid(block)
            state, parent = apply_block(state, block), block

    @rule(
        depth=st.integers(0, 5),
        kind=st.sampled_from(sorted(BAD_BRANCH_BLOCKS)),
        late=st.booleans(),
        key=KEY,
        n=BIG,
    )
    def invalid_branch(self, depth: int, kind: str, late: bool, key: int, n: int) -> None:
        """A branch that would win but holds a block breaking an account-state rule.

        The bad block is either the one that makes the branch win (refused on arrival), or an
        earlier one kept unchecked on a side branch until a descendant makes the branch win.
        Either way the reorg is undone, and the branch is marked invalid for good.
        """
        chain = self.chain
        fork_height = max(1, chain.height - depth)
        total = chain.height + 1 - fork_height  # branch blocks needed to beat the tip
        bad_at = 0 if late else total - 1
        parent = chain.block_at(fork_height)
        state = self.state_at(parent.hash)
        reason = BAD_BRANCH_BLOCKS[kind]
        for i in range(total):
            if i == bad_at:
                block = self.bad_branch_block(parent, state, kind, key, n)
            else:
                block = self.build_on(parent.hash, [], key)
            if i < total - 1:
                before = self.snapshot()
                assert not chain.add_block(block, NOW).is_tip  # kept, not followed, not checked
                assert self.snapshot() == before
                if i < bad_at:
                    self.valid.append(block.hash)
                    state = apply_block(state, block)
                self.count("side block")
            else:
                self.reject_block(block, reason, f"{kind} branch, late={late}")
            parent = block
        child = self.build_on(parent.hash, [], key)
        self.reject_block(child, Reason.INVALID_ANCESTOR, "child of an invalid block")

    def bad_branch_block(
        self, parent: Block, state: Mapping[str, Account], kind: str, key: int, n: int
    ) -> Block:
        """A block on `parent` that passes every rule but the account-state one `kind` names."""
        if kind == "coinbase-amount":

            def overpay(block: Block) -> Block:
                return with_coinbase(block, amount=block.transactions[0].amount + 1 + n % COIN)

            return self.build_on(parent.hash, [], key, overpay)
        acct = state.get(ADDRESSES[key], Account())
        amount, nonce = 1 + n % COIN, acct.nonce + 1 + n % 3
        if kind == "overspend":
            amount, nonce = acct.balance + 1 + n, acct.nonce
        tx = Transaction.create(
            KEYS[key],
            ADDRESSES[(key + 1) % N_KEYS],
            amount,
            fee=0,
            nonce=nonce,
            timestamp=parent.timestamp,
            network_id=REGTEST.network_id,
        )
        return self.build_on(parent.hash, [tx], key)

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def money_rules_hold(self) -> None:
        self.check()

    def check(self) -> None:
        chain = self.chain
        accounts = chain.accounts()
        main = chain.main_chain()
        assert [block.index for block in main] == list(range(1, chain.height + 1))
        assert main[0] == REGTEST.genesis
        assert main[-1] == chain.tip
        assert all(child.previous_hash == parent.hash for parent, child in pairwise(main))
        assert chain.chain_work == WORK * chain.height
        assert all(acct.balance >= 0 and acct.nonce >= 0 for acct in accounts.values())
        assert sum(acct.balance for acct in accounts.values()) == REGTEST.total_supply(chain.height)
        sent = Counter(tx.sender for block in main for tx in block.transactions[1:])
        assert {a: acct.nonce for a, acct in accounts.items() if acct.nonce} == dict(sent)
        assert replay(main) == accounts
        for address in ADDRESSES:
            assert chain.account(address) == accounts.get(address, Account())

    def teardown(self) -> None:
        TOTALS.update(self.stats)


STATEFUL = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_random_action_sequences_keep_the_money_rules() -> None:
    TOTALS.clear()
    run_state_machine_as_test(ChainMachine, settings=STATEFUL)
    rejected = {what for what in TOTALS if what.startswith("rejected ")}
    assert TOTALS["reorg"] > 0, TOTALS
    assert TOTALS["side block"] > 0, TOTALS
    assert TOTALS["transfers"] > 0, TOTALS
    assert len(rejected) >= 10, TOTALS


def test_scripted_run_rejects_and_reorganises() -> None:
    """One fixed sequence through every rule and every kind of bad input."""
    machine = ChainMachine()
    steps: list[Callable[[], None]] = [
        lambda: machine.mine_on_tip(0, []),
        lambda: machine.mine_on_tip(1, [(0, 2, 500, 1_000)]),
        lambda: machine.mine_on_tip(2, [(0, 3, 300, 0), (2, 1, 999, 5), (1, 0, 10, 7)]),
        lambda: machine.fork(pick=0, extra=0, miners=[3], specs=[]),  # a tie: a side branch
        lambda: machine.fork(pick=3, extra=2, miners=[3, 2], specs=[(1, 2, 700, 3)]),
    ]
    steps += [partial(machine.bad_transaction, k, 0, 1, 7) for k in sorted(BAD_TRANSACTIONS)]
    steps += [partial(machine.bad_transaction, k, 3, 2, 0) for k in sorted(BAD_TRANSACTIONS)]
    steps += [partial(machine.bad_transaction_json, k, 1, 2, 9) for k in sorted(BAD_JSON)]
    steps += [partial(machine.bad_block, k, 2, [(0, 1, 100, 50)], 3) for k in sorted(BAD_BLOCKS)]
    steps += [
        partial(machine.invalid_branch, 2, k, late, 0, 11)
        for k in sorted(BAD_BRANCH_BLOCKS)
        for late in (False, True)
    ]
    steps += [
        lambda: machine.add_known_block_again(0),
        lambda: machine.add_known_block_again(5),
        lambda: machine.fork(pick=1, extra=1, miners=[1], specs=[(0, 0, 1000, 0)]),
        lambda: machine.fork(pick=0, extra=2, miners=[2, 0], specs=[(3, 1, 500, 9)]),
    ]
    machine.check()
    for step in steps:
        step()
        machine.check()
    stats = machine.stats
    assert stats["reorg"] >= 2, stats
    assert stats["side block"] >= 3, stats
    assert stats["transfers"] >= 4, stats
    wanted = {BAD_TRANSACTIONS[k][1] for k in BAD_TRANSACTIONS}
    wanted |= {reason for _, _, reason in BAD_JSON.values()}
    wanted |= set(BAD_BLOCKS.values()) | set(BAD_BRANCH_BLOCKS.values())
    wanted |= {Reason.DUPLICATE_BLOCK, Reason.INVALID_ANCESTOR}
    assert {r for r in wanted if stats[f"rejected {r}"] == 0} == set()


# -- apply, then undo ---------------------------------------------------------------------------


def grown_chain(history: Sequence[tuple[int, list[Spec]]]) -> MemoryChain:
    """Genesis, two blocks to key 0, then a block per (miner, transfers) in `history`."""
    chain = MemoryChain(REGTEST)
    for miner, specs in [(0, []), (0, []), *history]:
        txs = plan_transfers(chain.accounts(), specs, chain.tip.timestamp)
        chain.add_block(chain.next_block(txs, ADDRESSES[miner]), NOW)
    return chain


HISTORY = st.lists(st.tuples(KEY, SPECS), max_size=4)


@settings(max_examples=60, deadline=None)
@given(history=HISTORY, miner=KEY, specs=SPECS)
def test_connect_then_disconnect_restores_the_accounts(
    history: list[tuple[int, list[Spec]]], miner: int, specs: list[Spec]
) -> None:
    chain = grown_chain(history)
    before = chain.accounts()
    txs = plan_transfers(before, specs, chain.tip.timestamp)
    block = chain.next_block(txs, ADDRESSES[miner])
    changed, undo = connect_block(block, chain.account, REGTEST)
    assert chain.accounts() == before  # connect_block only computes; nothing is written
    assert undo.block_hash == block.hash
    assert set(undo.previous) == set(changed)
    assert all(undo.previous[address] == chain.account(address) for address in changed)
    after = before | changed
    assert all(acct.balance >= 0 for acct in after.values())
    supply = sum(acct.balance for acct in before.values()) + REGTEST.subsidy(block.index)
    assert sum(acct.balance for acct in after.values()) == supply
    restored = after | disconnect_block(undo)
    # an address the block created comes back as Account(), which the chain shows as absent
    assert without_empty(restored) == before
    assert all(restored[address] == Account() for address in restored.keys() - before.keys())
    stored = BlockUndo.from_dict(json.loads(json.dumps(undo.to_dict())))
    assert stored == undo
    assert stored.to_dict() == undo.to_dict()
    assert disconnect_block(stored) == disconnect_block(undo)
    chain.add_block(block, NOW)
    assert chain.accounts() == without_empty(after)


@settings(max_examples=30, deadline=None)
@given(history=HISTORY.filter(bool))
def test_undo_records_unwind_a_chain_back_to_its_start(
    history: list[tuple[int, list[Spec]]],
) -> None:
    """Connect blocks one by one over a dict, keep the undo records as stored JSON, then
    disconnect in reverse order: every intermediate state comes back exactly."""
    blocks = grown_chain(history).main_chain()
    state: dict[str, Account] = {}
    states, undos = [], []
    for block in blocks:
        states.append(without_empty(state))
        changed, undo = connect_block(block, lookup(state), REGTEST)
        state = state | changed
        undos.append(json.dumps(undo.to_dict()))
    assert without_empty(state) == replay(blocks)
    for block, stored, expected in zip(
        reversed(blocks), reversed(undos), reversed(states), strict=True
    ):
        undo = BlockUndo.from_dict(json.loads(stored))
        assert undo.block_hash == block.hash
        state = state | disconnect_block(undo)
        assert without_empty(state) == expected
    assert without_empty(state) == {}


# -- amounts ------------------------------------------------------------------------------------

DIGITS = "0123456789"
NOT_A_DECIMAL = "digits with at most one decimal point"


@given(st.integers(0, MAX_MONEY))
def test_format_then_parse_amount_is_exact(units: int) -> None:
    text = format_amount(units)
    assert re.fullmatch(r"\d+\.\d{8}", text)
    assert parse_amount(text) == units
    assert parse_amount(text.rstrip("0")) == units  # "1.5" and "7." mean the same
    assert parse_amount("0" + text) == units  # a leading zero changes nothing


@given(
    whole=st.integers(0, 20_999_999),
    frac=st.integers(0, 10**8 - 1),
    extra=st.text(DIGITS, min_size=1, max_size=6).filter(lambda t: t.strip("0")),
)
def test_parse_amount_refuses_a_ninth_decimal(whole: int, frac: int, extra: str) -> None:
    with pytest.raises(ValueError, match="8 decimal places"):
        parse_amount(f"{whole}.{frac:08d}{extra}")


@given(st.integers(0, 10 * MAX_MONEY))
def test_parse_amount_refuses_negatives_and_more_than_the_supply(units: int) -> None:
    for text in ("-" + format_amount(units), f"-{units}", f"-.{units}"):
        with pytest.raises(ValueError, match=NOT_A_DECIMAL):
            parse_amount(text)
    if units > MAX_MONEY:
        with pytest.raises(ValueError, match="21,000,000"):
            parse_amount(format_amount(units))


@given(
    head=st.text(DIGITS, min_size=1, max_size=5),
    bad=st.characters(exclude_characters=DIGITS + "."),  # other scripts' digits included
    tail=st.text(DIGITS, min_size=1, max_size=5),
)
def test_parse_amount_refuses_anything_but_digits_and_one_point(
    head: str, bad: str, tail: str
) -> None:
    with pytest.raises(ValueError, match=NOT_A_DECIMAL):
        parse_amount(head + bad + tail)


@pytest.mark.parametrize(
    "text", ["", " ", ".", "1.2.3", "+1", "1e3", "NaN", "Infinity", "0x10", "1,5", "1_000"]
)
def test_parse_amount_refuses_what_is_not_a_decimal(text: str) -> None:
    with pytest.raises(ValueError, match=NOT_A_DECIMAL):
        parse_amount(text)
