"""Talking to other ledgers over HTTP, defensively.

Every request checks the peer policy first (the host's addresses must be in an allowed range),
runs under one total timeout, follows no redirects, and reads at most a byte cap before parsing
strict JSON. Whatever goes wrong — refused, slow, a 500, HTML, truncated JSON, a body that never
ends — becomes a `PeerError` with a reason code; `invalid=True` marks data that is wrong rather
than unavailable.

Every value a peer sends is checked here, before anything stores or uses it: a `/status` is a
few KiB at most (`STATUS_MAX_BYTES`), its height a whole number in 1..2**63-1 (SQLite's
INTEGER) and no more than its claimed chain work allows (each block carries at least the work
of the network's easiest target), its hashes 64 lowercase hex digits, its names short printable
text (no control characters, no lone surrogates). Headers, blocks and mempool transactions go
through `pybtc`'s own `from_dict` checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from pybtc import Block, BlockHeader, ChainParams, Reason, Transaction, ValidationError
from pybtc.encoding import check_hex
from pybtc.errors import DecodeError
from pybtc.pow import block_work
from services.common.web import ServiceError, parse_json
from services.node.peers import PeerNotAllowedError, PeerPolicy, clean_text

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
HEADERS_PAGE = 500
BLOCKS_PAGE = 20
MEMPOOL_PAGE = 500
STATUS_MAX_BYTES = 64 * 1024
"""A ledger's /status is about 600 bytes; a peer's is read up to this, not MAX_RESPONSE_BYTES."""
MAX_HEIGHT = 2**63 - 1
"""The largest height a peer may claim: what SQLite's INTEGER (int64) can store."""
MAX_TEXT = 128
"""The longest network name or node id a peer may send."""
MAX_MESSAGE = 500
"""The longest PeerError message (a peer's bad block can make a pybtc error quote a lot)."""


class PeerError(Exception):
    """A peer could not be used for this request."""

    def __init__(
        self,
        url: str,
        message: str,
        *,
        invalid: bool = False,
        http_status: int | None = None,
        reason: str = "",
    ) -> None:
        message = clean_text(message, MAX_MESSAGE)  # it is logged, stored, and answered
        super().__init__(f"{url}: {message}")
        self.url = url
        self.message = message
        self.invalid = invalid
        self.http_status = http_status
        """Set when the peer did answer HTTP, only not as asked."""
        self.reason = reason or (
            "peer-invalid-data"
            if invalid
            else "peer-http-error"
            if http_status is not None
            else "peer-unreachable"
        )
        """A kebab-case code for what went wrong, kept in the peer book."""


@dataclass(frozen=True)
class PeerStatus:
    """What a peer says about itself on GET /status."""

    url: str
    network: str
    genesis: str
    height: int
    tip: str
    chain_work: int
    node_id: str = ""


class PeerClient:
    """HTTP requests to peers through one aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: PeerPolicy,
        params: ChainParams,
        *,
        timeout: float = 5.0,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.session = session
        self.policy = policy
        self.params = params
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def _request(
        self,
        method: str,
        url: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        expect: tuple[int, ...] = (200,),
        max_bytes: int | None = None,
    ) -> tuple[int, Any]:
        cap = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        try:
            await self.policy.check_connect(url)
        except ServiceError as exc:
            raise PeerError(url, exc.message, reason=exc.reason) from None
        try:
            async with (
                asyncio.timeout(self.timeout),
                self.session.request(
                    method, url + path, params=params, json=json_body, allow_redirects=False
                ) as resp,
            ):
                if 300 <= resp.status < 400:
                    raise PeerError(
                        url,
                        f"answered a redirect ({resp.status}); not followed",
                        http_status=resp.status,
                    )
                if resp.status not in expect:
                    raise PeerError(
                        url,
                        f"answered HTTP {resp.status} to {method} {path}",
                        http_status=resp.status,
                    )
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    raw.extend(chunk)
                    if len(raw) > cap:
                        raise PeerError(
                            url,
                            f"answer to {method} {path} over {cap} bytes",
                            invalid=True,
                            reason="peer-too-large",
                        )
                status = resp.status
        except TimeoutError:
            raise PeerError(
                url, f"no complete answer within {self.timeout:.1f}s", reason="peer-timeout"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PeerNotAllowedError):  # refused by PolicyResolver
                raise PeerError(url, str(exc.os_error), reason="peer-not-allowed") from None
            raise PeerError(url, f"{type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError(url, f"{type(exc).__name__}: {exc}") from None
        try:
            return status, parse_json(bytes(raw))
        except ServiceError:
            raise PeerError(
                url, "answer is not JSON", invalid=True, http_status=status, reason="peer-not-json"
            ) from None

    async def get(self, url: str, path: str, *, max_bytes: int | None = None, **params: str) -> Any:
        return (await self._request("GET", url, path, params=params or None, max_bytes=max_bytes))[
            1
        ]

    async def post(self, url: str, path: str, body: Any, expect: tuple[int, ...]) -> Any:
        return (await self._request("POST", url, path, json_body=body, expect=expect))[1]

    async def announce(self, url: str, announcement: dict[str, Any]) -> Any:
        """The tutorial's new-block call: GET /nodes/resolve with a JSON body."""
        return (await self._request("GET", url, "/nodes/resolve", json_body=announcement))[1]

    async def status(self, url: str) -> PeerStatus:
        """GET /status, every field checked, of a pyBTC ledger of this network and genesis."""
        body = await self.get(url, "/status", max_bytes=STATUS_MAX_BYTES)
        if not isinstance(body, dict):
            raise PeerError(url, "/status is not a JSON object", invalid=True, reason=BAD_STATUS)
        missing = [
            k for k in ("network", "genesis", "height", "tip", "chain_work") if k not in body
        ]
        if missing:
            raise PeerError(
                url,
                f"is not a pyBTC ledger (/status lacks {', '.join(missing)})",
                invalid=True,
                reason=BAD_STATUS,
            )
        network = check_text(url, "network", body["network"])
        genesis = check_hash(url, "genesis", body["genesis"])
        if network != self.params.name or genesis != self.params.genesis.hash:
            raise PeerError(
                url,
                f"is on network {network!r} with genesis {genesis[:16]}…, not {self.params.name}",
                invalid=True,
                reason="peer-wrong-chain",
            )
        status = PeerStatus(
            url,
            network,
            genesis,
            check_height(url, "height", body["height"]),
            check_hash(url, "tip", body["tip"]),
            int(check_hash(url, "chain_work", body["chain_work"]), 16),
            check_text(url, "node_id", body.get("node_id", "")),
        )
        # Every block has at least the work of the easiest target the network allows.
        if status.height > status.chain_work // block_work(self.params.pow_limit_bits):
            raise PeerError(
                url,
                f"claims height {status.height} with less work than that many blocks carry",
                invalid=True,
                reason="peer-implausible-height",
            )
        return status

    async def headers(self, url: str, start: int, limit: int) -> list[BlockHeader]:
        """Main-chain headers from height `start`, contiguous and linked."""
        body = await self.get(url, "/chain", start=str(start), limit=str(limit), format="headers")
        items = _chain_items(url, body, limit)
        try:
            headers = [BlockHeader.from_dict(item) for item in items]
        except ValidationError as exc:
            raise PeerError(
                url, f"sent a bad header: {exc}", invalid=True, reason=BAD_CHAIN
            ) from None
        _check_sequence(url, headers, start)
        return headers

    async def blocks(self, url: str, start: int, limit: int) -> list[Block]:
        """Main-chain blocks from height `start`."""
        body = await self.get(url, "/chain", start=str(start), limit=str(limit))
        items = _chain_items(url, body, limit)
        try:
            blocks = [Block.from_dict(item) for item in items]
        except ValidationError as exc:
            raise PeerError(
                url, f"sent a bad block: {exc}", invalid=True, reason=BAD_CHAIN
            ) from None
        _check_sequence(url, [b.header for b in blocks], start)
        return blocks

    async def mempool(self, url: str) -> list[Transaction]:
        """The first MEMPOOL_PAGE pending transactions, in mining order (GET /mempool)."""
        body = await self.get(url, "/mempool", limit=str(MEMPOOL_PAGE))
        try:
            items = body["transactions"][:MEMPOOL_PAGE]
            extra = ("position", "block", "received_at")
            return [
                Transaction.from_dict({k: v for k, v in item.items() if k not in extra})
                for item in items
            ]
        except (KeyError, TypeError, AttributeError, ValidationError):
            raise PeerError(url, "sent a bad mempool", invalid=True, reason=BAD_MEMPOOL) from None

    async def block(self, url: str, block_hash: str) -> Block:
        """One block by hash (GET /blocks/{hash})."""
        check_hash(url, "block hash", block_hash)  # never put what a bus message said in a path
        body = await self.get(url, f"/blocks/{block_hash}")
        try:
            block = Block.from_dict(body["block"])
        except (KeyError, TypeError):
            raise PeerError(url, "sent no block", invalid=True, reason=BAD_BLOCK) from None
        except ValidationError as exc:
            raise PeerError(
                url, f"sent a bad block: {exc}", invalid=True, reason=BAD_BLOCK
            ) from None
        if block.hash != block_hash:
            raise PeerError(
                url, "sent another block than the one asked for", invalid=True, reason=BAD_BLOCK
            )
        return block


BAD_STATUS = "peer-bad-status"
BAD_CHAIN = "peer-bad-chain"
BAD_MEMPOOL = "peer-bad-mempool"
BAD_BLOCK = "peer-bad-block"


def _shown(value: object) -> str:
    """A short, printable picture of a bad value for a message, cheap whatever its size."""
    if isinstance(value, str):
        return repr(value[:32]) + (f"… ({len(value)} characters)" if len(value) > 32 else "")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**24 else "a number of over 24 digits"
    return f"a JSON {type(value).__name__}"


def check_height(url: str, what: str, value: object) -> int:
    """A height from a peer: an int (not a bool) in 1..MAX_HEIGHT."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_HEIGHT:
        raise PeerError(
            url,
            f"sent {what} {_shown(value)}: not a whole number in 1..2**63-1",
            invalid=True,
            reason="peer-bad-height",
        )
    return value


def check_hash(url: str, what: str, value: object) -> str:
    """A hash from a peer: exactly 64 lowercase hex digits (the protocol's `check_hex`, its
    length looked at first: a peer's 20 MB string is not run through a regular expression)."""
    try:
        if isinstance(value, str) and len(value) != 64:
            raise DecodeError(Reason.BAD_HEX, "not 32 bytes")
        return check_hex(what, value, 32)
    except DecodeError:
        raise PeerError(
            url,
            f"sent {what} {_shown(value)}: not 64 lowercase hex digits",
            invalid=True,
            reason="peer-bad-hash",
        ) from None


def check_text(url: str, what: str, value: object, limit: int = MAX_TEXT) -> str:
    """A name from a peer: a string of at most `limit` printable characters."""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise PeerError(
            url,
            f"sent {what} {_shown(value)}: not a printable string of at most {limit} characters",
            invalid=True,
            reason="peer-bad-text",
        )
    return value


def _chain_items(url: str, body: Any, limit: int) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("chain"), list):
        raise PeerError(url, "answered /chain without a chain list", invalid=True, reason=BAD_CHAIN)
    items: list[Any] = body["chain"]
    if len(items) > limit:
        raise PeerError(
            url, f"sent {len(items)} items for a page of {limit}", invalid=True, reason=BAD_CHAIN
        )
    return items


def _check_sequence(url: str, headers: list[BlockHeader], start: int) -> None:
    for offset, header in enumerate(headers):
        if header.index != start + offset:
            raise PeerError(url, "sent headers out of order", invalid=True, reason=BAD_CHAIN)
        if offset and header.previous_hash != headers[offset - 1].hash:
            raise PeerError(
                url, f"sent a broken link at height {header.index}", invalid=True, reason=BAD_CHAIN
            )
