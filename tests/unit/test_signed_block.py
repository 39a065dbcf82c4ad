"""A signed transaction in a block mined at regtest difficulty validates; one changed field fails.

This is the foundation's acceptance story: the whole path from a key to a connected block, and
for each field an attacker might change — in the transaction (amount, recipient, nonce) or in
the header (previous_hash, merkle_root, nonce), or a transaction swapped — the rule that stops
it, both when the block travels with its old hash and when the attacker re-mines it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pybtc import COIN, Block, Reason, Transaction, ValidationError
from pybtc.block import merkle_root
from pybtc.mining import mine_block
from pybtc.pow import bits_to_target
from pybtc.validation import validate_block
from tests.chainutil import NOW, FundedChain


def _signed_block(funded: FundedChain) -> tuple[Block, Transaction]:
    tx = funded.transfer(funded.miner, funded.others[0].address, 12 * COIN, fee=5_000)
    return funded.chain.next_block([tx], funded.miner.address), tx


def _reject(funded: FundedChain, block: Block) -> Reason:
    """Add `block` expecting a rejection; check nothing changed; return the reason code."""
    tip, accounts = funded.chain.tip.hash, funded.chain.accounts()
    with pytest.raises(ValidationError) as caught:
        funded.chain.add_block(block, NOW)
    assert funded.chain.tip.hash == tip
    assert funded.chain.accounts() == accounts
    return caught.value.reason


def _remined(block: Block, *, fix_merkle: bool) -> Block:
    header = block.header
    if fix_merkle:
        header = replace(header, merkle_root=merkle_root([t.txid for t in block.transactions]))
    mined = mine_block(Block(replace(header, nonce=0), block.transactions))
    assert mined is not None
    return mined


def test_signed_transaction_in_mined_block_validates(funded: FundedChain) -> None:
    block, tx = _signed_block(funded)
    recipient = funded.others[0].address
    before = funded.chain.account(funded.miner.address)

    result = funded.chain.add_block(Block.from_dict(block.to_dict()), NOW)

    assert result.is_tip
    assert int(block.hash, 16) <= bits_to_target(block.header.bits)
    assert funded.chain.account(recipient).balance == 12 * COIN
    miner = funded.chain.account(funded.miner.address)
    # sent 12 pyBTC + fee, got the subsidy + the same fee back as the block's miner
    assert miner.balance == before.balance - 12 * COIN + funded.params.subsidy(block.index)
    assert miner.nonce == 1
    assert tx.txid in {t.txid for t in funded.chain.tip.transactions}


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", 13 * COIN), ("recipient", None), ("nonce", 1)],
)
def test_changed_transaction_field_fails(funded: FundedChain, field: str, value: object) -> None:
    block, tx = _signed_block(funded)
    if field == "recipient":
        value = funded.others[1].address
    tampered_tx = replace(tx, **{field: value})
    tampered = Block(block.header, (block.transactions[0], tampered_tx))

    # as sent: the header's Merkle root no longer matches
    assert _reject(funded, tampered) is Reason.BAD_MERKLE_ROOT
    # re-mined with a fixed Merkle root: the signature no longer matches
    assert _reject(funded, _remined(tampered, fix_merkle=True)) is Reason.BAD_SIGNATURE
    # the JSON form with the original txid is refused on parsing
    data = tampered.to_dict()
    data["transactions"][1]["txid"] = tx.txid
    with pytest.raises(ValidationError) as caught:
        Block.from_dict(data)
    assert caught.value.reason is Reason.BAD_TXID


def test_swapped_transaction_fails(funded: FundedChain) -> None:
    block, _ = _signed_block(funded)
    other = funded.transfer(funded.miner, funded.others[1].address, 12 * COIN, fee=5_000)
    swapped = Block(block.header, (block.transactions[0], other))
    assert _reject(funded, swapped) is Reason.BAD_MERKLE_ROOT


@pytest.mark.parametrize("field", ["previous_hash", "merkle_root", "nonce"])
def test_changed_header_field_fails(funded: FundedChain, field: str) -> None:
    block, _ = _signed_block(funded)
    header = block.header
    if field == "nonce":
        target = bits_to_target(header.bits)
        value: object = next(
            n
            for n in range(header.nonce + 1, header.nonce + 1000)
            if int(block.with_nonce(n).hash, 16) > target
        )
    else:
        value = "44" * 32
    tampered = replace(block, header=replace(header, **{field: value}))

    data = tampered.to_dict()
    data["hash"] = block.hash
    with pytest.raises(ValidationError) as caught:
        Block.from_dict(data)
    assert caught.value.reason is Reason.BAD_BLOCK_HASH

    expected = {
        "previous_hash": Reason.UNKNOWN_PARENT,
        "merkle_root": Reason.BAD_MERKLE_ROOT,
        "nonce": Reason.BAD_POW,
    }[field]
    candidate = _remined(tampered, fix_merkle=False) if field != "nonce" else tampered
    assert _reject(funded, candidate) is expected


def test_tampered_header_without_remining_fails_pow_or_merkle(funded: FundedChain) -> None:
    block, _ = _signed_block(funded)
    tampered = replace(block, header=replace(block.header, merkle_root="55" * 32))
    with pytest.raises(ValidationError) as caught:
        validate_block(tampered, funded.params)
    assert caught.value.reason in {Reason.BAD_POW, Reason.BAD_MERKLE_ROOT}
