"""Talking to other ledgers over HTTP, defensively.

Every request checks the peer policy first (the host's addresses must be in an allowed range),
runs under one total timeout, follows no redirects, and reads at most a byte cap before parsing
strict JSON. Whatever goes wrong — refused, slow, a 500, HTML, truncated JSON, a body that never
ends — becomes a `PeerError`; `invalid=True` marks data that is wrong rather than unavailable.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from pybtc import Block, BlockHeader, ChainParams, Transaction, ValidationError
from services.common.web import ServiceError, parse_json
from services.node.peers import PeerNotAllowedError, PeerPolicy

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
HEADERS_PAGE = 500
BLOCKS_PAGE = 20
MEMPOOL_PAGE = 500


class PeerError(Exception):
    """A peer could not be used for this request."""

    def __init__(
        self, url: str, message: str, *, invalid: bool = False, http_status: int | None = None
    ) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.message = message
        self.invalid = invalid
        self.http_status = http_status
        """Set when the peer did answer HTTP, only not as asked."""


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
    ) -> tuple[int, Any]:
        try:
            await self.policy.check_connect(url)
        except ServiceError as exc:
            raise PeerError(url, exc.message) from None
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
                    if len(raw) > self.max_bytes:
                        raise PeerError(url, f"answer over {self.max_bytes} bytes", invalid=True)
                status = resp.status
        except TimeoutError:
            raise PeerError(url, f"no complete answer within {self.timeout:.1f}s") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PeerNotAllowedError):  # refused by PolicyResolver
                raise PeerError(url, str(exc.os_error)) from None
            raise PeerError(url, f"{type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError(url, f"{type(exc).__name__}: {exc}") from None
        try:
            return status, parse_json(bytes(raw))
        except ServiceError:
            raise PeerError(url, "answer is not JSON", invalid=True, http_status=status) from None

    async def get(self, url: str, path: str, **params: str) -> Any:
        return (await self._request("GET", url, path, params=params or None))[1]

    async def post(self, url: str, path: str, body: Any, expect: tuple[int, ...]) -> Any:
        return (await self._request("POST", url, path, json_body=body, expect=expect))[1]

    async def announce(self, url: str, announcement: dict[str, Any]) -> Any:
        """The tutorial's new-block call: GET /nodes/resolve with a JSON body."""
        return (await self._request("GET", url, "/nodes/resolve", json_body=announcement))[1]

    async def status(self, url: str) -> PeerStatus:
        """GET /status, checked to be a pyBTC ledger of this network and genesis."""
        body = await self.get(url, "/status")
        try:
            status = PeerStatus(
                url,
                str(body["network"]),
                str(body["genesis"]),
                _int(body["height"]),
                str(body["tip"]),
                int(str(body["chain_work"]), 16),
                str(body.get("node_id", "")),
            )
        except (KeyError, TypeError, ValueError):
            raise PeerError(url, "is not a pyBTC ledger (no valid /status)", invalid=True) from None
        if status.network != self.params.name or status.genesis != self.params.genesis.hash:
            raise PeerError(
                url,
                f"is on network {status.network!r} with genesis {status.genesis[:16]}…, "
                f"not {self.params.name}",
                invalid=True,
            )
        return status

    async def headers(self, url: str, start: int, limit: int) -> list[BlockHeader]:
        """Main-chain headers from height `start`, contiguous and linked."""
        body = await self.get(url, "/chain", start=str(start), limit=str(limit), format="headers")
        items = _chain_items(url, body, limit)
        try:
            headers = [BlockHeader.from_dict(item) for item in items]
        except ValidationError as exc:
            raise PeerError(url, f"sent a bad header: {exc}", invalid=True) from None
        _check_sequence(url, headers, start)
        return headers

    async def blocks(self, url: str, start: int, limit: int) -> list[Block]:
        """Main-chain blocks from height `start`."""
        body = await self.get(url, "/chain", start=str(start), limit=str(limit))
        items = _chain_items(url, body, limit)
        try:
            blocks = [Block.from_dict(item) for item in items]
        except ValidationError as exc:
            raise PeerError(url, f"sent a bad block: {exc}", invalid=True) from None
        _check_sequence(url, [b.header for b in blocks], start)
        return blocks

    async def mempool(self, url: str) -> list[Transaction]:
        """The first MEMPOOL_PAGE pending transactions, in mining order (GET /mempool)."""
        body = await self.get(url, "/mempool", limit=str(MEMPOOL_PAGE))
        try:
            items = body["transactions"][:MEMPOOL_PAGE]
            extra = ("position", "received_at")
            return [
                Transaction.from_dict({k: v for k, v in item.items() if k not in extra})
                for item in items
            ]
        except (KeyError, TypeError, AttributeError, ValidationError):
            raise PeerError(url, "sent a bad mempool", invalid=True) from None

    async def block(self, url: str, block_hash: str) -> Block:
        """One block by hash (GET /blocks/{hash})."""
        body = await self.get(url, f"/blocks/{block_hash}")
        try:
            block = Block.from_dict(body["block"])
        except (KeyError, TypeError):
            raise PeerError(url, "sent no block", invalid=True) from None
        except ValidationError as exc:
            raise PeerError(url, f"sent a bad block: {exc}", invalid=True) from None
        if block.hash != block_hash:
            raise PeerError(url, "sent another block than the one asked for", invalid=True)
        return block


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _chain_items(url: str, body: Any, limit: int) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("chain"), list):
        raise PeerError(url, "answered /chain without a chain list", invalid=True)
    items: list[Any] = body["chain"]
    if len(items) > limit:
        raise PeerError(url, f"sent {len(items)} items for a page of {limit}", invalid=True)
    return items


def _check_sequence(url: str, headers: list[BlockHeader], start: int) -> None:
    for offset, header in enumerate(headers):
        if header.index != start + offset:
            raise PeerError(url, "sent headers out of order", invalid=True)
        if offset and header.previous_hash != headers[offset - 1].hash:
            raise PeerError(url, f"sent a broken link at height {header.index}", invalid=True)
