"""Stub peers: local servers that play a pyBTC ledger to a node under test, well or badly.

`StubPeer` is a small aiohttp app on a free loopback port that answers the routes one ledger
asks another (`/status`, `/chain` in its full and `format=headers` forms, `/blocks/{hash}`,
`/nodes/register`, `/nodes/resolve`) from a list of real `pybtc` blocks, in the exact shapes of
`services/node/views.py`. Unless made `armed`, it starts *quiet*, looking like a fresh regtest
ledger (genesis only), so the sync a node starts right after registering it finds nothing to
do. `arm()` makes it claim its chain and turns on the misbehaviour chosen for each route
(`Bad`): HTML, truncated JSON, a 500, a 404, a redirect, a body that never ends, a byte every
0.2 s, no answer at all, an oversized header, a gzip bomb, or one-item pages sent just inside
the node's timeout. Every request it receives is recorded.

`BlackHole` and `Babbler` work below HTTP: one accepts TCP connections and never says a word,
the other answers every connection with bytes that are not HTTP.

`build_chain` mines regtest chains on top of a genesis, with one block replaced by a tampered
version (`bad_pow`, `broken_link`, `harder_bits`, `from_the_future`, `overpaying_coinbase`), so
that the rule a test is about is the one that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import zlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aiohttp import web

from pybtc import REGTEST, Block, Transaction
from pybtc.mining import build_block, mine_block
from pybtc.params import make_genesis
from pybtc.pow import block_work
from tests.chainutil import remine, test_key
from tests.service.ledgerutil import free_port

STUB_MINER = test_key(1)
"""Who the stubs' blocks pay (the node under test mines to test key 0)."""

Tamper = Callable[[Block], Block]


class Bad(StrEnum):
    """How a stub answers a route once armed."""

    OK = "ok"
    HTML = "html"
    TRUNCATED = "truncated"
    ERROR_500 = "500"
    NOT_FOUND = "404"
    REDIRECT = "redirect"
    ENDLESS = "endless"
    TRICKLE = "trickle"
    SILENT = "silent"
    HUGE_HEADER = "huge-header"
    GZIP_BOMB = "gzip-bomb"
    DRIP = "drip"


TRICKLE_GAP = 0.2
"""Seconds between the bytes of a trickled answer."""


@functools.cache
def gzip_bomb() -> bytes:
    """64 MiB of (never finished) JSON, gzipped to about 64 KiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    filler = b" " * (1 << 20)
    parts = [packer.compress(b'{"chain": [')]
    parts += [packer.compress(filler) for _ in range(64)]
    return b"".join([*parts, packer.flush()])


# -- chains --------------------------------------------------------------------------------------


def chain_work(blocks: list[Block]) -> int:
    """The cumulative work of a chain, as a ledger counts it (genesis included)."""
    return sum(block_work(b.header.bits) for b in blocks)


def build_chain(
    length: int,
    *,
    genesis: Block = REGTEST.genesis,
    tamper: dict[int, Tamper] | None = None,
    spacing: int = 60,
) -> list[Block]:
    """Genesis plus blocks 2..`length` paying STUB_MINER; `tamper[h]` replaces the block at h.

    Later blocks build on the tampered one, so the chain is linked from end to end and only the
    tampered block breaks a rule.
    """
    tamper = tamper or {}
    blocks = [genesis]
    for height in range(2, length + 1):
        parent = blocks[-1].header
        template = build_block(
            REGTEST,
            parent,
            bits=REGTEST.pow_limit_bits,
            transactions=(),
            miner_address=STUB_MINER.address,
            timestamp=genesis.timestamp + spacing * (height - 1),
        )
        if height in tamper:
            blocks.append(tamper[height](template))
        else:
            mined = mine_block(template)
            assert mined is not None
            blocks.append(mined)
    return blocks


def other_genesis() -> Block:
    """A regtest-shaped genesis that is not REGTEST's (another timestamp), with valid PoW."""
    block = mine_block(
        make_genesis(
            timestamp=REGTEST.genesis.timestamp + 1,
            bits=REGTEST.pow_limit_bits,
            nonce=0,
            subsidy=REGTEST.initial_subsidy,
        )
    )
    assert block is not None
    assert block.hash != REGTEST.genesis.hash
    return block


def broken_link(block: Block) -> Block:
    """The block re-mined on a parent that does not exist (previous_hash of someone else)."""
    return remine(block, previous_hash="ab" * 32)


def harder_bits(block: Block) -> Block:
    """The block re-mined at a target 256 times harder than regtest's rules ask for."""
    return remine(block, bits=0x1F7FFFFF)


def from_the_future(block: Block) -> Block:
    """The block re-mined with a timestamp an hour past the allowed clock drift."""
    return remine(block, timestamp=int(time.time()) + REGTEST.max_future_block_time + 3_600)


def overpaying_coinbase(block: Block) -> Block:
    """The block re-mined with a coinbase one base unit above subsidy + fees."""
    paid = block.transactions[0]
    coinbase = Transaction.coinbase(paid.recipient, paid.amount + 1, block.index, block.timestamp)
    return remine(block, [coinbase])


# -- the HTTP stub -------------------------------------------------------------------------------


class StubPeer:
    """An aiohttp app on a free loopback port that plays a ledger serving `chain`."""

    def __init__(
        self,
        chain: list[Block] | None = None,
        *,
        network: str = REGTEST.name,
        genesis: str | None = None,
        claim_work: int | None = None,
        claim_height: int | None = None,
        armed: bool = False,
        redirect_to: str = "",
        drip_delay: float = 0.6,
    ) -> None:
        self.chain = chain or [REGTEST.genesis]
        self.network = network
        self.genesis = genesis or REGTEST.genesis.hash
        self.claim_work = claim_work
        self.claim_height = claim_height
        self.armed = armed
        self.redirect_to = redirect_to
        self.drip_delay = drip_delay
        self.bad: dict[str, Bad] = {}
        self.requests: list[tuple[str, str]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node_id = f"stub-{self.port}"
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> StubPeer:
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_get("/chain", self._chain)
        app.router.add_get("/blocks/{hash}", self._block)
        app.router.add_post("/nodes/register", self._register)
        app.router.add_route("*", "/nodes/resolve", self._resolve)
        app.router.add_route("*", "/{tail:.*}", self._anything_else)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        """Wake every handler that is waiting or streaming, then close the server."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def arm(self, **bad: Bad) -> None:
        """Claim the whole chain from now on; misbehave on the named routes (status, headers,
        blocks, block)."""
        self.bad.update(bad)
        self.armed = True

    # -- what it saw ---------------------------------------------------------------------------
    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.split("?")[0] == path)

    # -- what it says --------------------------------------------------------------------------
    def _shown(self) -> list[Block]:
        """The chain it serves: a fresh regtest ledger's (genesis only) until armed."""
        return self.chain if self.armed else [REGTEST.genesis]

    def status_body(self) -> dict[str, Any]:
        """`/status` in the ledger's shape; the claims (network, genesis, work) once armed."""
        shown = self._shown()
        tip = shown[-1]
        work = self.claim_work if self.armed and self.claim_work else chain_work(shown)
        network = self.network if self.armed else REGTEST.name
        return {
            "network": network,
            "network_id": f"pybtc-{network}",
            "genesis": self.genesis if self.armed else REGTEST.genesis.hash,
            "tip": tip.hash,
            "height": self.claim_height if self.armed and self.claim_height else tip.index,
            "tip_time": tip.timestamp,
            "chain_work": f"{work:064x}",
            "bits": tip.header.bits,
            "difficulty": 1.0,
            "mempool_size": 0,
            "node_id": self.node_id,
            "url": self.url,
        }

    def _page(self, request: web.Request, headers: bool) -> dict[str, Any]:
        shown = self._shown()
        start = int(request.query.get("start", "1"))
        limit = int(request.query.get("limit", str(len(shown))))
        selected = shown[start - 1 : start - 1 + limit]
        items = [b.header.to_dict() if headers else b.to_dict() for b in selected]
        return {"chain": items, "length": len(shown)}

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "status", self.status_body())

    async def _chain(self, request: web.Request) -> web.StreamResponse:
        headers = request.query.get("format") == "headers"
        return await self._answer(
            request, "headers" if headers else "blocks", self._page(request, headers)
        )

    async def _block(self, request: web.Request) -> web.StreamResponse:
        found = next((b for b in self.chain if b.hash == request.match_info["hash"]), None)
        if found is None:
            self.requests.append((request.method, request.path_qs))
            return web.json_response({"error": "no block", "reason": "not-found"}, status=404)
        return await self._answer(request, "block", {"block": found.to_dict()})

    async def _register(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        return web.json_response({"message": "New nodes have been added"}, status=201)

    async def _resolve(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        tip = self.chain[-1].header.to_dict()
        return web.json_response({"message": "Our chain is authoritative", "chain": [tip]})

    async def _anything_else(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        return web.json_response({"error": "no such route", "reason": "not-found"}, status=404)

    async def _answer(self, request: web.Request, route: str, body: Any) -> web.StreamResponse:
        """`body` as a ledger would send it, or the misbehaviour armed for `route`."""
        self.requests.append((request.method, request.path_qs))
        raw = json.dumps(body).encode()
        bad = self.bad.get(route, Bad.OK) if self.armed else Bad.OK
        if bad is Bad.OK:
            return web.Response(body=raw, content_type="application/json")
        if bad is Bad.HTML:
            page = "<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
            return web.Response(text=page, content_type="text/html")
        if bad is Bad.TRUNCATED:
            return web.Response(body=raw[: len(raw) // 2], content_type="application/json")
        if bad is Bad.ERROR_500:
            return web.Response(status=500, text="500 Internal Server Error")
        if bad is Bad.NOT_FOUND:
            return web.Response(status=404, text="404: Not Found")
        if bad is Bad.REDIRECT:
            raise web.HTTPFound(location=self.redirect_to + request.path_qs)
        if bad is Bad.HUGE_HEADER:
            response = web.Response(body=raw, content_type="application/json")
            response.headers["X-Padding"] = "x" * 100_000
            return response
        if bad is Bad.GZIP_BOMB:
            return web.Response(
                body=gzip_bomb(),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        if bad is Bad.SILENT:
            await self._stopping.wait()
            return web.Response(status=204)
        if bad is Bad.DRIP:
            return await self._drip(body)
        return await self._stream(request, raw, endless=bad is Bad.ENDLESS)

    async def _drip(self, body: Any) -> web.Response:
        """A page of one item, sent just inside the node's timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.drip_delay)
        if isinstance(body, dict) and isinstance(body.get("chain"), list):
            body = body | {"chain": body["chain"][:1]}
        return web.json_response(body)

    async def _stream(
        self, request: web.Request, raw: bytes, *, endless: bool
    ) -> web.StreamResponse:
        """A 200 whose body never ends (endless) or comes a byte every TRICKLE_GAP seconds."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        filler = b" " * 65_536
        try:
            if endless:
                await response.write(b'{"chain": [')
                while not self._stopping.is_set():
                    await response.write(filler)
                    await asyncio.sleep(0)
            else:
                for offset in range(len(raw)):
                    if self._stopping.is_set():
                        break
                    await response.write(raw[offset : offset + 1])
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), TRICKLE_GAP)
        except ConnectionError:
            pass  # the node hung up on us, as it should
        return response


# -- below HTTP ----------------------------------------------------------------------------------


class _RawServer:
    """A TCP server on a free loopback port whose connections `_serve` handles."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._stopping = asyncio.Event()

    async def start(self) -> _RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await self._serve(reader, writer)
            await self._stopping.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        self._stopping.set()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class BlackHole(_RawServer):
    """Accepts every TCP connection, reads what comes, and never answers."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65_536)


class Babbler(_RawServer):
    """Answers every connection with a banner that is not HTTP (an SSH server, say)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\x00\xff\xfe\r\n\r\n")
        await writer.drain()
