"""Every reason code has a test that triggers it, through the rule that owns it.

`CASES` maps each `Reason` to a function that makes the one bad thing and returns a callable
that must raise. `test_every_reason_has_a_case` keeps the table complete: a new code without a
case fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from pybtc import (
    COIN,
    MAX_MONEY,
    REGTEST,
    Block,
    BlockHeader,
    ChainError,
    Reason,
    Transaction,
    ValidationError,
)
from pybtc.block import merkle_root
from pybtc.chain import MemoryChain
from pybtc.mining import build_block, mine_block
from pybtc.pow import bits_to_target
from pybtc.validation import validate_block, validate_block_context, validate_transaction
from tests.chainutil import NOW, FundedChain, child_block, make_funded_chain

Trigger = Callable[[], object]


def _tx(f: FundedChain, **changes: object) -> dict[str, object]:
    """A valid transfer from the miner as JSON, with `changes` applied to the dict."""
    data = f.transfer(f.miner, f.others[0].address, COIN).to_dict()
    data.update(changes)
    return data


def _block_on_tip(f: FundedChain, txs: tuple[Transaction, ...] = (), **header: object) -> Block:
    """A mined block on the tip with `txs` after the coinbase and `header` fields overridden."""
    block = f.chain.next_block(list(txs), f.miner.address)
    if header:
        block = replace(block, header=replace(block.header, **header))
        block = _remine(block)
    return block


def _remine(block: Block) -> Block:
    """Search a nonce that meets the block's own target (so PoW is not what fails)."""
    mined = mine_block(block.with_nonce(0))
    assert mined is not None
    return mined


def _with_txs(f: FundedChain, txs: tuple[Transaction, ...], **header: object) -> Block:
    """A block on the tip holding exactly `txs` (coinbase included), Merkle root fixed, mined."""
    template = f.chain.next_block([], f.miner.address)
    head = replace(template.header, merkle_root=merkle_root([t.txid for t in txs]), **header)
    return _remine(Block(head, txs))


def _add(f: FundedChain, block: Block) -> Trigger:
    return lambda: f.chain.add_block(block, NOW)


def case_missing_field(f: FundedChain) -> Trigger:
    data = _tx(f)
    del data["amount"]
    return lambda: Transaction.from_dict(data)


def case_unknown_field(f: FundedChain) -> Trigger:
    return lambda: Transaction.from_dict(_tx(f, colour="blue"))


def case_bad_type(f: FundedChain) -> Trigger:
    return lambda: Transaction.from_dict(_tx(f, amount=0.1))


def case_bad_hex(f: FundedChain) -> Trigger:
    data = _tx(f)
    return lambda: Transaction.from_dict({**data, "public_key": str(data["public_key"]).upper()})


def case_out_of_range(f: FundedChain) -> Trigger:
    return lambda: Transaction.from_dict(_tx(f, nonce=2**64))


def case_bad_address(f: FundedChain) -> Trigger:
    good = f.others[0].address
    typo = good[:10] + ("2" if good[10] != "2" else "3") + good[11:]
    return lambda: Transaction.from_dict(_tx(f, recipient=typo))


def case_bad_amount(f: FundedChain) -> Trigger:
    return lambda: Transaction.from_dict(_tx(f, amount=-5))


def case_bad_fee(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, MAX_MONEY, fee=1)
    return lambda: validate_transaction(tx, REGTEST)


def case_bad_public_key(f: FundedChain) -> Trigger:
    tx = Transaction(f.miner.address, f.others[0].address, COIN, 0, 0, NOW)
    return lambda: validate_transaction(tx, REGTEST)


def case_sender_key_mismatch(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, COIN)
    forged = replace(tx, sender=f.others[1].address)
    return lambda: validate_transaction(forged, REGTEST)


def case_bad_signature(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, COIN)
    stolen = replace(tx, amount=2 * COIN)  # the signature was made over 1 pyBTC
    return lambda: validate_transaction(stolen, REGTEST)


def case_bad_txid(f: FundedChain) -> Trigger:
    return lambda: Transaction.from_dict(_tx(f, txid="00" * 32))


def case_coinbase_outside_block(f: FundedChain) -> Trigger:
    coinbase = f.chain.tip.transactions[0]
    return lambda: validate_transaction(coinbase, REGTEST)


def case_bad_nonce(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, COIN, nonce=1)  # the next nonce is 0
    return _add(f, _block_on_tip(f, (tx,)))


def case_insufficient_funds(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, 151 * COIN)  # the miner holds 150
    return _add(f, _block_on_tip(f, (tx,)))


def case_bad_block_hash(f: FundedChain) -> Trigger:
    data = _block_on_tip(f).to_dict()
    data["hash"] = "00" * 32
    return lambda: Block.from_dict(data)


def case_bad_bits(f: FundedChain) -> Trigger:
    block = _block_on_tip(f)
    negative = replace(block, header=replace(block.header, bits=0x20800000))  # the sign bit
    return _add(f, negative)


def case_bad_pow(f: FundedChain) -> Trigger:
    block = _block_on_tip(f)
    target = bits_to_target(block.header.bits)
    nonce = next(
        n
        for n in range(1000)
        if int(block.with_nonce(n).hash, 16) > target  # about half of all nonces fail
    )
    return _add(f, block.with_nonce(nonce))


def case_bad_merkle_root(f: FundedChain) -> Trigger:
    return _add(f, _block_on_tip(f, merkle_root="11" * 32))


def case_no_transactions(f: FundedChain) -> Trigger:
    template = f.chain.next_block([], f.miner.address)
    return _add(f, _remine(Block(template.header, ())))


def case_bad_coinbase(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, COIN)
    return _add(f, _with_txs(f, (tx,)))


def case_multiple_coinbase(f: FundedChain) -> Trigger:
    height = f.chain.height + 1
    first = Transaction.coinbase(f.miner.address, 25 * COIN, height, NOW)
    second = Transaction.coinbase(f.others[0].address, 25 * COIN, height, NOW)
    return _add(f, _with_txs(f, (first, second)))


def case_duplicate_tx(f: FundedChain) -> Trigger:
    tx = f.transfer(f.miner, f.others[0].address, COIN)
    template = f.chain.next_block([tx], f.miner.address)
    coinbase = replace(template.transactions[0], amount=REGTEST.subsidy(5) + 2 * tx.fee)
    return _add(f, _with_txs(f, (coinbase, tx, tx)))


def case_block_too_large(f: FundedChain) -> Trigger:
    small = replace(REGTEST, max_block_transactions=2)
    txs = tuple(f.transfer(f.miner, f.others[0].address, COIN, nonce=n) for n in range(2))
    block = f.chain.next_block(list(txs), f.miner.address)
    return lambda: validate_block(block, small)


def case_bad_genesis(f: FundedChain) -> Trigger:
    fake = replace(REGTEST.genesis, header=replace(REGTEST.genesis.header, timestamp=NOW))
    return lambda: MemoryChain(REGTEST).add_block(_remine(fake), NOW)


def case_bad_prev_hash(f: FundedChain) -> Trigger:
    block = _block_on_tip(f, previous_hash="22" * 32)
    parent = f.chain.tip.header
    lookup = f.chain.ancestor_lookup(parent.hash)
    return lambda: validate_block_context(block.header, parent, lookup, REGTEST, NOW)


def case_bad_index(f: FundedChain) -> Trigger:
    tip = f.chain.tip.header
    skipped = replace(tip, index=tip.index + 1)  # as if one block came between
    block = build_block(
        REGTEST,
        skipped,
        bits=tip.bits,
        transactions=[],
        miner_address=f.miner.address,
        timestamp=tip.timestamp + 1,
    )
    return _add(f, _remine(replace(block, header=replace(block.header, previous_hash=tip.hash))))


def case_bad_difficulty(f: FundedChain) -> Trigger:
    return _add(f, _block_on_tip(f, bits=0x1F7FFFFF))  # harder than regtest's fixed bits


def case_time_too_old(f: FundedChain) -> Trigger:
    return _add(f, _block_on_tip(f, timestamp=REGTEST.genesis.timestamp))


def case_time_too_new(f: FundedChain) -> Trigger:
    return _add(f, _block_on_tip(f, timestamp=NOW + REGTEST.max_future_block_time + 1))


def case_bad_coinbase_amount(f: FundedChain) -> Trigger:
    parent = f.chain.tip.header
    block = build_block(
        REGTEST,
        parent,
        bits=parent.bits,
        transactions=[],
        miner_address=f.miner.address,
        timestamp=parent.timestamp + 1,
    )
    greedy = replace(block.transactions[0], amount=block.transactions[0].amount + 1)
    return _add(f, _with_txs(f, (greedy,)))


def case_unknown_parent(f: FundedChain) -> Trigger:
    return _add(f, _block_on_tip(f, previous_hash="33" * 32))


def case_duplicate_block(f: FundedChain) -> Trigger:
    return _add(f, f.chain.tip)


def case_invalid_ancestor(f: FundedChain) -> Trigger:
    # A side branch from the tip's parent whose first block breaks a state rule: stored while
    # it has less work, found invalid when its child makes it the best branch.
    fork = f.chain.block_at(f.chain.height - 1).header
    spend = f.transfer(f.miner, f.others[0].address, COIN, nonce=7)
    bad = _side_block(f, fork, (spend,))
    f.chain.add_block(bad, NOW)
    child = _side_block(f, bad.header, ())
    with pytest.raises(ValidationError) as caught:
        f.chain.add_block(child, NOW)
    assert caught.value.reason is Reason.BAD_NONCE
    grandchild = _side_block(f, child.header, ())
    return _add(f, grandchild)


def _side_block(f: FundedChain, parent: BlockHeader, txs: tuple[Transaction, ...]) -> Block:
    return child_block(parent, txs, miner=f.others[2].address)


CASES: dict[Reason, Callable[[FundedChain], Trigger]] = {
    reason: globals()["case_" + reason.value.replace("-", "_")] for reason in Reason
}


def test_every_reason_has_a_case() -> None:
    assert set(CASES) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_reason_is_raised(reason: Reason) -> None:
    funded = make_funded_chain(blocks=3)
    trigger = CASES[reason](funded)
    tip, accounts = funded.chain.tip.hash, funded.chain.accounts()
    with pytest.raises(ValidationError) as caught:
        trigger()
    assert caught.value.reason is reason, str(caught.value)
    assert caught.value.to_dict() == {"error": caught.value.message, "reason": reason.value}
    # a rejection changes nothing
    assert funded.chain.tip.hash == tip
    assert funded.chain.accounts() == accounts


def test_chain_errors_are_validation_errors() -> None:
    assert issubclass(ChainError, ValidationError)
