"""A real browser on the node's machine, at a page of another origin on loopback.

A whole node (`pybtc up`, regtest, its own on-demand miner) and a real ledger it could add as a
peer run on loopback; a third server plays the other site, serving an empty page on another
port, once as `127.0.0.1` (same-site with the node: another port of the same address) and once
as `localhost` (cross-site). From that page chromium sends what issue 16 §6 found: no-cors
`fetch`es of `POST /nodes/register` (a `text/plain` body), `GET /mine` and `GET /nodes/resolve`.
The page cannot read the answers anyway; what matters is that no peer is added and no block
mined, with chromium's own `Origin` and `Sec-Fetch-*` headers rather than a test's copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import Page

from tests.browser.browserutil import LoopThread
from tests.service.ledgerutil import LedgerNode, free_port
from tests.upnode import UpNode

ATTEMPTS = """
async ({ledger, peer}) => {
  const attempt = (path, init) =>
    fetch(ledger + path, {mode: "no-cors", ...init}).then(r => r.type, e => "failed: " + e);
  return [
    await attempt("/nodes/register", {method: "POST", body: JSON.stringify({nodes: peer})}),
    await attempt("/mine"),
    await attempt("/nodes/resolve"),
  ];
}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    started = UpNode(tmp_path_factory.mktemp("web-pages") / "data")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


async def _other_site(port: int) -> web.AppRunner:
    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>another site</title>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.mark.parametrize("site", ["127.0.0.1", "localhost"])
def test_a_page_of_another_origin_cannot_mine_or_add_a_peer(
    page: Page,
    node: UpNode,
    ledger: LedgerNode,
    server_loop: LoopThread,
    console_errors: list[str],
    site: str,
) -> None:
    before = node.get("/status")["height"]
    known = node.get("/nodes")["peers"]
    port = free_port()
    runner = server_loop.run(_other_site(port))
    try:
        page.goto(f"http://{site}:{port}/")
        sent: Any = page.evaluate(ATTEMPTS, {"ledger": node.url, "peer": ledger.url})
    finally:
        server_loop.run(runner.cleanup())
    assert len(sent) == 3, sent
    assert node.get("/nodes")["peers"] == known
    assert node.get("/status")["height"] == before
    # chromium logs the refused answers (and the ones its resource policy blocks) as errors
    console_errors.clear()
    # the same node still mines and registers for a program
    assert node.post("/nodes/register", {"nodes": ledger.url})[0] == 201
    assert ledger.url in [p["url"] for p in node.get("/nodes")["peers"]]
