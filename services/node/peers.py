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
peer reaching `max_failures` is dropped; the reason code of the last failure is kept with it,
and the last `DROPPED_KEPT` drops and evictions are remembered (in memory) with theirs.

The book also keeps each peer's tip and height as it last told them, with the time
(`tip_at`; see `Network` for every way a peer tells), who added each peer (the client's
address, or `config` for this node's own PYBTC_PEERS) and when it last delivered blocks that
moved this node's tip. When the book is
full, a newcomer that passed the handshake takes the slot of the worst peer not protected
(`PeerBook.victim`), like Bitcoin Core's inbound eviction: the configured peers and the
`PROTECTED_DELIVERERS` that delivered blocks most recently are never evicted; of the others,
first those that never delivered anything, of the client with the most peers in the book
(one client cannot push out the others), that did not answer the last contact, oldest-added
first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.addresses import PEER_NETWORKS as NETWORK_NAMES
from services.common.addresses import Address, address_class
from services.common.web import ServiceError
from services.node.store import Store

MAX_URL_LENGTH = 200
INVALID_DATA_PENALTY = 1_000  # invalid data drops a peer at once
MAX_ERROR_LENGTH = 300
PROTECTED_DELIVERERS = 8
"""Peers that delivered blocks most recently, never evicted for a newcomer."""
DROPPED_KEPT = 32
CONFIG = "config"
"""`added_by` of a peer this node's own settings named (PYBTC_PEERS)."""


PEERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    url TEXT PRIMARY KEY, added_at INTEGER NOT NULL, last_ok INTEGER, failures INTEGER NOT NULL,
    last_error TEXT, height INTEGER, tip TEXT
);
"""
PEERS_COLUMNS = {
    "last_reason": "TEXT",
    "added_by": "TEXT NOT NULL DEFAULT ''",
    "last_delivered": "INTEGER",
    "delivered": "INTEGER NOT NULL DEFAULT 0",
    "tip_at": "INTEGER",
}
"""Columns added since the first schema; a database without them gains them on open."""
PEERS_CLEANUP = """
UPDATE peers SET tip = NULL WHERE length(tip) != 64 OR tip GLOB '*[^0-9a-f]*';
UPDATE peers SET height = NULL WHERE height < 1;
UPDATE peers SET last_error = substr(last_error, 1, 300) WHERE length(last_error) > 300;
"""
"""What an older node stored unchecked from a peer (a 20 MB tip, a negative height)."""
DESCRIBED = (
    "url",
    "added_at",
    "last_ok",
    "failures",
    "last_error",
    "last_reason",
    "height",
    "tip",
    "last_delivered",
    "delivered",
    "tip_at",
)


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
    if not host.isprintable() or any(ch.isspace() for ch in host):
        raise ServiceError(400, "bad-peer-url", "a host name has no spaces or control characters")
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


@dataclass(frozen=True)
class _Row:
    url: str
    added_by: str
    failing: bool
    last_delivered: int | None


def clean_text(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    """`text` cut to `limit` characters, each unprintable one (a control character, a lone
    surrogate) shown as `?`: what a peer made us say is stored and shown only so."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


class PeerBook:
    """The peers table."""

    def __init__(self, store: Store, max_failures: int = 5) -> None:
        self.store = store
        self.max_failures = max_failures
        self.dropped: deque[dict[str, Any]] = deque(maxlen=DROPPED_KEPT)
        """The latest drops and evictions, newest last: url, at, reason, error."""
        store.db.executescript(PEERS_SCHEMA)
        with store.transaction():
            have = {row[1] for row in store.db.execute("PRAGMA table_info(peers)")}
            for name, kind in PEERS_COLUMNS.items():
                if name not in have:
                    store.db.execute(f"ALTER TABLE peers ADD COLUMN {name} {kind}")
            for statement in PEERS_CLEANUP.strip().splitlines():
                store.db.execute(statement)

    def urls(self) -> list[str]:
        return [r[0] for r in self.store.db.execute("SELECT url FROM peers ORDER BY added_at, url")]

    def __contains__(self, url: object) -> bool:
        row = self.store.db.execute("SELECT 1 FROM peers WHERE url = ?", (url,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self.store.db.execute("SELECT COUNT(*) FROM peers").fetchone()[0])

    def added_by(self, url: str) -> str | None:
        """The client that registered peer `url` (CONFIG: this node's settings), if a peer."""
        row = self.store.db.execute("SELECT added_by FROM peers WHERE url = ?", (url,)).fetchone()
        return None if row is None else str(row[0])

    def add(self, url: str, added_by: str = CONFIG) -> bool:
        """Add a peer; False if it was known already."""
        with self.store.transaction():
            cursor = self.store.db.execute(
                "INSERT OR IGNORE INTO peers(url, added_at, failures, added_by) "
                "VALUES (?, ?, 0, ?)",
                (url, int(time.time()), clean_text(added_by, 64)),
            )
        return cursor.rowcount == 1

    def remove(self, url: str, reason: str = "", error: str = "") -> None:
        with self.store.transaction():
            cursor = self.store.db.execute("DELETE FROM peers WHERE url = ?", (url,))
        if cursor.rowcount and reason:
            self._remember(url, reason, error)

    def ok(
        self, url: str, height: int | None = None, tip: str | None = None, *, reset: bool = True
    ) -> None:
        """It answered; `reset` also clears its failures (not for a peer that still has to
        prove, by a sync, the work it claims). `height` and `tip` are checked values
        (`services.node.peer_client`)."""
        now = int(time.time())
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE peers SET failures = CASE WHEN ? THEN 0 ELSE failures END, last_ok = ?, "
                "last_error = CASE WHEN ? THEN NULL ELSE last_error END, "
                "last_reason = CASE WHEN ? THEN NULL ELSE last_reason END, "
                "height = COALESCE(?, height), tip = COALESCE(?, tip), "
                "tip_at = CASE WHEN ? IS NULL THEN tip_at ELSE ? END WHERE url = ?",
                (reset, now, reset, reset, height, tip, tip, now, url),
            )

    def learned_tip(self, url: str, height: int, tip: str) -> None:
        """The peer told us its tip (an announcement, its answer to ours, a bus message):
        checked values, kept with the time; its health is left as it is."""
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE peers SET height = ?, tip = ?, tip_at = ? WHERE url = ?",
                (height, tip, int(time.time()), url),
            )

    def delivered(self, url: str, blocks: int) -> None:
        """It delivered `blocks` valid blocks that moved this node's tip."""
        if blocks > 0:
            with self.store.transaction():
                self.store.db.execute(
                    "UPDATE peers SET last_delivered = ?, delivered = delivered + ? WHERE url = ?",
                    (int(time.time()), blocks, url),
                )

    def failed(
        self, url: str, error: str, *, reason: str = "", invalid: bool = False, keep: bool = False
    ) -> bool:
        """Count a failure; drop the peer when it reaches the limit, unless `keep` (a peer that
        is only unreachable stays, to be tried again). True if it was dropped."""
        penalty = INVALID_DATA_PENALTY if invalid else 1
        error = clean_text(error)
        reason = clean_text(reason or ("peer-invalid-data" if invalid else "peer-failed"), 64)
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE peers SET failures = failures + ?, last_error = ?, last_reason = ? "
                "WHERE url = ?",
                (penalty, error, reason, url),
            )
            row = self.store.db.execute(
                "SELECT failures FROM peers WHERE url = ?", (url,)
            ).fetchone()
            if row is not None and row[0] >= self.max_failures and not keep:
                self.store.db.execute("DELETE FROM peers WHERE url = ?", (url,))
                self._remember(url, reason, error)
                return True
        return False

    def victim(self, protected: set[str]) -> str | None:
        """The peer a newcomer replaces in a full book, or None if every peer is protected:
        `protected` (the configured peers) and the PROTECTED_DELIVERERS that delivered blocks
        most recently stay; then first the peers that never delivered anything, of the client
        with the most peers here, that are failing (did not answer the last contact), added
        first."""
        rows = [
            _Row(url, added_by, failures > 0, last_delivered)
            for url, added_by, failures, last_delivered in self.store.db.execute(
                "SELECT url, added_by, failures, last_delivered FROM peers ORDER BY added_at, rowid"
            )
        ]
        deliverers = sorted(
            (r for r in rows if r.last_delivered is not None),
            key=lambda r: r.last_delivered or 0,
            reverse=True,
        )[:PROTECTED_DELIVERERS]
        shielded = protected | {r.url for r in deliverers}
        per_client = Counter(r.added_by for r in rows)
        candidates = [(i, r) for i, r in enumerate(rows) if r.url not in shielded]
        if not candidates:
            return None
        _, worst = min(
            candidates,
            key=lambda c: (
                c[1].last_delivered is not None,
                -per_client[c[1].added_by],
                not c[1].failing,
                c[0],  # rows are in the order they were added
            ),
        )
        return worst.url

    def _remember(self, url: str, reason: str, error: str) -> None:
        self.dropped.append({"url": url, "at": int(time.time()), "reason": reason, "error": error})

    def describe(self) -> list[dict[str, Any]]:
        rows = self.store.db.execute(
            f"SELECT {', '.join(DESCRIBED)} FROM peers ORDER BY added_at, url"  # noqa: S608
        )
        return [dict(zip(DESCRIBED, row, strict=True)) for row in rows]
