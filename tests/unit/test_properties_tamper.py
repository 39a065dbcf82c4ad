"""Property tests: any single change to a valid, signed, mined block is refused, with its reason.

The block under test (`scenario`) extends a regtest chain of genesis + 3 blocks mined to key 0,
and holds a coinbase and a chain of dependent transfers, key 0 -> key 1 -> key 2 -> key 3, each
spending part of what the one before paid (keys 1..3 start empty). So no transfer can go
missing or move without breaking a rule. Hypothesis picks one thing to change and its new value:

- the JSON with its old `hash`/`txid`: `from_dict` refuses every change of any single field
  (`bad-block-hash`, `bad-txid`, or the decode reason of an ill-typed value);
- the objects, keeping the old proof of work: a changed transaction breaks the Merkle root, a
  changed header field breaks PoW or the rule that field is under; only a new nonce or an
  in-window timestamp that happens to meet the (trivial regtest) target makes a valid block;
- the objects re-mined (Merkle root recomputed, valid PoW): then the refusal must come from a
  deeper rule, and the exact reason code is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pybtc import COIN, DEVNET, MAX_MONEY, REGTEST, Block, Reason, Transaction, ValidationError
from pybtc.block import HEADER_FIELDS
from pybtc.chain import MemoryChain
from pybtc.encoding import U32_MAX, U64_MAX
from pybtc.pow import target_to_bits
from pybtc.transaction import TX_FIELDS
from pybtc.validation import validate_block, validate_header
from tests.chainutil import NOW, remine, test_key

KEYS = [test_key(i) for i in range(4)]
ADDRESSES = [key.address for key in KEYS]
MINER = test_key(9)
POOL = [test_key(i).address for i in range(10)]
AMOUNTS = (10 * COIN, 5 * COIN, 2 * COIN)
FEES = (1_000, 2_000, 3_000)
BALANCE_BEFORE = (150 * COIN, AMOUNTS[0], AMOUNTS[1])
"""What each transfer's sender holds when its transfer runs (key 1 holds t1's amount, ...)."""

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def scenario() -> tuple[tuple[Block, ...], Block]:
    """(the blocks after genesis, the block under test), built once."""
    chain = MemoryChain(REGTEST)
    for _ in range(3):
        chain.add_block(chain.next_block([], ADDRESSES[0]), NOW)
    txs = [
        Transaction.create(
            KEYS[i],
            ADDRESSES[i + 1],
            AMOUNTS[i],
            fee=FEES[i],
            nonce=0,
            timestamp=chain.tip.timestamp,
            network_id=REGTEST.network_id,
        )
        for i in range(3)
    ]
    return tuple(chain.main_chain()[1:]), chain.next_block(txs, MINER.address)


def fresh_chain() -> MemoryChain:
    chain = MemoryChain(REGTEST)
    for block in scenario()[0]:
        chain.add_block(block, NOW)
    return chain


def snapshot(chain: MemoryChain) -> tuple[object, ...]:
    return chain.tip.hash, chain.height, chain.chain_work, chain.accounts()


def median_time_past(chain: MemoryChain) -> int:
    """Upper median of the last 11 main-chain timestamps, computed here."""
    times = sorted(block.timestamp for block in chain.main_chain()[-REGTEST.median_time_span :])
    return times[len(times) // 2]


def decode_bits(bits: int) -> int | None:
    """The target of a canonical compact `bits` within the regtest limit, else None (an oracle
    written from docs/protocol.md, independent of pybtc.pow.bits_to_target)."""
    exponent, mantissa = bits >> 24, bits & 0xFFFFFF
    if mantissa == 0 or mantissa & 0x800000 or exponent > 32:
        return None
    target = mantissa >> 8 * (3 - exponent) if exponent <= 3 else mantissa << 8 * (exponent - 3)
    if target == 0 or target > REGTEST.pow_limit or target_to_bits(target) != bits:
        return None
    return target


P25519 = 2**255 - 19
SMALL_ORDER_Y = frozenset(
    {0, 1, P25519 - 1}  # order 4, the neutral point, order 2
    | {  # the two y of the points of order 8
        int.from_bytes(bytes.fromhex(h), "little")
        for h in (
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        )
    }
)
WEAK_KEYS = [
    "01" + "00" * 31,  # the neutral point: (R = neutral, S = 0) "signs" every message
    "00" * 32,
    "ec" + "ff" * 30 + "7f",  # y = p - 1
    "ed" + "ff" * 30 + "7f",  # y = p: not canonical
    "ee" + "ff" * 30 + "7f",  # y = p + 1: a second name of the neutral point
    "01" + "00" * 30 + "80",  # the neutral point with the sign bit set
]
REAL_KEYS = [test_key(i).public_key.hex() for i in range(10)]


def is_weak_key(public_key: str) -> bool:
    """Not 32 bytes, a y that is not below p, or a point of small order (the rule
    `bad-public-key`; the small-order y values are curve facts, checked once by hand)."""
    key = bytes.fromhex(public_key)
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    return len(key) != 32 or y >= P25519 or y in SMALL_ORDER_Y


def transfer(sender: int, amount: int, *, fee: int, nonce: int, network: str = "") -> Transaction:
    return Transaction.create(
        KEYS[sender],
        ADDRESSES[(sender + 1) % 4],
        amount,
        fee=fee,
        nonce=nonce,
        timestamp=scenario()[1].timestamp,
        network_id=network or REGTEST.network_id,
    )


def differs(old: object) -> Callable[[object], bool]:
    return lambda value: not (type(value) is type(old) and value == old)


# -- values for one field -------------------------------------------------------------------

U64 = st.integers(0, U64_MAX)
LOWER_HEX = frozenset("0123456789abcdef")
HEX32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
HEX64 = st.binary(min_size=64, max_size=64).map(bytes.hex)
NOT_INT = st.one_of(
    st.floats(allow_nan=True), st.text(max_size=4), st.booleans(), st.none(), st.just([1])
)
NOT_STR = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.just(["ab"]))
BAD_HEX = st.one_of(
    st.binary(max_size=70).map(bytes.hex),  # a wrong length, unless it happens to be right
    HEX32.map(lambda h: "A" + h[1:]),  # uppercase
    st.just("zz" * 32),
)


def uint_values(maximum: int, low: Reason = Reason.OUT_OF_RANGE) -> list[tuple[Any, Reason]]:
    """(strategy, reason) for ill-typed values of an integer field in [0, maximum]."""
    return [
        (st.integers(max_value=-1), low),
        (st.integers(min_value=maximum + 1), low),
        (NOT_INT, Reason.BAD_TYPE),
    ]


def hex_values(nbytes: int, *, empty_ok: bool) -> list[tuple[Any, Reason]]:
    ok_lengths = {2 * nbytes, 0} if empty_ok else {2 * nbytes}
    return [
        (
            BAD_HEX.filter(lambda h: len(h) not in ok_lengths or not LOWER_HEX.issuperset(h)),
            Reason.BAD_HEX,
        ),
        (NOT_STR, Reason.BAD_TYPE),
    ]


BAD_ADDRESSES = [
    st.sampled_from(POOL).map(lambda a: a[:-1] + ("2" if a[-1] != "2" else "3")),  # checksum
    st.text(max_size=40).filter(lambda t: t != "0"),
    NOT_STR,
]

WELL_TYPED: dict[str, Any] = {
    "index": st.integers(1, U64_MAX),
    "timestamp": U64,
    "nonce": U64,
    "bits": st.integers(0, U32_MAX),
    "previous_hash": HEX32,
    "merkle_root": HEX32,
    "amount": st.integers(0, MAX_MONEY),
    "fee": st.integers(0, MAX_MONEY),
    "recipient": st.sampled_from(POOL),
    "sender": st.sampled_from([*POOL, "0"]),
    "public_key": st.one_of(HEX32, st.just(""), st.sampled_from(WEAK_KEYS + REAL_KEYS)),
    "signature": st.one_of(HEX64, st.just("")),
}

ILL_TYPED: dict[str, list[tuple[Any, Reason]]] = {
    "index": [(st.just(0), Reason.OUT_OF_RANGE), *uint_values(U64_MAX)],
    "timestamp": uint_values(U64_MAX),
    "nonce": uint_values(U64_MAX),
    "bits": uint_values(U32_MAX),
    "previous_hash": hex_values(32, empty_ok=False),
    "merkle_root": hex_values(32, empty_ok=False),
    "amount": uint_values(MAX_MONEY, Reason.BAD_AMOUNT),
    "fee": uint_values(MAX_MONEY, Reason.BAD_FEE),
    "recipient": [(s, Reason.BAD_ADDRESS) for s in [*BAD_ADDRESSES, st.just("0")]],
    "sender": [(s, Reason.BAD_ADDRESS) for s in BAD_ADDRESSES],
    "public_key": hex_values(32, empty_ok=True),
    "signature": hex_values(64, empty_ok=True),
}


@st.composite
def json_changes(draw: st.DrawFn) -> tuple[int | None, str, object, Reason]:
    """(None for the header or a transaction's position, field, new value, expected reason)."""
    where = draw(st.sampled_from([None, 0, 1, 2, 3]))
    _, block = scenario()
    obj = block.header if where is None else block.transactions[where]
    field = draw(st.sampled_from(HEADER_FIELDS if where is None else TX_FIELDS))
    if draw(st.booleans()):
        value = draw(WELL_TYPED[field].filter(differs(getattr(obj, field))))
        return where, field, value, Reason.BAD_BLOCK_HASH if where is None else Reason.BAD_TXID
    strategy, reason = draw(st.sampled_from(ILL_TYPED[field]))
    return where, field, draw(strategy), reason


@SETTINGS
@given(change=json_changes())
def test_any_json_change_fails_against_the_old_hash_and_txid(
    change: tuple[int | None, str, object, Reason],
) -> None:
    where, field, value, reason = change
    data = scenario()[1].to_dict()
    target = data if where is None else data["transactions"][where]
    target[field] = value
    with pytest.raises(ValidationError) as info:
        Block.from_dict(data)
    assert info.value.reason == reason, info.value
    if where is not None:
        with pytest.raises(ValidationError) as info:
            Transaction.from_dict(target)
        assert info.value.reason == reason
    event(f"{'header' if where is None else 'tx'} {field}: {reason}")


# -- changes to the objects ---------------------------------------------------------------------

Change = tuple[str, Block, Reason | None]
"""(label, the changed block, the reason it must be refused for; None: it is valid)."""


@st.composite
def transaction_field_changes(draw: st.DrawFn) -> tuple[str, tuple[Transaction, ...]]:
    """One well-typed field of one transaction (coinbase included) changed."""
    _, block = scenario()
    i = draw(st.integers(0, 3))
    tx = block.transactions[i]
    field = draw(st.sampled_from(TX_FIELDS))
    value = draw(WELL_TYPED[field].filter(differs(getattr(tx, field))))
    txs = list(block.transactions)
    txs[i] = replace(tx, **{field: value})
    return f"tx {i} {field}", tuple(txs)


@st.composite
def list_changes(draw: st.DrawFn) -> tuple[str, tuple[Transaction, ...], Reason]:
    """A transaction removed, duplicated, added, replaced, or the order changed (re-mined)."""
    _, block = scenario()
    txs = list(block.transactions)
    how = draw(st.sampled_from(["remove", "reorder", "duplicate", "add", "replace"]))
    if how == "remove":
        i = draw(st.integers(0, 3))
        del txs[i]
        reasons = [
            Reason.BAD_COINBASE,
            *[Reason.INSUFFICIENT_FUNDS] * 2,
            Reason.BAD_COINBASE_AMOUNT,
        ]
        return f"remove {i}", tuple(txs), reasons[i]
    if how == "reorder":
        order = draw(st.permutations(range(4)).filter(lambda p: list(p) != [0, 1, 2, 3]))
        reason = Reason.INSUFFICIENT_FUNDS if order[0] == 0 else Reason.BAD_COINBASE
        return f"order {order}", tuple(txs[i] for i in order), reason
    if how == "duplicate":
        i, at = draw(st.integers(0, 3)), draw(st.integers(0, 4))
        txs.insert(at, txs[i])
        return f"duplicate {i} at {at}", tuple(txs), Reason.DUPLICATE_TX
    n = draw(st.integers(1, 100_000))
    extra_coinbase = Transaction.coinbase(POOL[5], n, block.index, block.timestamp)
    if how == "add":
        what = draw(st.sampled_from(["coinbase", "paying-fee", "other-network", "stale-nonce"]))
        new, reason = {
            "coinbase": (extra_coinbase, Reason.MULTIPLE_COINBASE),
            "paying-fee": (transfer(0, n, fee=n, nonce=1), Reason.BAD_COINBASE_AMOUNT),
            "other-network": (
                transfer(0, n, fee=0, nonce=1, network=DEVNET.network_id),
                Reason.BAD_SIGNATURE,
            ),
            "stale-nonce": (transfer(0, n, fee=0, nonce=0), Reason.BAD_NONCE),
        }[what]
        at = draw(st.integers(1, 4)) if what in ("coinbase", "other-network") else 4
        txs.insert(at, new)
        return f"add {what} at {at}", tuple(txs), reason
    i = draw(st.integers(1, 3))
    what = draw(st.sampled_from(["copy", "coinbase", "other-fee", "overspend"]))
    old = txs[i]
    fee = draw(st.integers(0, 100_000).filter(lambda f: f != old.fee))
    txs[i] = {
        "copy": txs[1 + i % 3],
        "coinbase": extra_coinbase,
        "other-fee": transfer(i - 1, old.amount, fee=fee, nonce=0),
        "overspend": transfer(i - 1, BALANCE_BEFORE[i - 1] - fee + n, fee=fee, nonce=0),
    }[what]
    reason = {
        "copy": Reason.DUPLICATE_TX,
        "coinbase": Reason.MULTIPLE_COINBASE,
        "other-fee": Reason.BAD_COINBASE_AMOUNT,
        "overspend": Reason.INSUFFICIENT_FUNDS,
    }[what]
    return f"replace {i} by {what}", tuple(txs), reason


def signed_field_reason(tx: Transaction, field: str, value: Any) -> Reason:
    """Why a signed transfer with `field` changed to `value` is refused (stateless rules)."""
    amount, fee = (value, tx.fee) if field == "amount" else (tx.amount, value)
    if field == "amount" and value == 0:
        return Reason.BAD_AMOUNT
    if field in ("amount", "fee") and amount + fee > MAX_MONEY:
        return Reason.BAD_FEE
    if field == "sender":
        return Reason.MULTIPLE_COINBASE if value == "0" else Reason.SENDER_KEY_MISMATCH
    if field == "public_key":
        return Reason.BAD_PUBLIC_KEY if is_weak_key(value) else Reason.SENDER_KEY_MISMATCH
    return Reason.BAD_SIGNATURE


@st.composite
def remined_changes(draw: st.DrawFn) -> Change:
    """A change that still parses, with a valid proof of work: refused by a deeper rule."""
    _, block = scenario()
    where = draw(st.sampled_from(["transfer", "coinbase", "header", "list"]))
    if where == "list":
        label, txs, reason = draw(list_changes())
        return label, remine(block, txs), reason
    if where == "transfer":
        i = draw(st.integers(1, 3))
        tx = block.transactions[i]
        field = draw(st.sampled_from(TX_FIELDS))
        value = draw(WELL_TYPED[field].filter(differs(getattr(tx, field))))
        changed = list(block.transactions)
        changed[i] = replace(tx, **{field: value})
        return f"tx {i} {field}", remine(block, changed), signed_field_reason(tx, field, value)
    if where == "coinbase":
        coinbase = block.transactions[0]
        field = draw(
            st.sampled_from(["amount", "fee", "nonce", "public_key", "signature", "sender"])
        )
        strategy = {"nonce": U64, "sender": st.sampled_from(POOL)}.get(field, WELL_TYPED[field])
        value = draw(strategy.filter(differs(getattr(coinbase, field))))
        changed = [replace(coinbase, **{field: value}), *block.transactions[1:]]
        reason = Reason.BAD_COINBASE_AMOUNT if field == "amount" else Reason.BAD_COINBASE
        return f"coinbase {field}", remine(block, changed), reason
    chain_blocks = scenario()[0]
    field = draw(st.sampled_from(["index", "timestamp", "previous_hash", "merkle_root", "bits"]))
    if field == "index":
        value = draw(st.integers(1, U64_MAX).filter(lambda v: v != block.index))
        # The coinbase's nonce no longer matches either, but the header's rules against its
        # parent run before the transactions are checked (docs/protocol.md §7.7).
        reason = Reason.BAD_GENESIS if value == 1 else Reason.BAD_INDEX
    elif field == "timestamp":
        mtp = median_time_past(fresh_chain())
        late = NOW + REGTEST.max_future_block_time + 1
        value = draw(st.one_of(st.integers(0, mtp), st.integers(late, U64_MAX)))
        reason = Reason.TIME_TOO_OLD if value <= mtp else Reason.TIME_TOO_NEW
    elif field == "previous_hash":
        older = [REGTEST.genesis.hash] + [b.hash for b in chain_blocks[:-1]]
        value = draw(st.one_of(HEX32, st.sampled_from(older)))
        reason = Reason.BAD_INDEX if value in older else Reason.UNKNOWN_PARENT
    elif field == "merkle_root":
        value = draw(HEX32.filter(lambda h: h != block.header.merkle_root))
        reason = Reason.BAD_MERKLE_ROOT
    else:
        harder = st.integers(2**248, REGTEST.pow_limit - 1).map(target_to_bits)
        value = draw(
            st.one_of(harder, st.integers(0, U32_MAX).filter(lambda b: not decode_bits(b)))
        )
        if decode_bits(value) is None:  # cannot be mined: the bits are refused before the PoW
            bad = Block(replace(block.header, bits=value), block.transactions)
            return "header bits (non-canonical)", bad, Reason.BAD_BITS
        reason = Reason.BAD_DIFFICULTY
    return f"header {field}", remine(block, **{field: value}), reason


@SETTINGS
@given(change=remined_changes())
def test_a_remined_change_fails_a_deeper_rule_with_its_reason(change: Change) -> None:
    label, bad, reason = change
    assert reason is not None
    chain = fresh_chain()
    before = snapshot(chain)
    if reason is not Reason.BAD_BITS:
        validate_header(bad.header, REGTEST)  # the proof of work is valid: not what refuses it
        assert Block.from_dict(bad.to_dict()) == bad  # well-formed, with its own hash and txids
    with pytest.raises(ValidationError) as info:
        chain.add_block(bad, NOW)
    assert info.value.reason == reason, f"{label}: {info.value}"
    assert snapshot(chain) == before
    event(f"{label}: {reason}")


@st.composite
def changes_keeping_the_pow(draw: st.DrawFn) -> Change:
    """A change with the old header nonce kept (not re-mined); a header change's outcome is
    worked out from the rules' order, the PoW and the timestamp window."""
    _, block = scenario()
    where = draw(st.sampled_from(["transactions", "list", "header"]))
    if where == "transactions":
        label, txs = draw(transaction_field_changes())
        return label, Block(block.header, txs), Reason.BAD_MERKLE_ROOT
    if where == "list":
        label, txs, _ = draw(list_changes())
        return label, Block(block.header, txs), Reason.BAD_MERKLE_ROOT
    field = draw(st.sampled_from(HEADER_FIELDS))
    near = {  # besides any value: times around the allowed window, canonical harder targets
        "timestamp": st.integers(block.timestamp - 20, NOW + REGTEST.max_future_block_time + 20),
        "bits": st.integers(1, REGTEST.pow_limit).map(target_to_bits),
    }
    strategy = st.one_of(WELL_TYPED[field], near.get(field, st.nothing()))
    value = draw(strategy.filter(differs(getattr(block.header, field))))
    changes: dict[str, Any] = {field: value}
    bad = Block(replace(block.header, **changes), block.transactions)
    target = decode_bits(bad.header.bits)
    meets = target is not None and int(bad.hash, 16) <= target
    reason: Reason | None
    if field == "index" and value == 1:
        reason = Reason.BAD_GENESIS
    elif target is None:
        reason = Reason.BAD_BITS
    elif not meets:  # the header's own rules come before its parent is looked up (§7.7)
        reason = Reason.BAD_POW
    elif field == "previous_hash":
        reason = Reason.UNKNOWN_PARENT
    else:
        mtp, late = median_time_past(fresh_chain()), NOW + REGTEST.max_future_block_time
        if field == "timestamp":
            in_window = mtp < value <= late
            reason = (
                None if in_window else Reason.TIME_TOO_OLD if value <= mtp else Reason.TIME_TOO_NEW
            )
        else:
            reason = {
                "index": Reason.BAD_INDEX,  # the parent's rules before the coinbase's
                "merkle_root": Reason.BAD_MERKLE_ROOT,
                "bits": Reason.BAD_DIFFICULTY,
                "nonce": None,
            }[field]
    return f"header {field}", bad, reason


@SETTINGS
@given(change=changes_keeping_the_pow())
def test_a_change_under_the_old_pow_is_refused(change: Change) -> None:
    label, bad, reason = change
    original = scenario()[1]
    data = bad.to_dict() | {"hash": original.hash}
    if bad.header != original.header:  # the old hash no longer matches the header
        with pytest.raises(ValidationError) as info:
            Block.from_dict(data)
        assert info.value.reason == Reason.BAD_BLOCK_HASH
    else:  # the hash covers the header only: the Merkle root is what catches the change
        assert Block.from_dict(data) == bad
        with pytest.raises(ValidationError) as info:
            validate_block(bad, REGTEST)
        assert info.value.reason == Reason.BAD_MERKLE_ROOT
    chain = fresh_chain()
    before = snapshot(chain)
    if reason is None:  # a new nonce or time that the rules allow, meeting the regtest target
        assert chain.add_block(bad, NOW).is_tip
        assert sum(a.balance for a in chain.accounts().values()) == REGTEST.total_supply(5)
        event(f"{label}: a valid sibling")
        return
    with pytest.raises(ValidationError) as info:
        chain.add_block(bad, NOW)
    assert info.value.reason == reason, f"{label}: {info.value}"
    assert snapshot(chain) == before
    event(f"{label}: {reason}")


def test_the_untampered_block_is_valid_and_moves_the_money() -> None:
    """The control: the scenario's block is accepted, so each refusal above is the change's."""
    _, block = scenario()
    assert Block.from_dict(block.to_dict()) == block
    chain = fresh_chain()
    assert chain.add_block(block, NOW).is_tip
    balances = [chain.account(address).balance for address in ADDRESSES]
    assert balances == [
        150 * COIN - AMOUNTS[0] - FEES[0],
        AMOUNTS[0] - AMOUNTS[1] - FEES[1],
        AMOUNTS[1] - AMOUNTS[2] - FEES[2],
        AMOUNTS[2],
    ]
    assert chain.account(MINER.address).balance == REGTEST.subsidy(5) + sum(FEES)


@settings(max_examples=30, deadline=None)
@given(
    recipient=st.sampled_from(POOL),
    stamp=U64,
    offset=st.integers(1, REGTEST.max_future_block_time),
)
def test_what_the_rules_leave_free_can_change_when_remined(
    recipient: str, stamp: int, offset: int
) -> None:
    """The coinbase's recipient and timestamp, and the header time within its window, are the
    miner's choice: re-mined, such a block is valid. (So the re-mining above is sound.)"""
    _, block = scenario()
    coinbase = replace(block.transactions[0], recipient=recipient, timestamp=stamp)
    chain = fresh_chain()
    timestamp = min(median_time_past(chain) + offset, NOW + REGTEST.max_future_block_time)
    changed = remine(block, [coinbase, *block.transactions[1:]], timestamp=timestamp)
    assert chain.add_block(changed, NOW).is_tip
    assert chain.account(recipient).balance >= REGTEST.subsidy(5) + sum(FEES)
