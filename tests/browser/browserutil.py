"""Helpers for the browser tests: how chromium is launched, screenshots, servers in threads.

- `CHROMIUM` and `CHROMIUM_ARGS`: Debian's chromium (scripts/install-chromium.sh puts it there),
  launched so that it never reaches for the network on its own (no sync, updates, QUIC...).
  Playwright's own browser download is never used.
- `screenshot(page, name)` saves a PNG under artifacts/screenshots/ and returns its path.
- `LoopThread` runs an asyncio loop in a background thread, so a real aiohttp app (e.g.
  `tests.service.ledgerutil.LedgerNode`) serves a real port while the test drives the browser
  with Playwright's sync API in the main thread. The sync API marks its own loop as running in
  the main thread, so async code for servers must run here, never in the test's thread.
- `http_json`, `mine` and `transfer` drive a real ledger over HTTP from the test's thread
  (`mine` solves a template for test key 0, as a miner would).
- `StaticSite` serves fixed pages from a stdlib HTTP server on loopback (for testing the
  fixtures themselves, or pages that need no app, such as the wallet's JavaScript module).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from playwright.sync_api import Page, ViewportSize

from pybtc import REGTEST, Block, PrivateKey, Transaction
from pybtc.mining import mine_block
from tests.chainutil import test_key

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "run scripts/install-chromium.sh"
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in CI and containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
DEFAULT_TIMEOUT_MS = 10_000  # a local page that needs longer than this is a failure

T = TypeVar("T")


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save `page` as artifacts/screenshots/<name>.png (name made file-safe); return the path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "page"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body) of a request to a loopback service; a 4xx is an answer, not an
    error."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def mine(ledger_url: str, address: str | None = None) -> Block:
    """One block on the ledger's template (paying `address`, test key 0 by default)."""
    address = address or test_key(0).address
    status, template = http_json("GET", f"{ledger_url}/mining/template?address={address}")
    assert status == 200, template
    block = mine_block(Block.from_dict(template["block"]))
    assert block is not None
    status, body = http_json("POST", f"{ledger_url}/mining/submit", block.to_dict())
    assert status == 201, body
    return block


def transfer(
    ledger_url: str,
    key: PrivateKey,
    recipient: str,
    amount: int,
    *,
    fee: int = 1_000,
    nonce: int | None = None,
) -> tuple[int, Any, Transaction]:
    """Sign a transfer (the next nonce unless given), POST it: (status, body, transaction)."""
    if nonce is None:
        nonce = http_json("GET", f"{ledger_url}/address/{key.address}")[1]["next_nonce"]
    tx = Transaction.create(
        key,
        recipient,
        amount,
        fee=fee,
        nonce=nonce,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    status, body = http_json("POST", f"{ledger_url}/transactions/new", tx.to_dict())
    return status, body, tx


class LoopThread:
    """An asyncio event loop running in a daemon thread; `run` a coroutine there and wait.

    Leaving the `with` block cancels whatever still runs on the loop, then closes it.
    """

    def __init__(self, name: str = "browser-test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the loop's thread and return its result (or raise its error)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the server loop did not stop within 30s"


@contextlib.contextmanager
def serving(loop: LoopThread, app: web.Application, port: int) -> Iterator[str]:
    """`app` served on 127.0.0.1:`port` from `loop` while open; yields its URL."""
    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run(start())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.run(runner.cleanup())


# Content-Type by a path's suffix; anything else is served as HTML. Chromium runs a module
# script only if it comes with a JavaScript type.
CONTENT_TYPES = {
    ".ico": "image/svg+xml",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}


# What a StaticSite answers for the /favicon.ico every page load asks for (a 404 fails tests).
FAVICON = (REPO / "services" / "common" / "static" / "favicon.svg").read_text()


class StaticSite:
    """Fixed pages (path -> text) served on a free loopback port by a stdlib HTTP server.

    A path ending in `.js`, `.css` or `.json` is served with that type, every other as HTML;
    `headers` (e.g. a Content-Security-Policy) are added to every answer.
    """

    def __init__(self, pages: Mapping[str, str], headers: Mapping[str, str] | None = None) -> None:
        site_pages = dict(pages)
        extra_headers = dict(headers or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                body = site_pages.get(path, FAVICON if path == "/favicon.ico" else None)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                content_type = CONTENT_TYPES.get(Path(path).suffix, "text/html; charset=utf-8")
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StaticSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
