"""The explorer in Korean against a real ledger and a real Redis: `Accept-Language: ko`, the
`pybtc_lang` cookie (set by the `/lang` switch on every page) and `PYBTC_LANG` each give
Korean pages with `<html lang="ko">`; an English browser's pages stay English; the switch
goes back only to a path of this site."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from pybtc import COIN, REGTEST, Block, Transaction
from pybtc.mining import mine_block
from services.common.settings import Settings
from services.explorer.app import create_app
from tests.chainutil import test_key
from tests.service.ledgerutil import LedgerNode

KOREAN_BROWSER = {"Accept-Language": "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"}
ENGLISH_BROWSER = {"Accept-Language": "en-US,en;q=0.9"}
HANGUL = re.compile("[\uac00-\ud7a3]")
Explorer = Callable[..., Awaitable[TestClient]]


class Chain:
    def __init__(self, node: LedgerNode) -> None:
        self.node = node
        self.blocks: list[Block] = []
        self.tx: Transaction | None = None


@pytest.fixture
async def chain(tmp_path: Path, redis_url: str) -> AsyncIterator[Chain]:
    """A ledger with two blocks and a pending transaction."""
    node = await LedgerNode(tmp_path / "ledger", redis_url).start()
    c = Chain(node)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                url = f"{node.url}/mining/template?address={test_key(0).address}"
                async with http.get(url) as resp:
                    template = Block.from_dict((await resp.json())["block"])
                block = mine_block(template)
                assert block is not None
                async with http.post(f"{node.url}/mining/submit", json=block.to_dict()) as resp:
                    assert resp.status == 201, await resp.text()
                c.blocks.append(block)
            c.tx = Transaction.create(
                test_key(0),
                test_key(1).address,
                2 * COIN,
                fee=2_000,
                nonce=0,
                timestamp=0,
                network_id=REGTEST.network_id,
            )
            async with http.post(f"{node.url}/transactions/new", json=c.tx.to_dict()) as resp:
                assert resp.status == 201
        yield c
    finally:
        await node.stop()


@pytest.fixture
def explorer(aiohttp_client: Any, tmp_path: Path, redis_url: str, chain: Chain) -> Explorer:
    async def start(**fields: Any) -> TestClient:
        settings = Settings(
            network="regtest",
            data_dir=tmp_path / "explorer",
            redis_url=redis_url,
            ledger_url=chain.node.url,
            public_url=chain.node.url,
            **fields,
        )
        client: TestClient = await aiohttp_client(create_app(settings))
        return client

    return start


async def _page(
    client: TestClient, path: str, headers: dict[str, str] | None = None, status: int = 200
) -> str:
    resp = await client.get(path, headers=headers or {})
    text = await resp.text()
    assert resp.status == status, text[:500]
    return text


def _paths(chain: Chain) -> list[str]:
    assert chain.tx is not None
    return [
        "/",
        "/blocks",
        f"/block/{chain.blocks[-1].hash}",
        f"/tx/{chain.tx.txid}",
        f"/tx/{chain.blocks[0].transactions[0].txid}",
        f"/address/{test_key(0).address}",
        "/mempool",
        "/network",
        "/forks",
        "/charts",
    ]


async def test_a_korean_browser_reads_korean_pages(explorer: Explorer, chain: Chain) -> None:
    client = await explorer()
    for path in _paths(chain):
        text = await _page(client, path, KOREAN_BROWSER)
        assert '<html lang="ko">' in text, path
        assert "개요" in text, path  # the nav
        assert "블록 탐색기" in text, path  # the title
        for english in ("Dashboard", "Mempool</a>", "Search</button>", "Copy</button>"):
            assert english not in text, (path, english)
    dashboard = await _page(client, "/", KOREAN_BROWSER)
    assert "최근 블록" in dashboard
    assert "대기 중인 거래" in dashboard
    assert re.search(r"\d+(초|분) 전|방금", dashboard), "the ages are Korean too"
    assert "블록 시간" in dashboard  # the charts' titles and summaries come from Python
    assert "중앙값" in dashboard
    block = await _page(client, f"/block/{chain.blocks[-1].hash}", KOREAN_BROWSER)
    assert f"블록 {chain.blocks[-1].index}" in block
    assert "머클 루트" in block
    assert "누적 작업량" in block
    assert chain.tx is not None
    tx = await _page(client, f"/tx/{chain.tx.txid}", KOREAN_BROWSER)
    assert "대기 중 · 멤풀에서 1번째" in tx
    assert "200,000,000 기본 단위" in tx
    missing = await _page(client, "/block/" + "0" * 64, KOREAN_BROWSER, status=404)
    assert '<html lang="ko">' in missing
    assert "찾을 수 없음" in missing


async def test_an_english_browser_reads_the_same_english(explorer: Explorer, chain: Chain) -> None:
    client = await explorer()
    for headers in (ENGLISH_BROWSER, {}, {"Accept-Language": "fr-FR,de;q=0.8"}):
        for path in _paths(chain):
            text = await _page(client, path, headers)
            assert '<html lang="en">' in text, path
            # the only Hangul on an English page is the switch's own name for Korean
            assert HANGUL.findall(text.replace("한국어", "")) == [], path
        dashboard = await _page(client, "/", headers)
        assert "Latest blocks" in dashboard
        assert "Pending transactions" in dashboard


async def test_the_cookie_wins_and_junk_falls_back(explorer: Explorer, chain: Chain) -> None:
    client = await explorer()
    client.session.cookie_jar.update_cookies({"pybtc_lang": "ko"})
    assert '<html lang="ko">' in await _page(client, "/blocks", ENGLISH_BROWSER)
    client.session.cookie_jar.update_cookies({"pybtc_lang": "en"})
    assert '<html lang="en">' in await _page(client, "/blocks", KOREAN_BROWSER)
    client.session.cookie_jar.update_cookies({"pybtc_lang": "<script>"})
    assert '<html lang="ko">' in await _page(client, "/blocks", KOREAN_BROWSER)
    client.session.cookie_jar.clear()
    for junk in (";;q=,ko;q=x", "*", "x" * 2000, "ko-KR;q=-1"):
        assert '<html lang="en">' in await _page(client, "/", {"Accept-Language": junk})


async def test_pybtc_lang_sets_the_default(explorer: Explorer, chain: Chain) -> None:
    client = await explorer(lang="ko")
    assert '<html lang="ko">' in await _page(client, "/")
    assert '<html lang="ko">' in await _page(client, "/", {"Accept-Language": "fr"})
    assert '<html lang="en">' in await _page(client, "/", ENGLISH_BROWSER)


async def test_the_switch_keeps_the_choice_and_goes_back(explorer: Explorer, chain: Chain) -> None:
    client = await explorer()
    page = await _page(client, "/blocks?before=2", ENGLISH_BROWSER)
    assert 'href="/lang?to=ko&amp;next=%2Fblocks%3Fbefore%3D2"' in page  # on every page
    resp = await client.get("/lang?to=ko&next=/blocks%3Fbefore%3D2", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/blocks?before=2"
    cookie = resp.headers["Set-Cookie"]
    assert "pybtc_lang=ko" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert '<html lang="ko">' in await _page(client, "/blocks", ENGLISH_BROWSER)
    back = await _page(client, "/blocks", ENGLISH_BROWSER)
    assert 'href="/lang?to=en&amp;next=%2Fblocks"' in back


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/phish",
        "/%5Cevil.example",
        "javascript:alert(1)",
        "evil.example",
        "/x%0d%0aSet-Cookie:%20a=b",
    ],
)
async def test_the_switch_never_sends_elsewhere(
    explorer: Explorer, chain: Chain, target: str
) -> None:
    client = await explorer()
    resp = await client.get(f"/lang?to=ko&next={target}", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"


async def test_an_unknown_language_changes_nothing(explorer: Explorer, chain: Chain) -> None:
    client = await explorer()
    resp = await client.get("/lang?to=fr&next=/mempool", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/mempool"
    assert "Set-Cookie" not in resp.headers
