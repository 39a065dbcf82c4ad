"""Fork choice and reorgs in the reference model `MemoryChain`.

Two branches grow from a common block; the tip follows the one with more cumulative work, a tie
stays with the block seen first, and a reorg disconnects to the fork point with undo data and
connects the other branch — its account state equal to a replay of the new main chain.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pybtc import COIN, REGTEST, Account, Block, BlockHeader, Reason, ValidationError
from pybtc.mining import build_block, mine_block
from pybtc.pow import block_work
from pybtc.state import connect_block
from tests.chainutil import NOW, FundedChain, child_block, make_funded_chain, test_key


def _branch_block(f: FundedChain, parent: BlockHeader, txs: list, miner_n: int = 9) -> Block:
    return child_block(parent, txs, miner=test_key(miner_n).address)


def _replayed(blocks: list[Block]) -> dict[str, Account]:
    accounts: dict[str, Account] = {}
    for block in blocks:
        changed, _ = connect_block(block, lambda a: accounts.get(a, Account()), REGTEST)
        accounts.update(changed)
    return {a: acct for a, acct in accounts.items() if acct != Account()}


def test_genesis_only_chain() -> None:
    chain = make_funded_chain(blocks=0).chain
    assert chain.height == 1
    assert chain.tip.hash == REGTEST.genesis.hash
    assert chain.chain_work == block_work(REGTEST.genesis.header.bits)
    assert sum(a.balance for a in chain.accounts().values()) == REGTEST.subsidy(1)


def test_side_branch_with_less_work_is_kept_but_not_followed(funded: FundedChain) -> None:
    fork = funded.chain.block_at(2).header
    side = _branch_block(funded, fork, [])
    result = funded.chain.add_block(side, NOW)
    assert not result.is_tip
    assert funded.chain.get(side.hash) == side
    assert not funded.chain.is_main(side.hash)


def test_tie_goes_to_the_first_seen(funded: FundedChain) -> None:
    tip = funded.chain.tip
    rival = _branch_block(funded, funded.chain.block_at(tip.index - 1).header, [])
    assert not funded.chain.add_block(rival, NOW).is_tip
    assert funded.chain.tip == tip


def test_more_work_reorganises_and_requeues_transactions(funded: FundedChain) -> None:
    alice = funded.others[0]
    spend = funded.transfer(funded.miner, alice.address, 7 * COIN)
    funded.mine([spend])  # height 5 holds the spend
    assert funded.chain.account(alice.address).balance == 7 * COIN
    old_main = [b.hash for b in funded.chain.main_chain()]

    fork = funded.chain.block_at(3).header
    first = _branch_block(funded, fork, [])
    second = _branch_block(funded, first.header, [])
    assert not funded.chain.add_block(first, NOW).is_tip
    assert not funded.chain.add_block(second, NOW).is_tip  # equal work: first seen stays
    third = _branch_block(funded, second.header, [])
    result = funded.chain.add_block(third, NOW)

    assert result.is_tip
    assert result.reorg_depth == 2
    assert [b.hash for b in result.disconnected] == old_main[:2:-1]
    assert [b.hash for b in result.connected] == [first.hash, second.hash, third.hash]
    assert spend in result.disconnected[0].transactions  # tip first; the caller re-queues it
    assert funded.chain.account(alice.address) == Account()
    assert funded.chain.accounts() == _replayed(funded.chain.main_chain())
    total = sum(a.balance for a in funded.chain.accounts().values())
    assert total == REGTEST.total_supply(funded.chain.height)


def test_reorg_back_restores_the_exact_state(funded: FundedChain) -> None:
    funded.mine([funded.transfer(funded.miner, funded.others[0].address, 3 * COIN)])
    before = funded.chain.accounts()
    fork = funded.chain.block_at(3).header
    a = _branch_block(funded, fork, [])
    b = _branch_block(funded, a.header, [])
    c = _branch_block(funded, b.header, [])
    for block in (a, b, c):
        funded.chain.add_block(block, NOW)
    assert funded.chain.tip == c
    # the old branch grows past the new one again
    old_tip = funded.chain.get(funded.chain.block_at(3).hash)
    assert old_tip is not None
    d = _branch_block(funded, c.header, [], miner_n=8)
    funded.chain.add_block(d, NOW)
    assert funded.chain.accounts() == _replayed(funded.chain.main_chain())
    assert funded.chain.accounts() != before


def test_invalid_branch_is_rolled_back_and_marked(funded: FundedChain) -> None:
    tip, accounts = funded.chain.tip, funded.chain.accounts()
    fork = funded.chain.block_at(3).header
    overspend = funded.transfer(funded.miner, funded.others[0].address, 1_000 * COIN)
    bad = _branch_block(funded, fork, [overspend])
    funded.chain.add_block(bad, NOW)  # stored: state rules run only when it would connect
    child = _branch_block(funded, bad.header, [])
    with pytest.raises(ValidationError) as caught:
        funded.chain.add_block(child, NOW)
    assert caught.value.reason is Reason.INSUFFICIENT_FUNDS
    assert funded.chain.tip == tip
    assert funded.chain.accounts() == accounts
    with pytest.raises(ValidationError) as again:
        funded.chain.add_block(_branch_block(funded, child.header, []), NOW)
    assert again.value.reason is Reason.INVALID_ANCESTOR


def test_a_block_cannot_spend_its_own_coinbase(funded: FundedChain) -> None:
    newcomer = test_key(20)
    # the newcomer mines a block and, in the same block, tries to spend its reward
    spend = funded.transfer(newcomer, funded.others[0].address, COIN)
    block = build_block(
        REGTEST,
        funded.chain.tip.header,
        bits=funded.chain.tip.header.bits,
        transactions=[spend],
        miner_address=newcomer.address,
        timestamp=funded.chain.tip.timestamp + 1,
    )
    mined = mine_block(block)
    assert mined is not None
    with pytest.raises(ValidationError) as caught:
        funded.chain.add_block(mined, NOW)
    assert caught.value.reason is Reason.INSUFFICIENT_FUNDS


def test_two_transactions_from_one_sender_in_one_block(funded: FundedChain) -> None:
    bob = funded.others[1].address
    txs = [funded.transfer(funded.miner, bob, COIN, nonce=n) for n in range(3)]
    funded.mine(txs)
    assert funded.chain.account(bob).balance == 3 * COIN
    assert funded.chain.account(funded.miner.address).nonce == 3
    with pytest.raises(ValidationError) as caught:
        funded.mine([txs[0]])  # the very same signed transaction, replayed in a later block
    assert caught.value.reason is Reason.BAD_NONCE


def test_halving_reduces_the_subsidy() -> None:
    assert REGTEST.subsidy(1) == 50 * COIN
    assert REGTEST.subsidy(150) == 50 * COIN
    assert REGTEST.subsidy(151) == 25 * COIN
    assert REGTEST.subsidy(1 + 150 * 64) == 0
    with pytest.raises(ValueError, match="start at 1"):
        REGTEST.subsidy(0)
    assert REGTEST.total_supply(151) == 150 * 50 * COIN + 25 * COIN
    small = replace(REGTEST, halving_interval=2)
    assert small.total_supply(5) == sum(small.subsidy(h) for h in range(1, 6))
