"""Per-client limits and the operator token: what keeps one stranger from using a node up.

Every service runs `ClientLimits.middleware`. A client is an IP address: the connection's, or,
when the connection comes from one of `PYBTC_TRUSTED_PROXIES`, the last address the proxies
added to `X-Forwarded-For` (the one the first trusted proxy saw). For each client it keeps:

- a token bucket: `PYBTC_CLIENT_RATE` requests a second on average, bursts of up to
  `PYBTC_CLIENT_BURST`; past it a request is refused 429 `rate-limited` with `Retry-After`
  (the whole seconds until a token is back);
- the connections it has open that have sent a request: at most `PYBTC_CLIENT_CONNECTIONS`;
  a request on one more is refused 429 `too-many-connections` and that connection closed.

An IPv6 client is its /64 (`client_of`), not its address: a home or a server is handed a /64 at
least and may use any address in it, so counting addresses would give one machine 2**64 fresh
quotas. An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 client) is the IPv4
client it maps. Every loopback address (127.0.0.0/8, ::1) is one client, the machine itself: a
program on it can send from any of 127.0.0.0/8.

Clients in the networks of `PYBTC_CLIENT_EXEMPT` (default: loopback, so a node's own services
and a laptop's user are never limited) pass untouched; 0 turns a limit off. At most
`MAX_CLIENTS` clients are remembered, the least recently seen forgotten first.

`require_operator` guards the operator-only endpoints (`/mine`, `/nodes/register`, the faucet)
once `PYBTC_OPERATOR_TOKEN` is set: they then need `Authorization: Bearer <token>` and answer
401 `operator-only` otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.common.addresses import CLIENT_NETWORKS as LIMIT_NETWORKS
from services.common.addresses import Address, Network, address_class, parse_networks
from services.common.quota import MAX_CLIENTS, TokenBuckets
from services.common.settings import Settings
from services.common.web import Handler, ServiceError


@dataclass
class _Client:
    connections: set[asyncio.BaseTransport] = field(default_factory=set)


IPV6_CLIENT_PREFIX = 64
"""The IPv6 prefix one client is counted by (the smallest network a subscriber is handed)."""


LOOPBACK_CLIENT = "loopback"


def client_of(address: Address) -> str:
    """The key one client's limits and quotas are counted under (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return client_of(address.ipv4_mapped)
        if not address.is_loopback:
            return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return LOOPBACK_CLIENT if address.is_loopback else str(address)


def parse_address(text: str | None) -> Address | None:
    try:
        return ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None


class ClientLimits:
    """The limits of one service, and its memory of clients."""

    def __init__(
        self,
        rate: float,
        burst: int,
        connections: int,
        exempt: frozenset[str] = frozenset({"loopback"}),
        trusted_proxies: tuple[Network, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unknown = exempt - set(LIMIT_NETWORKS)
        if unknown:
            raise ValueError(f"PYBTC_CLIENT_EXEMPT: unknown {sorted(unknown)}; {LIMIT_NETWORKS}")
        self.rate = rate
        self.burst = max(burst, 1)
        self.connections = connections
        self.exempt = exempt
        self.trusted_proxies = trusted_proxies
        self.buckets = TokenBuckets(rate, self.burst, clock=clock, max_keys=MAX_CLIENTS)
        self.clients: OrderedDict[str, _Client] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        return cls(
            rate=settings.client_rate,
            burst=settings.client_burst,
            connections=settings.client_connections,
            exempt=frozenset(n.strip() for n in settings.client_exempt.split(",") if n.strip()),
            trusted_proxies=parse_networks(settings.trusted_proxies, "PYBTC_TRUSTED_PROXIES"),
        )

    def client_address(self, request: web.Request) -> Address | None:
        """Who sent `request` (see the module's docstring); None if it cannot be told."""
        address = parse_address(request.remote)
        if address is None or not self._trusted(address):
            return address
        hops = [h for h in request.headers.getall("X-Forwarded-For", []) for h in h.split(",")]
        for hop in reversed(hops):
            sender = parse_address(hop)
            if sender is None:
                return address  # a proxy wrote something that is no address: trust no further
            if not self._trusted(sender):
                return sender
            address = sender
        return address

    def _trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def _client(self, key: str) -> _Client:
        client = self.clients.pop(key, None)
        if client is None:
            client = _Client()
            while len(self.clients) >= MAX_CLIENTS:
                self.clients.popitem(last=False)
        self.clients[key] = client  # the most recently seen last
        return client

    def check(self, key: str, transport: asyncio.BaseTransport | None) -> None:
        """Count one request of client `key`; ServiceError 429 past a limit."""
        if self.connections and transport is not None:
            client = self._client(key)
            client.connections = {t for t in client.connections if not t.is_closing()}
            if transport not in client.connections:
                if len(client.connections) >= self.connections:
                    raise ServiceError(
                        429,
                        "too-many-connections",
                        f"this client has {len(client.connections)} connections open; "
                        f"at most {self.connections} (PYBTC_CLIENT_CONNECTIONS)",
                        headers={"Retry-After": "1", "Connection": "close"},
                    )
                client.connections.add(transport)
        if self.rate:
            wait = math.ceil(self.buckets.take(key))
            if wait:
                raise ServiceError(
                    429,
                    "rate-limited",
                    f"too many requests from this client: at most {self.rate:g} a second "
                    f"(bursts of {self.burst}); try again in {wait} s",
                    headers={"Retry-After": str(wait)},
                )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.rate or self.connections:
            address = self.client_address(request)
            if address is None or address_class(address) not in self.exempt:
                self.check(client_of(address) if address is not None else "?", request.transport)
        return await handler(request)


LIMITS = web.AppKey("client_limits", ClientLimits)


def client_key(request: web.Request) -> str:
    """Who sent `request`, as its limits tell it (behind trusted proxies, the forwarded
    client): the key of per-client quotas (`services.common.quota`)."""
    limits = request.app.get(LIMITS)
    address = limits.client_address(request) if limits is not None else None
    return client_of(address) if address is not None else (request.remote or "?")


def require_operator(request: web.Request, settings: Settings) -> None:
    """401 `operator-only` unless no token is set or the request carries it."""
    token = settings.operator_token
    if not token:
        return
    sent = request.headers.get("Authorization", "")
    scheme, _, value = sent.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise ServiceError(
            401,
            "operator-only",
            f"{request.path} is for this node's operator: send Authorization: Bearer <token> "
            "(PYBTC_OPERATOR_TOKEN)",
            headers={"WWW-Authenticate": 'Bearer realm="pybtc-operator"'},
        )
