"""Hypothesis-driven requests against the explorer and the wallet, in front of a real ledger.

A real regtest ledger (SQLite, the session's real Redis), the explorer and the wallet run on a
background event loop, each on its own loopback port, as `pybtc up` runs them
(tests/service/fuzzutil.py); the ledger has blocks, a pending transaction, a funded faucet.
Hypothesis builds requests from each service's routes (tests/service/appfuzz.py): every path
template with arbitrary, real (block hashes, txids, addresses, heights) and nearly real
(mistyped, upper-case, too long) segments, any query string, any method; for the wallet's POST
endpoints, bodies that are arbitrary JSON, arbitrary bytes, forms, real and spoiled signed
transactions and faucet requests, sent with every CSRF combination (the token right, wrong, in
the cookie only, in the header only, a malformed cookie), foreign origins and any content type.

Every answer must:

- not be a 5xx, and come within `CLIENT_TIMEOUT` (no hang; the live-update stream answers its
  headers at once and is then closed by the client);
- redirect, if at all, only within the service (a path starting with one `/`);
- if it is a 4xx, carry a clear reason: `{"error", "reason"}` JSON under /api/, and elsewhere
  the service's HTML error page naming its code (`code: <code>...</code>`) with a message;
- leave the ledger as it was (`LedgerWatch.digest`, read after every request): always for the
  explorer, which only reads; for the wallet unless it is a 2xx to a POST (a payment or a
  broadcast). A wallet refusal also leaves the node key file (which the faucet spends) as it
  was, and one the wallet makes itself (CSRF, media type) never reaches the ledger: the
  ledger's rejection log does not grow either.

The default run is deterministic and bounded; `PYBTC_FUZZ_EXAMPLES=<n>` makes each test draw
`n` random requests instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hypothesis import event, example, given
from hypothesis import strategies as st

from pybtc import REGTEST, Block
from pybtc.mining import mine_block
from services.common.embedded_redis import EmbeddedRedis
from services.common.node_key import load_or_create_node_key, node_key_path
from services.common.settings import Settings
from tests.service.appfuzz import (
    ALICE,
    CSRF_CASES,
    EXPLORER_QUERY,
    EXPLORER_ROUTES,
    ORIGINS,
    PENDING,
    READ_METHODS,
    SENDER,
    WALLET_QUERY,
    WALLET_ROUTES,
    WRITE_PATHS,
    any_path,
    bodies,
    check_answer,
    content_types,
    query_strings,
)
from tests.service.fuzzutil import (
    CLIENT_TIMEOUT,
    BackgroundLoop,
    LedgerWatch,
    OfflineResolverLoop,
    fuzz_settings,
)
from tests.service.ledgerutil import free_port

# -- the services ---------------------------------------------------------------------------------


@dataclass
class Apps:
    """The ledger (watched), the explorer and the wallet, and a token the wallet handed out."""

    ledger: LedgerWatch
    explorer: str
    wallet: str
    wallet_host: str
    key_file: Path
    token: str
    http: requests.Session

    def send(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[requests.Response, str]:
        """One request: no redirects followed, no cookies kept; the body is read unless the
        answer is the live-update stream (which never ends)."""
        self.http.cookies.clear()
        resp = self.http.request(
            method,
            url,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            stream=True,
            timeout=CLIENT_TIMEOUT,
        )
        with resp:
            if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                return resp, ""
            return resp, resp.content.decode("utf-8", "replace")

    def rejections(self) -> int:
        return len(self.ledger.get("/rejections?limit=500")["rejections"])


def _mine(ledger: LedgerWatch, address: str, count: int) -> None:
    for _ in range(count):
        template = Block.from_dict(ledger.get(f"/mining/template?address={address}")["block"])
        block = mine_block(template)
        assert block is not None
        resp = ledger.http.post(ledger.url + "/mining/submit", json=block.to_dict(), timeout=10)
        assert resp.status_code == 201, resp.text


@pytest.fixture(scope="module")
def apps(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    """Ledger, explorer and wallet; the faucet (the node key) and the sender hold two block
    rewards each, and the sender's payment to Bob is pending."""
    from services.explorer.app import create_app as create_explorer
    from services.node.app import create_app as create_ledger
    from services.wallet.app import create_app as create_wallet

    redis_server.flushall()
    data_dir = tmp_path_factory.mktemp("fuzzed-apps")
    ledger_port, explorer_port, wallet_port = free_port(), free_port(), free_port()
    ledger_url = f"http://127.0.0.1:{ledger_port}"
    settings = Settings(
        network="regtest",
        data_dir=data_dir,
        redis_url=redis_server.url,
        ledger_port=ledger_port,
        explorer_port=explorer_port,
        wallet_port=wallet_port,
        public_url=ledger_url,
        peer_networks="loopback",
        sync_interval=3600.0,
    )
    with BackgroundLoop(OfflineResolverLoop) as services:
        services.serve(lambda: create_ledger(settings), ledger_port)
        services.serve(lambda: create_explorer(settings), explorer_port)
        services.serve(lambda: create_wallet(settings), wallet_port)
        faucet_key = load_or_create_node_key(settings)
        ledger = LedgerWatch(ledger_url, [faucet_key.address, SENDER.address, ALICE.address])
        _mine(ledger, faucet_key.address, 2)
        _mine(ledger, SENDER.address, 2)
        resp = ledger.http.post(ledger_url + "/transactions/new", json=PENDING.to_dict())
        assert resp.status_code == 201, resp.text
        wallet = f"http://127.0.0.1:{wallet_port}"
        with requests.Session() as http:
            token = http.get(wallet + "/api/csrf", timeout=10).json()["token"]
            yield Apps(
                ledger=ledger,
                explorer=f"http://127.0.0.1:{explorer_port}",
                wallet=wallet,
                wallet_host=f"127.0.0.1:{wallet_port}",
                key_file=node_key_path(settings),
                token=token,
                http=http,
            )
        ledger.close()


# -- the tests ------------------------------------------------------------------------------------


@fuzz_settings(200)
@given(
    method=READ_METHODS,
    path=any_path(EXPLORER_ROUTES),
    query=query_strings(EXPLORER_QUERY),
)
@example(method="GET", path="/search", query=f"q={ALICE.address}")  # each kind of redirect
@example(method="GET", path="/search", query=f"q={REGTEST.genesis.hash}")
@example(method="GET", path="/search", query=f"q={PENDING.txid}")
@example(method="GET", path="/search", query="q=2")
@example(method="GET", path="/height/2", query="")
@example(method="GET", path="/events", query="")
def test_explorer_requests(apps: Apps, method: str, path: str, query: str) -> None:
    """The explorer only reads: no request of any kind changes the ledger."""
    read_changes_nothing(apps, apps.explorer, method, path, query)


@fuzz_settings(200)
@given(
    method=st.sampled_from(["GET"] * 6 + ["HEAD", "OPTIONS"]),
    path=any_path(WALLET_ROUTES),
    query=query_strings(WALLET_QUERY),
)
@example(method="GET", path="/watch", query=f"address={ALICE.address}")  # the redirect
@example(method="GET", path="/watch", query="address=")
@example(method="GET", path=f"/api/address/{SENDER.address}", query="")
@example(method="GET", path=f"/api/tx/{PENDING.txid}", query="")
@example(method="GET", path="/events", query="")
def test_wallet_reads(apps: Apps, method: str, path: str, query: str) -> None:
    """Pages, lookups and the JSON API read: nothing changes, whatever the path and query."""
    read_changes_nothing(apps, apps.wallet, method, path, query)


def read_changes_nothing(apps: Apps, base: str, method: str, path: str, query: str) -> None:
    """Send one request to `base`; its answer passes `check_answer`, the ledger is unchanged."""
    before = apps.ledger.digest()
    url = f"{base}{path}?{query}" if query else base + path
    resp, text = apps.send(method, url)
    check_answer(method, path, resp, text)
    event(f"status {resp.status_code}")
    assert apps.ledger.digest() == before


def _csrf_headers(apps: Apps, csrf: str, origin: str) -> dict[str, str]:
    """The CSRF token as `csrf` says (in cookie and header, or not), and an Origin header."""
    cookie, header = {
        "valid": (apps.token, apps.token),
        "none": ("", ""),
        "cookie-only": (apps.token, ""),
        "header-only": ("", apps.token),
        "wrong": (apps.token, apps.token[::-1]),
        "malformed": ("abc", "abc"),
    }[csrf]
    headers = {}
    if cookie:
        headers["Cookie"] = f"pybtc_csrf={cookie}"
    if header:
        headers["X-CSRF-Token"] = header
    if origin:
        headers["Origin"] = f"http://{apps.wallet_host}" if origin == "same" else origin
    return headers


def _write(
    apps: Apps, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[requests.Response, str, str | None]:
    """Send a state-changing request; a refusal must change nothing (ledger, node key file)."""
    before, rejections, key = apps.ledger.digest(), apps.rejections(), apps.key_file.read_bytes()
    resp, text = apps.send(method, apps.wallet + path, headers=headers, body=body)
    reason = check_answer(method, path, resp, text)
    event(f"status {resp.status_code} {reason or ''}")
    where = f"{method} {path} {headers} -> {resp.status_code}: {text[:300]}"
    if resp.status_code in (403, 415):
        assert apps.rejections() == rejections, where  # the wallet's own: never at the ledger
    if resp.status_code >= 400:
        assert apps.ledger.digest() == before, where
        assert apps.key_file.read_bytes() == key, where
    return resp, text, reason


@fuzz_settings(150)
@given(
    method=st.sampled_from(["POST", "POST", "PUT", "DELETE", "PATCH"]),
    path=WRITE_PATHS,
    body=bodies,
    content_type=content_types,
    csrf=st.sampled_from(CSRF_CASES),
    origin=st.sampled_from(ORIGINS),
)
def test_wallet_writes_need_the_csrf_token_and_json(
    apps: Apps, method: str, path: str, body: bytes, content_type: str, csrf: str, origin: str
) -> None:
    """Every state-changing request needs the CSRF token in cookie and header alike and no
    foreign Origin (else 403 `csrf`), then a JSON body (else 415), whatever its path."""
    headers = _csrf_headers(apps, csrf, origin)
    if content_type:
        headers["Content-Type"] = content_type
    resp, text, reason = _write(apps, method, path, body, headers)
    where = f"{method} {path} {headers} -> {resp.status_code}: {text[:300]}"
    if csrf != "valid" or origin not in ("", "same"):
        assert (resp.status_code, reason) == (403, "csrf"), where
    elif content_type.split(";")[0] != "application/json":
        assert (resp.status_code, reason) == (415, "unsupported-media-type"), where


@fuzz_settings(250)
@given(
    path=WRITE_PATHS,
    body=bodies,
    charset=st.sampled_from(["", "; charset=utf-8"]),
    origin=st.sampled_from(["", "same"]),
)
def test_wallet_writes(apps: Apps, path: str, body: bytes, charset: str, origin: str) -> None:
    """With the token and as JSON, any body to any path: broadcasts (real, spoiled, arbitrary
    transactions), faucet requests, anything else. No 5xx; a refusal changes nothing."""
    headers = _csrf_headers(apps, "valid", origin) | {"Content-Type": "application/json" + charset}
    _write(apps, "POST", path, body, headers)


@pytest.mark.parametrize(
    ("service", "present"),
    [("explorer", "/static/style.css"), ("wallet", "/static/wallet.js")],
)
def test_a_missing_static_file_is_the_error_page(apps: Apps, service: str, present: str) -> None:
    """Found by this fuzzing: a static file that does not exist was an empty 404 (aiohttp's
    FileResponse sets it while sending, after every middleware). It is the service's 404 page;
    the files that exist are still served."""
    base = apps.explorer if service == "explorer" else apps.wallet
    for path in ("/static/nothing.js", "/common/nothing.css"):
        resp, text = apps.send("GET", base + path)
        assert resp.status_code == 404
        assert check_answer("GET", path, resp, text) == "not-found"
    for path in (present, "/common/base.css"):
        resp, text = apps.send("GET", base + path)
        assert resp.status_code == 200, path
        assert text
