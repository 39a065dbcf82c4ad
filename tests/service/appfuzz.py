"""What fuzzed requests to the explorer and the wallet are made of, and what every answer must be.

Used by tests/service/test_api_fuzz_apps.py. Paths are each service's route templates with
their `{}` segments filled from real values (block hashes, txids, addresses, heights), near
misses (mistyped, upper-case, too long, hostile) and arbitrary text, percent-encoded; plus stray
and hostile paths sent as they are. Bodies for the wallet's POST endpoints are arbitrary JSON,
bytes, forms, real and spoiled signed transactions and faucet requests.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote, urlencode, urlsplit

import requests
from hypothesis import strategies as st

from pybtc import COIN, REGTEST, Transaction
from pybtc.transaction import TX_FIELDS
from tests.chainutil import test_key
from tests.service.fuzzutil import assert_json_refusal
from tests.strategies import json_values

SENDER, ALICE, BOB = test_key(0), test_key(1), test_key(2)
PENDING = Transaction.create(
    SENDER, BOB.address, COIN, fee=2_000, nonce=0, timestamp=0, network_id=REGTEST.network_id
)
"""Pending in the ledger from the start."""
NEXT = Transaction.create(
    SENDER, ALICE.address, COIN, fee=2_000, nonce=1, timestamp=0, network_id=REGTEST.network_id
)
"""Valid to broadcast through the wallet: the fuzzing can reach a 201."""
COINBASE = REGTEST.genesis.transactions[0].txid
ERROR_CODE = re.compile(r"code: <code>([a-z0-9-]+)</code>")
ERROR_MESSAGE = re.compile(r'<section class="card error">\s*<h1>[^<]+</h1>\s*<p>([^<]+)</p>')

# -- requests -------------------------------------------------------------------------------------


def _mistype(address: str) -> str:
    return address[:17] + ("2" if address[17] != "2" else "3") + address[18:]


REAL_SEGMENTS = [
    REGTEST.genesis.hash,
    COINBASE,
    PENDING.txid,
    NEXT.txid,
    SENDER.address,
    ALICE.address,
    SENDER.public_key.hex(),
    "1",
    "2",
    "4",
]
NEAR_MISSES = [
    REGTEST.genesis.hash.upper(),
    REGTEST.genesis.hash[:63],
    REGTEST.genesis.hash + "0",
    "0" * 64,
    "g" * 64,
    _mistype(ALICE.address),
    ALICE.address.lower(),
    ALICE.address[:-1],
    "P" + "1" * 33,
    "0",
    "-1",
    "1e3",
    "0x10",
    "٣",
    "9" * 19,
    "9" * 40,
    "",
    " ",
    ".",
    "..",
    "%",
    "%00",
    "\x00",
    "<script>alert(1)</script>",
    "'\"><svg onload=alert(1)>",
    "//evil.example",
    "https://evil.example/",
]
segments = st.one_of(
    st.sampled_from(REAL_SEGMENTS),
    st.sampled_from(NEAR_MISSES),
    st.text(max_size=70),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
query_values = st.one_of(segments, st.just(""))


def _fill(template: str, values: list[str]) -> str:
    """The template with each `{}` replaced by a percent-encoded segment."""
    parts = template.split("{}")
    out = parts[0]
    for value, rest in zip(values, parts[1:], strict=True):
        out += quote(value, safe="") + rest
    return out


def paths(templates: list[str]) -> st.SearchStrategy[str]:
    """A route template with its `{}` segments filled."""
    return st.sampled_from(templates).flatmap(
        lambda t: st.lists(segments, min_size=t.count("{}"), max_size=t.count("{}")).map(
            lambda values: _fill(t, values)
        )
    )


def query_strings(names: list[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(
        st.tuples(st.sampled_from(names) | st.text(max_size=8), query_values), max_size=3
    )
    return pairs.map(lambda items: urlencode(items))


STRAY_ROUTES = ["/{}", "/{}/{}", "/api/{}", "/static/{}", "/common/{}"]
"""Paths no route has (a 404 page, or JSON under /api/), or a static file that may not exist."""
RAW_PATHS = [
    "/static/../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/common/..%2f..%2fsettings.py",
    "//evil.example/",
    "/%2F%2Fevil.example",
    "/api/",
    "/api",
]
"""Sent as they are (not percent-encoded again)."""


def any_path(routes: list[str]) -> st.SearchStrategy[str]:
    """Mostly a service's own routes, sometimes a stray or hostile path."""
    return st.one_of(
        paths(routes), paths(routes), paths(routes), paths(STRAY_ROUTES), st.sampled_from(RAW_PATHS)
    )


EXPLORER_ROUTES = [
    "/",
    "/charts",
    "/blocks",
    "/block/{}",
    "/height/{}",
    "/tx/{}",
    "/address/{}",
    "/mempool",
    "/network",
    "/search",
    "/events",
    "/api/summary",
    "/forks",
    "/healthz",
    "/metrics",
    "/static/style.css",
]
EXPLORER_QUERY = ["q", "q", "blocks", "before", "offset"]
WALLET_ROUTES = [
    "/",
    "/watch",
    "/address/{}",
    "/api/csrf",
    "/api/params",
    "/api/address/{}",
    "/api/tx/{}",
    "/api/check-address/{}",
    "/api/address-of-key/{}",
    "/api/broadcast",
    "/api/faucet",
    "/qr/{}.svg",
    "/events",
    "/healthz",
    "/metrics",
    "/static/wallet.js",
]
WALLET_QUERY = ["address", "address", "offset"]
READ_METHODS = st.sampled_from(["GET"] * 6 + ["HEAD", "OPTIONS", "POST", "PUT", "DELETE"])
WRITE_PATHS = st.sampled_from(["/api/broadcast"] * 4 + ["/api/faucet"] * 3 + [""]).flatmap(
    lambda path: st.just(path) if path else any_path(WALLET_ROUTES)
)
"""The wallet's two POST endpoints, sometimes any other path."""

JSON = json_values(text_size=40, max_leaves=10)
field_values = JSON | st.sampled_from(REAL_SEGMENTS + NEAR_MISSES) | st.integers(0, 2**64)
tx_mutants = st.dictionaries(
    st.sampled_from((*TX_FIELDS, "txid", "type")), field_values, min_size=1, max_size=2
).map(lambda changes: NEXT.to_dict() | changes)
faucet_requests = st.dictionaries(
    st.sampled_from(["address", "amount", "x"]),
    st.sampled_from(REAL_SEGMENTS + NEAR_MISSES) | JSON,
    max_size=2,
)
bodies: st.SearchStrategy[bytes] = st.one_of(
    st.just(NEXT.to_dict()).map(json.dumps),
    st.just({"address": ALICE.address}).map(json.dumps),
    tx_mutants.map(json.dumps),
    faucet_requests.map(json.dumps),
    JSON.map(json.dumps),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3).map(urlencode),
    st.text(max_size=100),
    st.just("x" * 70_000),  # over the wallet's body limit
).map(str.encode) | st.binary(max_size=100)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
    ]
)
CSRF_CASES = ["valid", "none", "cookie-only", "header-only", "wrong", "malformed"]
ORIGINS = ["", "same", "http://evil.example", "null"]

# -- answers --------------------------------------------------------------------------------------


def check_answer(method: str, path: str, resp: requests.Response, text: str) -> str | None:
    """No 5xx; redirects stay on the site; a 4xx is a JSON refusal under /api/ and the
    service's error page elsewhere. The refusal's reason code, if it is one."""
    where = f"{method} {path} -> {resp.status_code}: {text[:300]!r}"
    assert resp.status_code < 500, where
    if 300 <= resp.status_code < 400:
        location = resp.headers["Location"]
        assert location.startswith("/"), where
        assert not location.startswith(("//", "/\\")), where
    if resp.status_code < 400 or method == "HEAD":
        return None
    content_type = resp.headers.get("Content-Type", "")
    sent = unquote(urlsplit(resp.request.path_url).path)  # after the client's dot segments
    if sent.startswith("/api/"):
        refusal = assert_json_refusal(resp.status_code, content_type, text, f"{method} {path}")
        return str(refusal["reason"])
    assert content_type.startswith("text/html"), where
    code = ERROR_CODE.search(text)
    message = ERROR_MESSAGE.search(text)
    assert code is not None, where
    assert message is not None, where
    assert message.group(1).strip(), where
    return code.group(1)
