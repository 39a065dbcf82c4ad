"""The explorer's SVG charts: numbers in, pixels and labels out (no template involved)."""

from __future__ import annotations

from typing import Any

from pybtc import DEVNET
from pybtc.pow import bits_to_target, target_to_bits
from services.explorer.charts import block_time_chart, difficulty_chart

LIMIT = DEVNET.pow_limit


def _blocks(times: list[int], bits: list[int] | None = None) -> list[dict[str, Any]]:
    bits = bits or [DEVNET.pow_limit_bits] * len(times)
    return [
        {"index": 10 + i, "timestamp": t, "bits": b}
        for i, (t, b) in enumerate(zip(times, bits, strict=True))
    ]


def _points(chart: Any) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in chart.points.split()]


def test_block_time_is_the_gap_to_the_parent_including_negative_gaps() -> None:
    chart = block_time_chart(_blocks([100, 105, 103, 120]), target_spacing=5)
    points = _points(chart)
    assert len(points) == 3  # three gaps for four blocks
    xs = [x for x, _ in points]
    assert xs == sorted(xs)
    assert xs[0] == chart.left
    assert xs[-1] == chart.right_edge
    ys = [y for _, y in points]
    # 5 s, -2 s, 17 s: the negative gap is drawn lowest (largest y), 17 s highest.
    assert ys[1] > ys[0] > ys[2]
    labels = [label for _, label in chart.ticks_y]
    assert labels[0].startswith("-")
    assert float(labels[-1]) >= 17
    assert chart.reference is not None
    assert chart.reference[1] == "target"
    assert chart.bottom_edge >= chart.reference[0] >= chart.top
    assert "median 5 s" in chart.summary
    assert "target 5 s" in chart.summary
    assert [label for _, label in chart.ticks_x] == ["11", "12", "13"]


def test_difficulty_follows_the_retarget() -> None:
    harder = target_to_bits(bits_to_target(DEVNET.pow_limit_bits) // 4)
    chart = difficulty_chart(
        _blocks([1, 2, 3, 4], [DEVNET.pow_limit_bits] * 2 + [harder] * 2), LIMIT
    )
    ys = [y for _, y in _points(chart)]
    assert ys[0] == ys[1] > ys[2] == ys[3]  # four times the difficulty is drawn higher
    assert "now 4;" in chart.summary
    assert "1 change " in chart.summary
    assert chart.ticks_y[0][1] == "0"


def test_too_few_blocks_draw_nothing() -> None:
    assert block_time_chart(_blocks([100]), 5).empty
    assert difficulty_chart([], LIMIT).empty
    one = difficulty_chart(_blocks([100]), LIMIT)
    assert not one.empty
    assert len(_points(one)) == 1


def test_every_point_stays_inside_the_plot() -> None:
    times = [0, 1, 1, 40_000, 39_000, 39_001, 10**9]
    chart = block_time_chart(_blocks(times), 5)
    for x, y in _points(chart):
        assert chart.left <= x <= chart.right_edge
        assert chart.top <= y <= chart.bottom_edge
    ticks = [y for y, _ in chart.ticks_y]
    assert ticks == sorted(ticks, reverse=True)  # labels go up the axis


def test_genesis_gap_is_left_out_and_a_long_pause_is_clipped() -> None:
    blocks = [
        {"index": 1 + i, "timestamp": t, "bits": DEVNET.pow_limit_bits}
        for i, t in enumerate([0, 10**9, 10**9 + 5, 10**9 + 9, 10**9 + 90_000, 10**9 + 90_006])
    ]
    chart = block_time_chart(blocks, 5)
    assert len(_points(chart)) == 4  # heights 3-6: the gap from genesis to block 2 is left out
    assert chart.ticks_x[0][1] == "3"
    assert "1 gap over 36 s drawn at that line" in chart.summary  # 6 × the median
    ys = [y for _, y in _points(chart)]
    assert ys[2] == min(ys) >= chart.top  # the 90,000 s pause is drawn as 36 s
    assert float(chart.ticks_y[-1][1]) == 40  # and the axis stays readable
