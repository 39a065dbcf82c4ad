"""Per-client quotas (`services.common.quota`): token buckets, the 429 they refuse with, and
the memory they keep."""

from __future__ import annotations

import pytest

from services.common.quota import ClientQuota, TokenBuckets
from services.common.web import ServiceError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # the next token in half a second
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0  # another key has its own bucket


def test_a_refused_take_takes_nothing() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    assert buckets.take("a", cost=2) == 0.0
    assert buckets.take("a", cost=2) == pytest.approx(2.0)
    clock.now += 1
    assert buckets.take("a") == 0.0  # the refused take left the token that came back


def test_rate_zero_never_refuses() -> None:
    buckets = TokenBuckets(rate=0, burst=1)
    assert all(buckets.take("a") == 0.0 for _ in range(1000))


def test_the_least_recently_seen_key_is_forgotten() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock, max_keys=2)
    buckets.take("a")
    buckets.take("b")
    buckets.take("a")  # a is now the most recent
    buckets.take("c")  # forgets b
    assert list(buckets.buckets) == ["a", "c"]
    assert buckets.take("b") == 0.0  # b starts with a full bucket again


def test_a_quota_refuses_with_its_reason_and_retry_after() -> None:
    clock = Clock()
    quota = ClientQuota(
        "registrations", 0.5, 1, reason="too-many-registrations", setting="X", clock=clock
    )
    assert quota.allow("127.0.0.1")
    assert not quota.allow("127.0.0.1")
    with pytest.raises(ServiceError) as caught:
        quota.take("127.0.0.1")
    exc = caught.value
    assert (exc.status, exc.reason) == (429, "too-many-registrations")
    assert exc.headers["Retry-After"] == "2"
    assert "registrations" in exc.message
    assert "(X)" in exc.message
    clock.now += 2
    quota.take("127.0.0.1")


def test_a_look_remembers_no_one_and_a_crowd_does_not_wipe_out_a_debt() -> None:
    """`check` (a peek) of unknown clients adds none; new clients past the memory evict the
    least recently seen bucket that owes nothing, never one in debt (a /48 of fresh clients
    must not erase what one client owes for its bad blocks)."""
    clock = Clock()
    quota = ClientQuota("bad blocks", 0.5, 20, max_clients=3)
    quota.buckets.clock = clock
    quota.charge("debtor", 40)  # 20 below zero
    for n in range(100):
        quota.check(f"look-{n}")
    assert list(quota.buckets.buckets) == ["debtor"]
    for n in range(10):
        quota.take(f"new-{n}")
    assert "debtor" in quota.buckets.buckets
    with pytest.raises(ServiceError):
        quota.check("debtor")
