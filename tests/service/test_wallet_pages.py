"""The wallet service's pages against a real regtest ledger (on a real port) and a real Redis:
the wallet page and its CSRF token, the watch-only page and form, readable refusal pages with
the markup they quote escaped, QR codes, and static files with their content types.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.walletutil import (
    ALICE,
    CSRF_COOKIE,
    Wallet,
    funded_wallet,
    get_page,
    mistype,
)


@pytest.fixture
async def wallet(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> AsyncIterator[Wallet]:
    async with funded_wallet(aiohttp_client, tmp_path, redis_url) as w:
        yield w


async def test_wallet_page_carries_the_csrf_token_and_sets_its_cookie(wallet: Wallet) -> None:
    """`/` renders with `<meta name="csrf-token">` equal to the HttpOnly, SameSite=Strict cookie
    it sets, a CSP without 'unsafe-inline', and no inline script (which that CSP would block)."""
    resp = await wallet.client.get("/")
    text = await resp.text()
    assert resp.status == 200, text[:500]
    assert resp.content_type == "text/html"
    assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
    cookie = resp.cookies[CSRF_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    meta = re.search(r'<meta name="csrf-token" content="([^"]*)">', text)
    assert meta is not None
    assert meta.group(1) == cookie.value
    assert len(cookie.value) == 43
    for tag in re.findall(r"<script\b[^>]*>", text):
        assert " src=" in tag, tag
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", text) is None  # no inline code
    again = await wallet.client.get("/")  # the cookie is kept, not replaced on every page
    assert CSRF_COOKIE not in again.cookies
    assert f'content="{cookie.value}"' in await again.text()
    assert await wallet.token() == cookie.value


async def test_watch_page_and_its_form(wallet: Wallet) -> None:
    """`/address/<a>` is the watch-only page; `/watch?address=<a>` (spaces trimmed) redirects
    to it; an empty form goes home."""
    address = ALICE.address
    page = await get_page(wallet, f"/address/{address}")
    assert f'data-address="{address}"' in page
    assert f'src="/qr/{address}.svg"' in page
    assert '<meta name="csrf-token" content="' in page
    for query in (address, f"  {address} "):
        resp = await wallet.client.get("/watch", params={"address": query}, allow_redirects=False)
        assert resp.status == 302, await resp.text()
        assert resp.headers["Location"] == f"/address/{address}"
    resp = await wallet.client.get("/watch", params={"address": ""}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/")


@pytest.mark.parametrize(
    ("spoil", "explanation"),
    [
        (mistype, "checksum does not match"),
        (lambda a: a[:5] + "0" + a[6:], "character &#39;0&#39; at position 6 is not Base58"),
        (lambda a: a[:-1], "an address has 34 characters, this one has 33"),
    ],
    ids=["one-char", "zero", "short"],
)
async def test_watch_form_explains_a_typo(wallet: Wallet, spoil: Any, explanation: str) -> None:
    """A mistyped address in the watch form is a readable 400 page saying what is wrong."""
    text = await get_page(wallet, f"/watch?address={spoil(ALICE.address)}", status=400)
    assert explanation in text
    assert "bad-address" in text


async def test_error_page_keeps_the_layout(wallet: Wallet) -> None:
    """A refusal page is drawn in the wallet's layout like every other page: the network's tag
    and the explorer link (not an empty tag and a link back to the wallet itself)."""
    explorer = wallet.settings.explorer_url
    for path, status in (
        ("/", 200),
        (f"/watch?address={ALICE.address[:-1]}", 400),
        ("/nope", 404),
    ):
        text = await get_page(wallet, path, status=status)
        assert re.search(r'class="tag net"[^>]*>regtest<', text), path
        assert 'data-network="regtest"' in text, path
        assert f'href="{explorer}/"' in text, path


async def test_watch_page_escapes_what_it_refuses(wallet: Wallet) -> None:
    """A 34-character "address" full of markup is a 400 page naming the bad character, escaped."""
    hostile = "PPPPPP<img src=x onerror=alert(1)>"
    assert len(hostile) == 34
    text = await get_page(wallet, f"/address/{hostile}", status=400)
    assert "character &#39;&lt;&#39; at position 7 is not Base58" in text
    assert "<img" not in text
    text = await get_page(wallet, "/watch?address=%3Cscript%3Ealert(1)%3C/script%3E", status=400)
    assert "<script>alert" not in text


async def test_qr_code_is_an_svg_made_by_segno(wallet: Wallet) -> None:
    address = ALICE.address
    resp = await wallet.client.get(f"/qr/{address}.svg")
    text = await resp.text()
    assert resp.status == 200, text[:300]
    assert resp.content_type == "image/svg+xml"
    assert text.startswith("<svg")
    assert 'class="segno"' in text
    assert f"<title>{address}</title>" in text
    assert text.rstrip().endswith("</svg>")


async def test_qr_code_of_a_bad_address_is_refused(wallet: Wallet) -> None:
    text = await get_page(wallet, f"/qr/{ALICE.address[:-1]}.svg", status=400)
    assert "an address has 34 characters, this one has 33" in text


@pytest.mark.parametrize(
    ("path", "types"),
    [
        ("/static/wallet.js", {"application/javascript", "text/javascript"}),
        ("/static/pybtc-crypto.js", {"application/javascript", "text/javascript"}),
        ("/common/base.css", {"text/css"}),
        ("/static/wallet.css", {"text/css"}),
    ],
)
async def test_static_files(wallet: Wallet, path: str, types: set[str]) -> None:
    resp = await wallet.client.get(path)
    body = await resp.read()
    assert resp.status == 200
    assert resp.content_type in types
    assert len(body) > 100
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/static/%2e%2e/views.py",
        "/static/..%2fviews.py",
        "/common/%2e%2e/settings.py",
        "/static/%2e%2e/%2e%2e/common/settings.py",
    ],
)
async def test_static_files_stay_inside_their_folders(wallet: Wallet, path: str) -> None:
    resp = await wallet.client.get(path)
    text = await resp.text()
    assert 400 <= resp.status < 500, text[:300]
    assert "import" not in text
