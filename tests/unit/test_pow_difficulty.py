"""Compact bits, work, the retarget rule with its ×4 clamp, and median-time-past."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pybtc import DEVNET, REGTEST, BlockError, Reason
from pybtc.block import BlockHeader
from pybtc.difficulty import is_retarget_height, median_time_past, next_bits, retarget
from pybtc.pow import bits_to_target, block_work, round_target, search_nonce, target_to_bits
from pybtc.validation import validate_block


@pytest.mark.parametrize(
    "bits", [0x1D00FFFF, 0x207FFFFF, 0x1F00FFFF, 0x1E080000, 0x03123456, 0x01120000]
)
def test_canonical_bits_round_trip(bits: int) -> None:
    assert target_to_bits(bits_to_target(bits)) == bits


@pytest.mark.parametrize(
    "bits",
    [0x20800000, 0x00000000, 0x1D000000, 0x22010000, 0x21010000, 0x1D0000FF, 0x04000001, 2**32, -1],
)
def test_non_canonical_or_negative_bits_are_rejected(bits: int) -> None:
    with pytest.raises(BlockError) as caught:
        bits_to_target(bits)
    assert caught.value.reason is Reason.BAD_BITS


def test_target_to_bits_avoids_the_sign_bit() -> None:
    assert target_to_bits(0x80) == 0x02008000
    assert bits_to_target(0x02008000) == 0x80
    assert round_target(2**240 - 1) == 0xFFFF << 224
    assert round_target(2**255) == 2**255  # exponent 0x21 with a small mantissa is still < 2**256
    assert round_target(2**256 - 1) == 0xFFFF << 240


def test_work_doubles_when_the_target_halves() -> None:
    easy = block_work(0x1E080000)
    hard = block_work(target_to_bits(bits_to_target(0x1E080000) // 2))
    assert hard == pytest.approx(2 * easy, rel=1e-6)
    assert block_work(REGTEST.pow_limit_bits) == 2  # regtest: about two hashes per block


def _retarget_params() -> object:
    return replace(DEVNET, retarget_interval=10, target_block_time=10)


def test_retarget_scales_with_time_and_clamps_at_four() -> None:
    params = replace(DEVNET, retarget_interval=10, target_block_time=10)
    old = 0x1E080000
    expected = params.target_timespan
    assert expected == 90
    same = bits_to_target(retarget(old, expected, params))
    assert same == bits_to_target(old)
    twice_as_slow = bits_to_target(retarget(old, 2 * expected, params))
    assert twice_as_slow == 2 * bits_to_target(old)
    assert bits_to_target(retarget(old, 100 * expected, params)) == 4 * bits_to_target(old)
    assert bits_to_target(retarget(old, 0, params)) == round_target(bits_to_target(old) // 4)
    assert retarget(params.pow_limit_bits, 10 * expected, params) == params.pow_limit_bits


def test_next_bits_only_changes_at_retarget_heights() -> None:
    params = replace(DEVNET, retarget_interval=10, target_block_time=10)
    headers = {
        h: BlockHeader(h, 1_000 + 20 * h, "00" * 32, "00" * 32, 0x1E080000, 0) for h in range(1, 30)
    }
    assert not is_retarget_height(10, params)
    assert is_retarget_height(11, params)
    assert next_bits(headers[9], headers.__getitem__, params) == 0x1E080000
    # blocks 1..10 took 20 s each, twice the 10 s target: the target doubles
    new = next_bits(headers[10], headers.__getitem__, params)
    assert bits_to_target(new) == 2 * bits_to_target(0x1E080000)
    assert next_bits(headers[10], headers.__getitem__, REGTEST) == 0x1E080000  # no retargeting


def test_median_time_past() -> None:
    assert median_time_past([5]) == 5
    assert median_time_past([1, 9, 3]) == 3
    assert median_time_past([4, 1, 3, 2]) == 3
    assert median_time_past(list(range(11))) == 5


def test_search_nonce_finds_a_valid_nonce_and_respects_the_range() -> None:
    prefix = b"\x01" * 84
    target = 2**248
    nonce = search_nonce(prefix, target, 0, 10_000)
    assert nonce is not None
    assert search_nonce(prefix, target, 0, nonce) is None
    assert search_nonce(prefix, target, nonce, 1) == nonce


@pytest.mark.parametrize("params", [DEVNET, REGTEST], ids=lambda p: p.name)
def test_genesis_blocks_are_valid(params: object) -> None:
    from pybtc.params import ChainParams

    assert isinstance(params, ChainParams)
    validate_block(params.genesis, params)
    assert params.genesis.index == 1
    assert params.genesis.previous_hash == "00" * 32
    assert params.genesis.transactions[0].amount == params.subsidy(1)
    assert bits_to_target(params.genesis.header.bits) <= params.pow_limit
