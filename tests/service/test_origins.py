"""Web pages on the visitor's machine: DNS rebinding and cross-site requests (origins.py).

A page of another site can send requests to `127.0.0.1:5000` whose answers it cannot read: a
no-cors `POST /nodes/register` as `text/plain`, a `GET /mine`. A page at a name it points at
127.0.0.1 (`rebind.example`) can even read the answers. These tests send the exact headers a
browser sends in each case (`Origin`, `Sec-Fetch-Site`, `Sec-Fetch-Mode`, the Host of the
page's URL) to real services on loopback — two ledgers on real ports (so a registration has a
real peer to add), the wallet and the explorer in front of a real ledger — and check that each
is refused with its reason and changes nothing, while the same request as a program sends it
(no browser headers, `Content-Type: application/json`) still works.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.common.origins import GUARD, AllowedHosts, BrowserGuard, split_host
from services.common.settings import Settings
from services.common.web import ServiceError
from services.explorer.app import create_app as create_explorer
from services.node.app import create_app as create_ledger
from services.wallet.csrf import COOKIE, HEADER, csrf_middleware
from tests.service.ledgerutil import LedgerNode
from tests.service.walletutil import ALICE, Wallet, assert_refusal, funded_wallet

EVIL = "http://evil.example"
REBIND = "rebind.example"
NO_CORS = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"}
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", **NO_CORS}
SAME_SITE = {"Sec-Fetch-Site": "same-site", **NO_CORS}
TEXT = {"Content-Type": "text/plain;charset=UTF-8"}  # what a no-cors fetch of a string sends
JSON = {"Content-Type": "application/json"}


# -- the names and origins ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("localhost:5000", ("localhost", 5000)),
        ("LocalHost.", ("localhost", None)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("[::1]:5000", ("::1", 5000)),
        ("[0:0:0:0:0:0:0:1]", ("::1", None)),
        ("node1-ledger:5000", ("node1-ledger", 5000)),
        ("::1", None),  # IPv6 without brackets
        ("[node]:1", None),
        ("[::1]x", None),
        ("a:99999", None),
        ("a:", None),
        ("", None),
        ("a b", None),
        ("evil.example@localhost", None),
    ],
)
def test_split_host(header: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host(header) == expected


def test_a_loopback_node_answers_its_own_names_only() -> None:
    allowed = AllowedHosts.from_settings(Settings(allowed_hosts="node.example, [fd00::5]"))
    for name in ("localhost", "127.0.0.1", "::1", "node.example", "fd00::5"):
        assert allowed.allows(name), name
    for name in (REBIND, "10.0.0.5", "127.0.0.2", "localhost.evil.example", "example"):
        assert not allowed.allows(name), name


def test_a_node_on_every_address_answers_its_urls_and_any_address() -> None:
    """The compose stack's containers: peers and sibling services use the container names of
    the node's URLs; probes and LAN clients use addresses, which no page can rebind."""
    settings = Settings(
        host="0.0.0.0",
        public_url="http://node1-ledger:5000",
        explorer_public_url="http://localhost:8180",
        miner_url="http://node1-miner:5100",  # where the ledger asks its miner for GET /mine
    )
    allowed = AllowedHosts.from_settings(settings)
    for name in ("node1-ledger", "node1-miner", "localhost", "172.18.0.3", "10.1.2.3", "fe80::1"):
        assert allowed.allows(name), name
    assert not allowed.allows(REBIND)
    assert not allowed.allows("node2-ledger")


@pytest.mark.parametrize(
    "entry", ["http://node.example", "node.example:8080", "a/b", "[node.example]", "a b"]
)
def test_allowed_hosts_are_names_only(entry: str) -> None:
    with pytest.raises(ValueError, match="PYBTC_ALLOWED_HOSTS"):
        AllowedHosts.from_settings(Settings(allowed_hosts=entry))


@pytest.mark.parametrize(
    ("origin", "host", "own"),
    [
        ("http://127.0.0.1:8081", "127.0.0.1:8081", True),
        ("http://localhost:8080", "localhost:5000", True),  # the explorer's page, to the ledger
        ("http://localhost:18181", "localhost:18181", True),  # a port mapping (compose)
        ("https://localhost", "localhost", True),  # behind a proxy that ends TLS
        ("http://localhost:9999", "localhost:5000", False),  # another port: same-site only
        ("https://127.0.0.1", "127.0.0.1:8081", False),
        (f"http://{REBIND}:8081", f"{REBIND}:8081", False),  # whatever the Host says
        ("http://evil.example", "127.0.0.1:5000", False),
        ("null", "127.0.0.1:5000", False),
        ("file://", "127.0.0.1:5000", False),
        ("http://127.0.0.1:8081/path", "127.0.0.1:8081", False),
    ],
)
def test_own_origins(origin: str, host: str, own: bool) -> None:
    allowed = AllowedHosts.from_settings(Settings())
    assert allowed.own_origin(origin, host) is own


# -- the ledger -----------------------------------------------------------------------------------


@pytest.fixture
async def ledgers(tmp_path: Path) -> AsyncIterator[tuple[LedgerNode, LedgerNode]]:
    """Two regtest ledgers on real loopback ports, no bus: A, and B that A could add."""
    a = await LedgerNode(tmp_path / "a").start()
    b = await LedgerNode(tmp_path / "b").start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def call(
    method: str, url: str, *, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, Any]:
    """One request with exactly these headers (aiohttp adds no Content-Type of its own)."""
    skip = [] if data is None or "Content-Type" in (headers or {}) else ["Content-Type"]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.request(method, url, headers=headers, data=data, skip_auto_headers=skip) as resp,
    ):
        text = await resp.text()
        if method == "HEAD" or resp.content_type != "application/json":
            return resp.status, text
        return resp.status, json.loads(text)


async def peers(node: LedgerNode) -> list[str]:
    status, body = await call("GET", f"{node.url}/nodes")
    assert status == 200, body
    return [peer["url"] for peer in body["peers"]]


def registration(peer: LedgerNode) -> bytes:
    return json.dumps({"nodes": peer.url}).encode()


@pytest.mark.parametrize(
    "browser",
    [
        {"Origin": EVIL, **CROSS_SITE},  # fetch(url, {method: "POST", mode: "no-cors", body})
        {"Origin": EVIL},  # a browser without Sec-Fetch-* headers
        {"Origin": "http://localhost:9999", **SAME_SITE},  # a page on another port of loopback
        {"Origin": "null", **CROSS_SITE},  # a sandboxed frame, a file:// page
    ],
)
async def test_a_no_cors_registration_from_a_page_adds_no_peer(
    ledgers: tuple[LedgerNode, LedgerNode], browser: dict[str, str]
) -> None:
    a, b = ledgers
    for content_type in (TEXT, JSON):
        status, body = await call(
            "POST", f"{a.url}/nodes/register", headers=content_type | browser, data=registration(b)
        )
        assert (status, body["reason"]) == (403, "cross-site"), body
    assert await peers(a) == []


@pytest.mark.parametrize(
    "content_type",
    [
        TEXT,
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/jsonx"},
        {},  # none at all
    ],
)
async def test_a_body_that_is_not_declared_json_is_refused(
    ledgers: tuple[LedgerNode, LedgerNode], content_type: dict[str, str]
) -> None:
    """What a form or a no-cors fetch can send without a preflight is refused even with no
    browser header at all (browsers that send no Origin or Sec-Fetch-Site)."""
    a, b = ledgers
    for path in ("/nodes/register", "/nodes/resolve", "/transactions/new", "/mining/submit"):
        status, body = await call("POST", a.url + path, headers=content_type, data=registration(b))
        assert (status, body["reason"]) == (415, "unsupported-media-type"), (path, body)
    assert await peers(a) == []


@pytest.mark.parametrize(
    "headers",
    [
        JSON,
        {"Content-Type": "application/json; charset=utf-8"},  # the tutorial's programs
        {"Content-Type": "application/vnd.pybtc+json"},
        JSON | {"Origin": "http://localhost:8080", "Sec-Fetch-Site": "same-site"},  # own page
        JSON | {"Sec-Fetch-Site": "same-origin"},
        JSON | {"Sec-Fetch-Site": "none"},  # typed by the user
    ],
)
async def test_programs_and_own_pages_still_register(
    ledgers: tuple[LedgerNode, LedgerNode], headers: dict[str, str]
) -> None:
    a, b = ledgers
    status, body = await call(
        "POST", f"{a.url}/nodes/register", headers=headers, data=registration(b)
    )
    assert status == 201, body
    assert await peers(a) == [b.url]


@pytest.mark.parametrize("path", ["/mine", "/nodes/resolve", f"/nodes/resolve?miner_node={EVIL}"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "browser",
    [
        CROSS_SITE,  # fetch(url, {mode: "no-cors"}), <img src>: no Origin on a GET
        SAME_SITE,
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
        {"Origin": EVIL},
    ],
)
async def test_the_tutorials_acting_gets_refuse_pages_of_other_sites(
    ledgers: tuple[LedgerNode, LedgerNode], path: str, method: str, browser: dict[str, str]
) -> None:
    a, _ = ledgers
    status, body = await call(method, a.url + path, headers=browser)
    assert status == 403, body
    if method == "GET":
        assert body["reason"] == "cross-site"


async def test_reading_gets_and_programs_pass(ledgers: tuple[LedgerNode, LedgerNode]) -> None:
    """A page may still load the ledger's reads (it cannot read them cross-origin anyway:
    no CORS), and /nodes/resolve without browser headers works as in the tutorial."""
    a, _ = ledgers
    status, _body = await call("GET", f"{a.url}/status", headers=CROSS_SITE)
    assert status == 200
    status, body = await call("GET", f"{a.url}/nodes/resolve")
    assert (status, body["message"]) == (200, "Our chain is authoritative"), body
    status, body = await call("GET", f"{a.url}/nodes/resolve", headers={"Sec-Fetch-Site": "none"})
    assert status == 200, body


@pytest.mark.parametrize("path", ["/status", "/chain", "/nodes", "/healthz", "/mine", "/nope"])
async def test_a_rebinding_host_is_refused_by_the_ledger(
    ledgers: tuple[LedgerNode, LedgerNode], path: str
) -> None:
    a, _ = ledgers
    for host in (f"{REBIND}:{a.port}", REBIND, "127.0.0.2", "[::2]", "localhost.rebind.example"):
        status, body = await call("GET", a.url + path, headers={"Host": host})
        assert (status, body["reason"]) == (421, "host-not-allowed"), (host, body)
        assert set(body) == {"error", "reason"}


async def test_a_rebinding_host_cannot_register(ledgers: tuple[LedgerNode, LedgerNode]) -> None:
    a, b = ledgers
    status, body = await call(
        "POST",
        f"{a.url}/nodes/register",
        headers=JSON | {"Host": f"{REBIND}:{a.port}", "Origin": f"http://{REBIND}:{a.port}"},
        data=registration(b),
    )
    assert (status, body["reason"]) == (421, "host-not-allowed"), body
    assert await peers(a) == []


async def test_a_request_without_host_is_refused(ledgers: tuple[LedgerNode, LedgerNode]) -> None:
    a, _ = ledgers
    reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
    try:
        writer.write(b"GET /status HTTP/1.0\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 421") or head.startswith(b"HTTP/1.1 421"), head
    assert json.loads(body)["reason"] == "host-not-allowed"


async def test_the_names_a_ledger_answers_to(aiohttp_client: Any, tmp_path: Path) -> None:
    """localhost, 127.0.0.1, [::1], the public URL's host and PYBTC_ALLOWED_HOSTS."""
    settings = Settings(
        network="regtest",
        data_dir=tmp_path,
        public_url="https://ledger.example.org",
        allowed_hosts="node.example,192.0.2.7",
    )
    client = await aiohttp_client(create_ledger(settings))
    for host in (
        "localhost:5000",
        "127.0.0.1",
        "[::1]:5000",
        "ledger.example.org",
        "LEDGER.example.org:443",
        "node.example:5000",
        "192.0.2.7",
    ):
        resp = await client.get("/status", headers={"Host": host})
        assert resp.status == 200, (host, await resp.text())
    for host in (REBIND, "example.org", "192.0.2.8", "node.example.rebind.example"):
        resp = await client.get("/status", headers={"Host": host})
        assert resp.status == 421, host


async def test_a_ledger_on_every_address_answers_addresses(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = Settings(
        network="regtest",
        data_dir=tmp_path,
        host="0.0.0.0",
        public_url="http://node1-ledger:5000",
    )
    client = await aiohttp_client(create_ledger(settings))
    for host, status in (
        ("node1-ledger:5000", 200),
        ("172.18.0.3:5000", 200),
        ("[fd00::3]:5000", 200),
        ("node2-ledger:5000", 421),
        (f"{REBIND}:5000", 421),
    ):
        resp = await client.get("/status", headers={"Host": host})
        assert resp.status == status, host


# -- the explorer ---------------------------------------------------------------------------------


async def test_a_rebinding_host_is_refused_by_the_explorer(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """The explorer's pages show its error page, its /api/ answers JSON; its own names work."""
    ledger = await LedgerNode(tmp_path / "ledger").start()
    try:
        settings = Settings(network="regtest", ledger_url=ledger.url, public_url=ledger.url)
        client = await aiohttp_client(create_explorer(settings))
        resp = await client.get("/", headers={"Host": f"{REBIND}:8080"})
        text = await resp.text()
        assert (resp.status, resp.content_type) == (421, "text/html"), text
        assert "host-not-allowed" in text
        resp = await client.get("/api/summary", headers={"Host": f"{REBIND}:8080"})
        assert await assert_refusal(resp, 421, "host-not-allowed")
        for host in ("localhost:8080", "127.0.0.1:8080"):
            resp = await client.get("/api/summary", headers={"Host": host})
            assert resp.status == 200, await resp.text()
        resp = await client.post("/", headers={"Origin": EVIL, **CROSS_SITE}, data=b"x=1")
        assert resp.status == 405  # no route: nothing to guard, nothing happens
    finally:
        await ledger.stop()


# -- the wallet -----------------------------------------------------------------------------------


@pytest.fixture
async def wallet(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as w:
        yield w


async def test_a_rebinding_page_gets_no_csrf_token(wallet: Wallet) -> None:
    port = wallet.client.server.port
    for path in ("/api/csrf", "/", "/api/params"):
        resp = await wallet.client.get(path, headers={"Host": f"{REBIND}:{port}"})
        assert resp.status == 421, path
        assert COOKIE not in resp.cookies, path
        assert "host-not-allowed" in await resp.text()


async def test_a_rebinding_page_gets_no_faucet_payment(wallet: Wallet) -> None:
    """Even with a token (got however) and Origin and Host both saying rebind.example."""
    port = wallet.client.server.port
    page = {"Host": f"{REBIND}:{port}", "Origin": f"http://{REBIND}:{port}"}
    await wallet.refused(
        "/api/faucet", {"address": ALICE.address}, 421, "host-not-allowed", headers=page
    )


@pytest.mark.parametrize(
    "browser",
    [
        {"Origin": "http://localhost:9999", **SAME_SITE},  # another port of loopback
        {"Origin": f"http://{REBIND}:8081"},
    ],
)
async def test_the_wallet_refuses_other_origins(wallet: Wallet, browser: dict[str, str]) -> None:
    await wallet.refused("/api/faucet", {"address": ALICE.address}, 403, "csrf", headers=browser)


async def test_the_wallet_refuses_a_cross_site_request_without_origin(wallet: Wallet) -> None:
    await wallet.refused(
        "/api/faucet", {"address": ALICE.address}, 403, "cross-site", headers=CROSS_SITE
    )


async def test_the_wallet_serves_its_own_page(wallet: Wallet) -> None:
    server = wallet.client.server
    resp = await wallet.post(
        "/api/faucet",
        {"address": ALICE.address},
        headers={
            "Origin": f"http://{server.host}:{server.port}",
            "Sec-Fetch-Site": "same-origin",
            "Sec-Fetch-Mode": "cors",
        },
    )
    assert resp.status == 201, await resp.text()


def _csrf_request(host: str, origin: str, guard: BrowserGuard) -> web.Request:
    token = "t" * 43
    app = web.Application()
    app[GUARD] = guard
    return make_mocked_request(
        "POST",
        "/api/faucet",
        headers={
            "Host": host,
            "Origin": origin,
            HEADER: token,
            "Cookie": f"{COOKIE}={token}",
            "Content-Type": "application/json",
        },
        app=app,
    )


@pytest.mark.parametrize(
    ("host", "origin", "passes"),
    [
        (f"{REBIND}:8081", f"http://{REBIND}:8081", False),
        ("127.0.0.1:8081", "http://127.0.0.1:8081", True),
        ("localhost:18181", "http://localhost:18181", True),
        ("wallet.example.org", "https://wallet.example.org", True),
    ],
)
async def test_the_csrf_check_compares_origin_with_the_wallets_names(
    host: str, origin: str, passes: bool
) -> None:
    """The check alone (without the Host middleware in front of it): an Origin that matches
    the request's Host is not enough, it must be one of the wallet's names."""
    guard = BrowserGuard.from_settings(Settings(allowed_hosts="wallet.example.org"))
    request = _csrf_request(host, origin, guard)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="paid")

    if passes:
        assert (await csrf_middleware(request, handler)).status == 200
    else:
        with pytest.raises(ServiceError) as refused:
            await csrf_middleware(request, handler)
        assert (refused.value.status, refused.value.reason) == (403, "csrf")


async def test_the_wallets_faucet_for_programs_still_works(wallet: Wallet) -> None:
    """The CLI wallet and the tests' clients send no Origin: still paid."""
    resp = await wallet.post("/api/faucet", {"address": ALICE.address})
    assert resp.status == 201, await resp.text()
