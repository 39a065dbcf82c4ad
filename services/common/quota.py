"""Quotas: how often one client may do one kind of costly thing.

The per-client limits of `services.common.limits` count every request, and spare loopback
clients by default. Some actions cost a node far more than a request — registering a peer it
will contact from then on, an announcement that starts a sync, a block it has to refuse — and
are counted on their own by a `ClientQuota`: a token bucket per client (`rate` a second on
average, bursts of `burst`), at most `max_clients` clients remembered (the least recently seen
forgotten first). A quota applies to every client, loopback included, unless its owner says so:
its rates are set for what honest nodes do, far below what the request limits allow.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from services.common.web import ServiceError

MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    seen: float


class TokenBuckets:
    """One token bucket per key; the least recently seen key is forgotten past `max_keys`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_CLIENTS,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, cost: float = 1.0, *, peek: bool = False, debt: bool = False) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 if taken, else the seconds until they
        would be there (nothing is taken then). A rate of 0 never refuses. With `peek`, only
        tell: nothing is taken either way; with `debt`, take them anyway, below zero."""
        if not self.rate:
            return 0.0
        now = self.clock()
        bucket = self.buckets.pop(key, None)
        if bucket is None:
            if peek:  # a full bucket: told without being remembered (no eviction for a look)
                return max(0.0, (cost - self.burst) / self.rate)
            bucket = _Bucket(tokens=float(self.burst), seen=now)
            while len(self.buckets) >= self.max_keys:
                self._evict(now)
        self.buckets[key] = bucket  # the most recently seen last
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.seen) * self.rate)
        bucket.seen = now
        if bucket.tokens < cost:
            wait = (cost - bucket.tokens) / self.rate
            if debt:
                bucket.tokens -= cost
            return wait
        if not peek:
            bucket.tokens -= cost
        return 0.0

    def _evict(self, now: float) -> None:
        """Forget the least recently seen bucket that is not in debt (a crowd of new keys must
        not wipe out what a client owes); if every one is, the least recently seen."""
        for key, bucket in self.buckets.items():
            if bucket.tokens + (now - bucket.seen) * self.rate >= 0:
                del self.buckets[key]
                return
        self.buckets.popitem(last=False)


class ClientQuota:
    """How often one client may do `what`; past it, 429 with `reason` and `Retry-After`."""

    def __init__(
        self,
        what: str,
        rate: float,
        burst: int,
        *,
        reason: str = "rate-limited",
        setting: str = "",
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.what = what
        self.reason = reason
        self.setting = setting
        self.buckets = TokenBuckets(rate, burst, clock=clock, max_keys=max_clients)

    def allow(self, client: str, cost: float = 1.0) -> bool:
        """Count `cost` of the action for `client`; False (nothing counted) past the quota."""
        return self.buckets.take(client, cost) == 0.0

    def take(self, client: str, cost: float = 1.0) -> None:
        """Count `cost` of the action for `client`; ServiceError 429 past the quota."""
        self._refuse_after(self.buckets.take(client, cost))

    def check(self, client: str, cost: float = 1.0) -> None:
        """ServiceError 429 unless `client` has `cost` left; nothing is counted. For actions
        known to be costly only once done (a refused block): `check` first, `charge` after."""
        self._refuse_after(self.buckets.take(client, cost, peek=True))

    def charge(self, client: str, cost: float = 1.0) -> None:
        """Count `cost` for `client` even past the quota (into debt, which `check` then
        refuses until it is paid back at `rate`)."""
        self.buckets.take(client, cost, debt=True)

    def _refuse_after(self, wait: float) -> None:
        if wait:
            seconds = max(1, math.ceil(wait))
            rate, burst = self.buckets.rate, self.buckets.burst
            where = f" ({self.setting})" if self.setting else ""
            raise ServiceError(
                429,
                self.reason,
                f"too many {self.what} from this client: at most {rate:g} a second "
                f"(bursts of {burst}){where}; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
