"""Limits per client, the operator token and the caps on what a service reads: a public node.

The first tests drive `ClientLimits` with a clock of their own (the token bucket's arithmetic,
Retry-After, the bound on remembered clients, who the client is behind trusted proxies). The
others run real services on loopback ports: a ledger (`LedgerNode`), the explorer and the
wallet in front of it. Their clients are on loopback, which the default exempts, so these
services are started with `client_exempt=""` — or name a trusted proxy (127.0.0.1) and play
clients from elsewhere with `X-Forwarded-For`. Every refusal is a 4xx with a JSON reason (an
HTML page on the explorer), and a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.common import limits
from services.common.ledger_client import LedgerClient
from services.common.limits import ClientLimits, parse_networks
from services.common.settings import Settings
from services.common.web import ServiceError
from services.explorer.app import create_app
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode, free_port
from tests.service.walletutil import ALICE, BOB, assert_refusal, funded_wallet
from tests.upnode import PYBTC

TOKEN = "operator-s3cret"
SPOOFED = "198.51.100.1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def refusal(limits_: ClientLimits, key: str) -> ServiceError | None:
    try:
        limits_.check(key, None)
    except ServiceError as exc:
        return exc
    return None


# -- the arithmetic --------------------------------------------------------------------------------


def test_a_burst_then_the_rate_with_retry_after() -> None:
    """`burst` requests at once pass; the next is 429 rate-limited with Retry-After the whole
    seconds until a token is back; each client has its own bucket; tokens come back at `rate`."""
    clock = Clock()
    bucket = ClientLimits(rate=2, burst=5, connections=0, clock=clock)
    assert [refusal(bucket, "203.0.113.1") for _ in range(5)] == [None] * 5
    refused = refusal(bucket, "203.0.113.1")
    assert refused is not None
    assert (refused.status, refused.reason) == (429, "rate-limited")
    assert refused.headers["Retry-After"] == "1"
    assert refusal(bucket, "203.0.113.2") is None, "another client has its own bucket"
    clock.now += 0.4  # 0.8 of a token: still refused
    assert refusal(bucket, "203.0.113.1") is not None
    clock.now += 0.1
    assert refusal(bucket, "203.0.113.1") is None
    assert refusal(bucket, "203.0.113.1") is not None
    clock.now += 1_000  # a long pause refills to the burst, no more
    assert [refusal(bucket, "203.0.113.1") for _ in range(6)].count(None) == 5


def test_retry_after_is_the_wait_for_one_token() -> None:
    clock = Clock()
    slow = ClientLimits(rate=1, burst=1, connections=0, clock=clock)
    assert refusal(slow, "a") is None
    refused = refusal(slow, "a")
    assert refused is not None
    assert refused.headers["Retry-After"] == "1"
    clock.now += 0.5
    refused = refusal(slow, "a")
    assert refused is not None
    assert refused.headers["Retry-After"] == "1"


def test_remembered_clients_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_CLIENTS clients are kept, the least recently seen forgotten first."""
    monkeypatch.setattr(limits, "MAX_CLIENTS", 3)
    bucket = ClientLimits(rate=1, burst=1, connections=0, clock=Clock())
    for key in ("a", "b", "c", "a", "d"):
        refusal(bucket, key)
    assert list(bucket.buckets.buckets) == ["c", "a", "d"]


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("203.0.113.5", [], "203.0.113.5"),
        ("203.0.113.5", ["192.0.2.77"], "203.0.113.5"),  # an untrusted sender's header: ignored
        ("10.0.0.2", ["192.0.2.77"], "192.0.2.77"),
        ("10.0.0.2", [f"{SPOOFED}, 192.0.2.77"], "192.0.2.77"),  # the client's own claim: ignored
        ("10.0.0.2", ["192.0.2.77, 10.0.0.3"], "192.0.2.77"),  # two trusted proxies in a row
        ("10.0.0.2", ["192.0.2.77", "10.0.0.3"], "192.0.2.77"),  # ...as two header lines
        ("10.0.0.2", ["not-an-address"], "10.0.0.2"),
        ("10.0.0.2", [], "10.0.0.2"),
    ],
)
def test_the_client_behind_trusted_proxies(remote: str, forwarded: list[str], client: str) -> None:
    """The client is the last X-Forwarded-For entry that no trusted proxy (10.0.0.0/8 here)
    wrote; entries a client wrote itself, left of it, count for nothing."""
    bucket = ClientLimits(1, 1, 0, trusted_proxies=parse_networks("10.0.0.0/8", "test"))
    headers = [("X-Forwarded-For", value) for value in forwarded]
    request = make_mocked_request("GET", "/", headers=headers)
    request = request.clone(remote=remote)
    assert bucket.client_address(request) == ip_address(client)


def test_settings_that_cannot_be_used_are_refused() -> None:
    with pytest.raises(ValueError, match="PYBTC_CLIENT_EXEMPT"):
        ClientLimits(1, 1, 0, exempt=frozenset({"everyone"}))
    with pytest.raises(ValueError, match="PYBTC_TRUSTED_PROXIES"):
        parse_networks("10.0.0.0/8, proxy.example", "PYBTC_TRUSTED_PROXIES")


# -- a real ledger ---------------------------------------------------------------------------------


@pytest.fixture
async def start_ledger(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[LedgerNode] = []

    async def start(**changes: Any) -> LedgerNode:
        node = LedgerNode(tmp_path / f"node{len(started)}", sync_interval=3_600.0, **changes)
        started.append(node)
        return await node.start()

    yield start
    for node in started:
        await node.stop()


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_a_client_past_its_rate_is_refused_429(start_ledger: Any) -> None:
    """Forty requests at once from one (non-exempt) client: the burst passes, the rest are 429
    rate-limited with Retry-After; no more pass than the burst plus what the elapsed time
    refilled. Meanwhile another client, behind the same trusted proxy, is served."""
    node = await start_ledger(
        client_rate=1, client_burst=5, client_connections=0, trusted_proxies="127.0.0.1"
    )
    one = {"X-Forwarded-For": "203.0.113.10"}
    async with aiohttp.ClientSession() as http:
        start = time.monotonic()
        answers = await asyncio.gather(
            *(fetch(http, "GET", f"{node.url}/status", headers=one) for _ in range(40))
        )
        elapsed = time.monotonic() - start
        served = [a for a in answers if a[0] == 200]
        refused = [a for a in answers if a[0] != 200]
        assert 5 <= len(served) <= 5 + int(elapsed) + 1, (len(served), elapsed)
        assert {a[0] for a in refused} == {429}
        for _, body, headers in refused:
            assert body["reason"] == "rate-limited"
            assert "a second" in body["error"]
            assert int(headers["Retry-After"]) >= 1
        other = await fetch(
            http, "GET", f"{node.url}/status", headers={"X-Forwarded-For": "203.0.113.11"}
        )
        assert other[0] == 200
        assert (await fetch(http, "GET", f"{node.url}/healthz"))[0] == 200, "the proxy itself"


async def test_loopback_clients_are_exempt_by_default(start_ledger: Any) -> None:
    """A node's own services and a laptop's user are on loopback: never limited by default."""
    node = await start_ledger(client_rate=1, client_burst=1, client_connections=1)
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(
            *(fetch(http, "GET", f"{node.url}/status") for _ in range(30))
        )
    assert {a[0] for a in answers} == {200}


async def test_connections_per_client_are_limited(start_ledger: Any) -> None:
    """With 2 connections allowed, a third connection's request is 429 too-many-connections
    and that connection is closed; once one of the first two closes, it is served."""
    node = await start_ledger(client_rate=0, client_connections=2, client_exempt="")
    sessions = [aiohttp.ClientSession() for _ in range(3)]  # a connection each, kept alive
    try:
        first, second, third = sessions
        assert (await fetch(first, "GET", f"{node.url}/status"))[0] == 200
        assert (await fetch(second, "GET", f"{node.url}/status"))[0] == 200
        assert (await fetch(first, "GET", f"{node.url}/status"))[0] == 200, "the same connection"
        status, body, headers = await fetch(third, "GET", f"{node.url}/status")
        assert (status, body["reason"]) == (429, "too-many-connections"), body
        assert headers["Retry-After"] == "1"
        assert headers["Connection"] == "close"
        await first.close()
        for _ in range(100):  # until the node has seen the connection go
            status, body, _ = await fetch(third, "GET", f"{node.url}/status")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200, body
    finally:
        for session in sessions:
            await session.close()


# -- the operator token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"bearer {TOKEN}x"]
)
async def test_operator_endpoints_need_the_token(
    start_ledger: Any, authorization: str | None
) -> None:
    """With PYBTC_OPERATOR_TOKEN set, GET /mine and POST /nodes/register without the right
    bearer token are 401 operator-only with WWW-Authenticate, and register adds no peer;
    the public endpoints stay open."""
    node = await start_ledger(operator_token=TOKEN)
    peer = await start_ledger()
    headers = {"Authorization": authorization} if authorization else {}
    async with aiohttp.ClientSession() as http:
        for method, path, body in (
            ("GET", "/mine", None),
            ("POST", "/nodes/register", {"nodes": [peer.url]}),
        ):
            status, answer, sent = await fetch(
                http, method, node.url + path, json=body, headers=headers
            )
            assert (status, answer["reason"]) == (401, "operator-only"), answer
            assert "PYBTC_OPERATOR_TOKEN" in answer["error"]
            assert sent["WWW-Authenticate"].startswith("Bearer")
        assert (await fetch(http, "GET", f"{node.url}/nodes"))[1]["peers"] == []
        assert (await fetch(http, "GET", f"{node.url}/status"))[0] == 200
        assert (await fetch(http, "GET", f"{node.url}/chain?limit=1"))[0] == 200


async def test_the_operator_with_the_token_is_served(start_ledger: Any) -> None:
    node = await start_ledger(operator_token=TOKEN)
    peer = await start_ledger()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        status, answer, _ = await fetch(
            http, "POST", f"{node.url}/nodes/register", json={"nodes": [peer.url]}, headers=bearer
        )
        assert (status, answer["added"]) == (201, [peer.url]), answer


async def test_without_a_token_the_operator_endpoints_are_open(start_ledger: Any) -> None:
    """The default (no token): a laptop's node works as the tutorial's did."""
    node = await start_ledger()
    peer = await start_ledger()
    async with aiohttp.ClientSession() as http:
        status, answer, _ = await fetch(
            http, "POST", f"{node.url}/nodes/register", json={"nodes": [peer.url]}
        )
        assert status == 201, answer


async def test_the_faucet_needs_the_token_when_one_is_set(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """The wallet's faucet with PYBTC_OPERATOR_TOKEN set: 401 operator-only without it (and
    nothing in the mempool), 201 with it."""
    async with funded_wallet(aiohttp_client, tmp_path, redis_url, operator_token=TOKEN) as wallet:
        params = await (await wallet.client.get("/api/params")).json()
        assert params["faucet"]["operator_only"] is True
        assert params["faucet"]["enabled"] is False, "a browser holds no token: no button"
        before = await wallet.snapshot()
        resp = await wallet.post("/api/faucet", {"address": ALICE.address})
        await assert_refusal(resp, 401, "operator-only")
        assert await wallet.snapshot() == before
        resp = await wallet.post(
            "/api/faucet",
            {"address": ALICE.address},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status == 201, await resp.text()


# -- the explorer's pages --------------------------------------------------------------------------


async def test_the_explorer_refuses_past_the_rate_with_a_page(start_ledger: Any) -> None:
    """A browser past its rate gets a readable 429 page with Retry-After, not a stack trace."""
    node = await start_ledger()
    settings = Settings(
        network="regtest",
        data_dir=node.settings.data_dir,
        ledger_url=node.url,
        client_rate=1,
        client_burst=2,
        client_exempt="",
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(6):
                async with http.get(f"http://127.0.0.1:{port}/blocks") as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        page = await resp.text()
                        assert resp.content_type == "text/html"
                        assert "rate-limited" in page
                        assert "Traceback" not in page
                        assert int(resp.headers["Retry-After"]) >= 1
            assert statuses[:2] == [200, 200], statuses
            assert 429 in statuses, statuses
    finally:
        await runner.cleanup()


async def test_the_faucet_tells_clients_apart_behind_a_trusted_proxy(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """Behind a trusted proxy the faucet's one-payment-per-client rule applies to the client
    the proxy names, not to the proxy: a second client is paid, the first one again is not."""
    async with funded_wallet(
        aiohttp_client, tmp_path, redis_url, trusted_proxies="127.0.0.1"
    ) as wallet:
        paid = await wallet.post(
            "/api/faucet", {"address": ALICE.address}, headers={"X-Forwarded-For": "203.0.113.1"}
        )
        assert paid.status == 201, await paid.text()
        other = await wallet.post(
            "/api/faucet", {"address": BOB.address}, headers={"X-Forwarded-For": "203.0.113.2"}
        )
        assert other.status == 201, await other.text()
        again = await wallet.post(
            "/api/faucet",
            {"address": test_key(7).address},
            headers={"X-Forwarded-For": "203.0.113.1"},
        )
        await assert_refusal(again, 429, "rate-limited")


async def test_an_answer_from_the_ledger_is_read_up_to_a_cap() -> None:
    """The services read their ledger's answers up to a cap: past it, a 502 with a reason, not
    a service holding (or parsing) whatever arrives."""
    big = b'{"pad": "' + b"x" * 5_000 + b'"}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/json")

    app = web.Application()
    app.router.add_get("/status", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        roomy = LedgerClient(f"http://127.0.0.1:{port}")
        small = LedgerClient(f"http://127.0.0.1:{port}", max_bytes=1_000)
        try:
            assert (await roomy.get("/status"))["pad"] == "x" * 5_000
            with pytest.raises(ServiceError) as refused:
                await small.get("/status")
            assert (refused.value.status, refused.value.reason) == (502, "ledger-answer-too-large")
        finally:
            await roomy.close()
            await small.close()
    finally:
        await runner.cleanup()


async def test_the_cli_faucet_sends_the_operator_token(
    aiohttp_client: Any, tmp_path: Path, redis_url: str
) -> None:
    """`pybtc wallet faucet` is refused by an operator-only faucet without the token, and paid
    with PYBTC_OPERATOR_TOKEN in its environment."""
    async with funded_wallet(aiohttp_client, tmp_path, redis_url, operator_token=TOKEN) as wallet:
        url = str(wallet.client.make_url("")).rstrip("/")

        async def cli(**env: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                PYBTC,
                "wallet",
                "faucet",
                ALICE.address,
                "--wallet-url",
                url,
                "--network",
                "regtest",
                env={k: v for k, v in os.environ.items() if not k.startswith("PYBTC_")} | env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
            return proc.returncode or 0, out.decode()

        code, out = await cli()
        assert code != 0
        assert "operator" in out, out
        code, out = await cli(PYBTC_OPERATOR_TOKEN=TOKEN)
        assert code == 0, out
        assert ALICE.address in out
