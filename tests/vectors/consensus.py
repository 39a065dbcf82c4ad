"""Vectors of the consensus numbers: pow.json, difficulty.json, subsidy.json, params.json and
reasons.json.

docs/protocol.md sections 6, 8, 10 and 11 describe what these values are.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pybtc import DEVNET, REGTEST
from pybtc.block import ZERO_HASH, BlockHeader
from pybtc.difficulty import (
    ancestor_timestamps,
    is_retarget_height,
    median_time_past,
    next_bits,
    retarget,
)
from pybtc.encoding import sha256
from pybtc.errors import Reason
from pybtc.params import GENESIS_MESSAGE, GENESIS_TIME, NETWORKS, ChainParams
from pybtc.pow import bits_to_target, block_work, hash_meets_target, round_target, target_to_bits
from tests.vectors.common import T0, bits_hex, rejection, target_hex

# -- pow.json ---------------------------------------------------------------------------------


def pow_vectors() -> dict[str, Any]:
    """Compact bits <-> target, rejected bits, rounding, work, and the hash comparison."""
    good_bits = [
        0x01010000,
        0x02008000,
        0x03123456,
        0x04123456,
        0x1B0404CB,
        0x1D00FFFF,
        0x1E080000,
        0x1F00FFFF,
        0x207FFFFF,
        0x21008000,
        0x2100FFFF,
    ]
    bad_bits = [
        0x00000000,
        0x00000001,
        0x01003456,
        0x03000001,
        0x04000080,
        0x1D0000FF,
        0x1D000000,
        0x1D800000,
        0x20800000,
        0x21010000,
        0x22010000,
        0x220000FF,
        0xFF7FFFFF,
        2**32,
    ]
    targets = [
        1,
        0x7F,
        0x80,
        0xFF,
        0x123456789ABCDEF,
        (0xFFFF << 208) + 12_345,
        0x7FFFFF << 232,
        2**255,
        2**256 - 1,
    ]
    to_bits = [
        {
            "target": target_hex(target),
            "bits": target_to_bits(target),
            "bits_hex": bits_hex(target_to_bits(target)),
            "decoded_target": target_hex(round_target(target)),
        }
        for target in targets
    ]
    limit = bits_to_target(0x1D00FFFF)
    comparisons = [
        ("hash equal to the target", limit, 0x1D00FFFF),
        ("hash one above the target", limit + 1, 0x1D00FFFF),
        ("hash zero", 0, 0x1D00FFFF),
        ("regtest genesis", int(REGTEST.genesis.hash, 16), REGTEST.genesis.header.bits),
        ("devnet genesis", int(DEVNET.genesis.hash, 16), DEVNET.genesis.header.bits),
    ]
    chain_bits = [0x207FFFFF, 0x207FFFFF, 0x1F00FFFF, 0x1E080000]
    return {
        "description": "Proof of work (docs/protocol.md section 6): target = mantissa * "
        "256**(exponent - 3), below 2**256, canonical bits only, valid when int(hash) <= target, "
        "work = 2**256 // (target + 1). Targets are 64 hex digits, work is decimal.",
        "bits": [
            {
                "bits": b,
                "bits_hex": bits_hex(b),
                "target": target_hex(bits_to_target(b)),
                "work": str(block_work(b)),
            }
            for b in good_bits
        ],
        "rejected_bits": [
            {"bits": b, "bits_hex": bits_hex(b)} | rejection(partial(bits_to_target, b))
            for b in bad_bits
        ],
        "target_to_bits": to_bits,
        "hash_meets_target": [
            {
                "case": name,
                "hash": target_hex(h),
                "bits": b,
                "target": target_hex(bits_to_target(b)),
                "meets": hash_meets_target(h.to_bytes(32, "big"), bits_to_target(b)),
            }
            for name, h, b in comparisons
        ],
        "cumulative_work": {
            "bits": chain_bits,
            "work": [str(block_work(b)) for b in chain_bits],
            "total": str(sum(block_work(b) for b in chain_bits)),
        },
    }


# -- difficulty.json --------------------------------------------------------------------------


def retarget_case(name: str, bits: int, actual: int, params: ChainParams) -> dict[str, Any]:
    """One retarget with its intermediate values, recomputed here as docs/protocol.md §6 says.

    The assertion ties that description to `pybtc.difficulty.retarget`: if the rule in the code
    changes, generating fails until this function (and the document) say the same again.
    """
    expected, clamp = params.target_timespan, params.retarget_clamp
    old_target = bits_to_target(bits)
    if actual * clamp < expected:
        branch, scaled = "fast: old // clamp", old_target // clamp
    elif actual > expected * clamp:
        branch, scaled = "slow: old * clamp", old_target * clamp
    else:
        branch, scaled = "old * actual // expected", old_target * actual // expected
    new_bits = retarget(bits, actual, params)
    assert new_bits == target_to_bits(max(1, min(scaled, params.pow_limit))), name
    return {
        "case": name,
        "network": params.name,
        "old_bits": bits,
        "old_bits_hex": bits_hex(bits),
        "actual_timespan": actual,
        "expected_timespan": expected,
        "rule": branch,
        "scaled_target": target_hex(scaled),
        "capped": scaled > params.pow_limit,
        "new_bits": new_bits,
        "new_bits_hex": bits_hex(new_bits),
        "new_target": target_hex(bits_to_target(new_bits)),
    }


def difficulty_vectors() -> dict[str, Any]:
    """Retargets (clamps and cap included), retarget heights, median-time-past."""
    cases = [
        ("on time", 0x1E080000, 95),
        ("twice as fast", 0x1E080000, 47),
        ("twice as slow", 0x1E080000, 190),
        ("one second late (rounds down to compact precision)", 0x1D00FFFF, 96),
        ("just inside the fast clamp: 24 * 4 >= 95", 0x1E080000, 24),
        ("just past the fast clamp: 23 * 4 < 95", 0x1E080000, 23),
        ("far past the fast clamp", 0x1E080000, 1),
        ("negative timespan (fast clamp)", 0x1E080000, -100),
        ("exactly the slow clamp: 380 = 95 * 4", 0x1E080000, 380),
        ("just past the slow clamp", 0x1E080000, 381),
        ("far past the slow clamp", 0x1E080000, 10_000),
        ("at the pow limit, slow: capped", 0x1F00FFFF, 380),
        ("near the pow limit, x3: capped", 0x1E7FFF00, 285),
        ("near the pow limit, x1.5: not capped", 0x1E7FFF00, 142),
        ("smallest target stays 1", 0x01010000, 1),
        ("target 1, on time", 0x01010000, 95),
        ("Bitcoin-sized target, fast", 0x1B0404CB, 50),
    ]
    heights = [1, 2, 20, 21, 22, 40, 41, 61, 62]
    windows = [
        {"height": h, "first_height": h - DEVNET.retarget_interval, "parent_height": h - 1}
        for h in heights
        if is_retarget_height(h, DEVNET)
    ]
    mtp_lists = [
        [T0],
        [T0, T0 + 5],
        [T0 + 5, T0],
        [T0 + 1, T0 + 9, T0 + 3],
        [T0 + i for i in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5)],
        [T0 + i for i in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)],
    ]
    return {
        "description": "Difficulty (docs/protocol.md section 6). Block h retargets when "
        "(h - 1) % retarget_interval == 0 and h > 1 (never on regtest); actual_timespan = "
        "time(h-1) - time(h-interval); the new target is old // 4 if actual * 4 < expected, "
        "old * 4 if actual > expected * 4, else old * actual // expected; then capped at the "
        "pow limit, floored at 1 and rounded down to compact precision.",
        "retarget": [retarget_case(name, b, a, DEVNET) for name, b, a in cases],
        "retarget_heights": {
            name: {str(h): is_retarget_height(h, params) for h in heights}
            for name, params in NETWORKS.items()
        },
        "retarget_windows": windows,
        "next_bits": next_bits_vector(),
        "median_time_past": [
            {"timestamps": ts, "median": median_time_past(ts)} for ts in mtp_lists
        ],
        "median_time_past_window": [
            {"parent_height": p, "heights": mtp_heights(p)} for p in (1, 2, 5, 11, 12, 100)
        ],
    }


def _headers(times: list[int], bits: int) -> dict[int, BlockHeader]:
    return {
        h: BlockHeader(h, t, ZERO_HASH, ZERO_HASH, bits, 0) for h, t in enumerate(times, start=1)
    }


def next_bits_vector() -> dict[str, Any]:
    """Devnet block 21's bits from 20 headers 2 seconds apart (the window is 38 s for 95)."""
    times = [T0 + 2 * i for i in range(20)]
    headers = _headers(times, DEVNET.genesis.header.bits)
    bits = next_bits(headers[20], headers.__getitem__, DEVNET)
    return {
        "network": DEVNET.name,
        "bits": DEVNET.genesis.header.bits,
        "timestamps": times,
        "height": 21,
        "actual_timespan": times[-1] - times[0],
        "new_bits": bits,
        "new_bits_hex": bits_hex(bits),
    }


def mtp_heights(parent_height: int) -> list[int]:
    """The heights whose timestamps make the median-time-past for a child of `parent_height`."""
    times = [T0 + h for h in range(1, parent_height + 1)]
    headers = _headers(times, REGTEST.pow_limit_bits)
    stamps = ancestor_timestamps(headers[parent_height], headers.__getitem__, DEVNET)
    return [t - T0 for t in stamps]


# -- subsidy.json, params.json, reasons.json --------------------------------------------------


def subsidy_vectors() -> dict[str, Any]:
    """The block subsidy and the total supply at chosen heights of each network."""
    out: dict[str, Any] = {}
    for name, params in NETWORKS.items():
        n = params.halving_interval
        heights = [1, 2, n, n + 1, 2 * n, 2 * n + 1, 10 * n + 1, 32 * n + 1, 33 * n + 1, 64 * n + 1]
        out[name] = {
            "halving_interval": n,
            "subsidy": [{"height": h, "subsidy": params.subsidy(h)} for h in heights],
            "total_supply": [
                {"height": h, "total": params.total_supply(h)} for h in [0, *heights, 100 * n]
            ],
        }
    rejected = []
    for height in (0, -1):
        try:
            REGTEST.subsidy(height)
        except ValueError as exc:
            rejected.append({"height": height, "error": str(exc)})
        else:  # pragma: no cover - heights start at 1
            raise AssertionError(height)
    return {
        "description": "Subsidy (docs/protocol.md section 8): initial_subsidy >> ((height - 1) "
        "// halving_interval), 0 from 64 halvings on; total_supply(h) = sum of subsidies 1..h. "
        "Heights start at 1 (genesis): subsidy of a height below 1 is an error.",
        "networks": out,
        "subsidy_rejected_heights": rejected,
    }


def params_vectors() -> dict[str, Any]:
    """Every ChainParams field of each network, and each genesis block in full."""
    networks = {}
    for name, p in NETWORKS.items():
        networks[name] = {
            "name": p.name,
            "network_id": p.network_id,
            "pow_limit_bits": p.pow_limit_bits,
            "pow_limit_bits_hex": bits_hex(p.pow_limit_bits),
            "pow_limit": target_hex(p.pow_limit),
            "target_block_time": p.target_block_time,
            "retarget_interval": p.retarget_interval,
            "target_timespan": p.target_timespan,
            "retarget_clamp": p.retarget_clamp,
            "no_retargeting": p.no_retargeting,
            "median_time_span": p.median_time_span,
            "max_future_block_time": p.max_future_block_time,
            "initial_subsidy": p.initial_subsidy,
            "halving_interval": p.halving_interval,
            "max_block_transactions": p.max_block_transactions,
            "genesis": {
                "hash": p.genesis.hash,
                "header": p.genesis.header.encode().hex(),
                "coinbase_txid": p.genesis.transactions[0].txid,
                "work": str(block_work(p.genesis.header.bits)),
                "block": p.genesis.to_dict(),
            },
        }
    return {
        "description": "Network parameters and genesis blocks (docs/protocol.md section 10).",
        "genesis_time": GENESIS_TIME,
        "genesis_message": GENESIS_MESSAGE,
        "genesis_reward_payload": sha256(GENESIS_MESSAGE.encode())[:20].hex(),
        "networks": networks,
    }


def reasons_vectors() -> dict[str, Any]:
    """Every reason code, in the order pybtc.errors declares them."""
    return {
        "description": "Reason codes carried by every rejection (docs/protocol.md section 11).",
        "codes": [{"name": r.name, "code": r.value} for r in Reason],
    }
