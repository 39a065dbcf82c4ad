"""Difficulty retarget and block-time rules: what a block must say given its ancestors.

Retarget (docs/protocol.md §6): the block at height h with (h - 1) % interval == 0 (h > 1)
gets a new target. Its window is the `interval` blocks h-interval .. h-1, which all share one
target; they were found in `actual = time(h-1) - time(h-interval)` seconds, over interval - 1
gaps, where `expected = (interval - 1) * target_block_time`. Then

    new_target = old_target // 4              if actual * 4 < expected
                 old_target * 4               if actual > expected * 4
                 old_target * actual // expected  otherwise

capped at the network's pow limit and rounded to compact precision. Every other block keeps
its parent's bits.

Time: a block's timestamp must be greater than the median of its last 11 ancestors'
(median-time-past) and at most `max_future_block_time` ahead of the validating node's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pybtc.block import BlockHeader
from pybtc.params import ChainParams
from pybtc.pow import bits_to_target, target_to_bits

Ancestor = Callable[[int], BlockHeader]
"""Looks up the header at a height on the branch being extended (height <= the parent's)."""


def is_retarget_height(height: int, params: ChainParams) -> bool:
    """True where a block's bits are recomputed rather than copied from its parent."""
    return not params.no_retargeting and height > 1 and (height - 1) % params.retarget_interval == 0


def retarget(bits: int, actual_timespan: int, params: ChainParams) -> int:
    """Rule retarget: scale the old target by actual/expected time, clamped and capped."""
    expected = params.target_timespan
    clamp = params.retarget_clamp
    old_target = bits_to_target(bits)
    if actual_timespan * clamp < expected:  # blocks came more than 4x too fast
        new_target = old_target // clamp
    elif actual_timespan > expected * clamp:  # more than 4x too slow
        new_target = old_target * clamp
    else:
        new_target = old_target * actual_timespan // expected
    return target_to_bits(max(1, min(new_target, params.pow_limit)))


def next_bits(parent: BlockHeader, ancestor: Ancestor, params: ChainParams) -> int:
    """Rule `bad-difficulty`: the bits the child of `parent` must carry."""
    height = parent.index + 1
    if not is_retarget_height(height, params):
        return parent.bits
    first = ancestor(height - params.retarget_interval)
    return retarget(parent.bits, parent.timestamp - first.timestamp, params)


def median_time_past(timestamps: Sequence[int]) -> int:
    """The median of the given ancestor timestamps (upper median for an even count)."""
    ordered = sorted(timestamps)
    return ordered[len(ordered) // 2]


def ancestor_timestamps(parent: BlockHeader, ancestor: Ancestor, params: ChainParams) -> list[int]:
    """The timestamps of `parent` and its ancestors, at most `median_time_span` of them."""
    first = max(1, parent.index - params.median_time_span + 1)
    return [ancestor(height).timestamp for height in range(first, parent.index)] + [
        parent.timestamp
    ]
