"""Peers: who this ledger talks to, which URLs it will talk to at all, and how they are kept.

A peer URL must be http or https, without credentials, query or fragment, at most
`MAX_URL_LENGTH` characters, and every address its host resolves to must fall in the ranges the
operator allows (`PYBTC_PEER_NETWORKS`: any of `loopback`, `private`, `public`, `link-local`,
`metadata`). A local devnet needs loopback, a compose network its private range; a public node
should allow `public` only. By default loopback is allowed only to a node that itself listens
on loopback; link-local and the cloud metadata addresses (`METADATA_ADDRESSES` in
`services.common.addresses`) only if named.
The check runs before every request (`PeerPolicy.check_connect`) and again inside the
connection itself (`PolicyResolver`, the resolver of the ledger's HTTP client), on the very
addresses it connects to: a name that resolves elsewhere later (DNS rebinding) is caught too.

Peers are kept in the ledger's SQLite file with their health: a failed contact counts one
failure, invalid data counts `INVALID_DATA_PENALTY`, a good contact resets the count, and a
peer reaching `max_failures` is dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.addresses import Address, address_class
from services.common.web import ServiceError
from services.node.store import Store

MAX_URL_LENGTH = 200
INVALID_DATA_PENALTY = 1_000  # invalid data drops a peer at once
NETWORK_NAMES = ("loopback", "private", "public", "link-local", "metadata")


PEERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    url TEXT PRIMARY KEY, added_at INTEGER NOT NULL, last_ok INTEGER, failures INTEGER NOT NULL,
    last_error TEXT, height INTEGER, tip TEXT
);
"""


def normalize_peer_url(raw: object) -> str:
    """`host:port` or `http(s)://host:port[/]` as `scheme://host:port`; ServiceError otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise ServiceError(400, "bad-peer-url", "a peer is a URL string like http://host:5000")
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise ServiceError(400, "bad-peer-url", f"a peer URL has at most {MAX_URL_LENGTH} chars")
    if "://" not in text:
        text = "http://" + text  # the tutorial's first document registers "host:port"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ServiceError(400, "bad-peer-url", f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ServiceError(400, "bad-peer-url", "a peer URL is http or https")
    if parts.username is not None or parts.password is not None:
        raise ServiceError(400, "bad-peer-url", "a peer URL must not carry credentials")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ServiceError(400, "bad-peer-url", "a peer URL is scheme://host:port, nothing more")
    host = parts.hostname
    if not host:
        raise ServiceError(400, "bad-peer-url", "a peer URL needs a host")
    try:
        host.encode("idna")  # resolving encodes it so first: a UnicodeError there was a 500
    except UnicodeError as exc:
        raise ServiceError(400, "bad-peer-url", f"not a host name: {exc}") from None
    if port == 0:
        raise ServiceError(400, "bad-peer-url", "port 0 is not a port a peer listens on")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{shown}:{port}", "", "", ""))


@dataclass(frozen=True)
class PeerPolicy:
    """Which peer URLs this node accepts, and how many."""

    networks: frozenset[str]
    max_peers: int = 64
    self_url: str = ""

    @classmethod
    def from_setting(cls, text: str, max_peers: int, self_url: str) -> PeerPolicy:
        names = frozenset(n.strip() for n in text.split(",") if n.strip())
        unknown = names - set(NETWORK_NAMES)
        if unknown:
            raise ValueError(f"unknown peer network(s) {sorted(unknown)}; use {NETWORK_NAMES}")
        return cls(names, max_peers, self_url)

    async def check_connect(self, url: str) -> None:
        """Raise ServiceError 400 `peer-not-allowed` unless every address of the host is allowed."""
        host = urlsplit(url).hostname or ""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=5
                )
            except (OSError, TimeoutError):
                raise ServiceError(400, "peer-unreachable", f"cannot resolve {host}") from None
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        for ip in addresses:
            refusal = self.refusal(host, ip)
            if refusal:
                raise ServiceError(400, "peer-not-allowed", refusal)

    def refusal(self, host: str, ip: Address) -> str:
        """Why `host` at `ip` is not an allowed peer ("" when it is)."""
        kind = address_class(ip)
        if kind in self.networks:
            return ""
        allowed = ", ".join(sorted(self.networks)) or "no network"
        return (
            f"{host} is a {kind} address ({ip}); this node allows peers in {allowed} "
            "(PYBTC_PEER_NETWORKS)"
        )


class PeerNotAllowedError(OSError):
    """Raised inside a connection attempt: the name resolved to an address not allowed."""


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name any of whose addresses the policy does not allow.

    aiohttp connects to the addresses its resolver returns, so this is the check on the
    connection itself; IP literals never reach a resolver and are checked by `check_connect`.
    The refusal is an OSError, which aiohttp reports as a `ClientConnectorDNSError`.
    """

    def __init__(self, policy: PeerPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            refusal = self.policy.refusal(host, ipaddress.ip_address(result["host"]))
            if refusal:
                raise PeerNotAllowedError(refusal)
        return results

    async def close(self) -> None:
        await self.inner.close()


class PeerBook:
    """The peers table."""

    def __init__(self, store: Store, max_failures: int = 5) -> None:
        self.store = store
        self.max_failures = max_failures
        store.db.executescript(PEERS_SCHEMA)

    def urls(self) -> list[str]:
        return [r[0] for r in self.store.db.execute("SELECT url FROM peers ORDER BY added_at, url")]

    def __contains__(self, url: object) -> bool:
        row = self.store.db.execute("SELECT 1 FROM peers WHERE url = ?", (url,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self.store.db.execute("SELECT COUNT(*) FROM peers").fetchone()[0])

    def add(self, url: str) -> bool:
        """Add a peer; False if it was known already."""
        with self.store.transaction():
            cursor = self.store.db.execute(
                "INSERT OR IGNORE INTO peers(url, added_at, failures) VALUES (?, ?, 0)",
                (url, int(time.time())),
            )
        return cursor.rowcount == 1

    def remove(self, url: str) -> None:
        with self.store.transaction():
            self.store.db.execute("DELETE FROM peers WHERE url = ?", (url,))

    def ok(
        self, url: str, height: int | None = None, tip: str | None = None, *, reset: bool = True
    ) -> None:
        """It answered; `reset` also clears its failures (not for a peer that still has to
        prove, by a sync, the work it claims)."""
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE peers SET failures = CASE WHEN ? THEN 0 ELSE failures END, last_ok = ?, "
                "last_error = CASE WHEN ? THEN NULL ELSE last_error END, "
                "height = COALESCE(?, height), tip = COALESCE(?, tip) WHERE url = ?",
                (reset, int(time.time()), reset, height, tip, url),
            )

    def failed(self, url: str, error: str, *, invalid: bool = False, keep: bool = False) -> bool:
        """Count a failure; drop the peer when it reaches the limit, unless `keep` (a peer that
        is only unreachable stays, to be tried again). True if it was dropped."""
        penalty = INVALID_DATA_PENALTY if invalid else 1
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE peers SET failures = failures + ?, last_error = ? WHERE url = ?",
                (penalty, error[:300].encode("utf-8", "backslashreplace").decode(), url),
            )
            row = self.store.db.execute(
                "SELECT failures FROM peers WHERE url = ?", (url,)
            ).fetchone()
            if row is not None and row[0] >= self.max_failures and not keep:
                self.store.db.execute("DELETE FROM peers WHERE url = ?", (url,))
                return True
        return False

    def describe(self) -> list[dict[str, Any]]:
        rows = self.store.db.execute(
            "SELECT url, added_at, last_ok, failures, last_error, height, tip FROM peers "
            "ORDER BY added_at, url"
        )
        keys = ("url", "added_at", "last_ok", "failures", "last_error", "height", "tip")
        return [dict(zip(keys, row, strict=True)) for row in rows]
