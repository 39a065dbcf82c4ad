"""Fixtures for the browser tests: Debian's chromium under Playwright's sync API.

- Everything collected under tests/browser is marked `browser` here, so `make pytest`
  (`-m "not browser"`) leaves it out and `make test-browser` (`-m browser`) runs only it.
- `browser`: one headless chromium for all browser tests (launched from /usr/bin/chromium;
  Playwright never downloads one). Missing chromium is a failure, never a skip.
- `page`: a fresh context (own cookies and storage, 1280x800) per test; `open_page()` makes
  more (another user in the same test). Console errors and
  uncaught page errors go into `console_errors`; any left there at teardown fail the test.
  (Failed loads count, as chromium logs them as console errors: a missing favicon too, on
  every HTML page. Only a JSON answer chromium shows as text, such as the ledger's, may lack
  one: an API has no icon to offer.)
  A test that provokes errors on purpose inspects the list and clears it.
- `ledger`: a real regtest ledger app on a real loopback port (SQLite in tmp_path, the
  session's real Redis as its bus), served from a background thread's event loop.
- `explorer`: the explorer app on a real loopback port, reading `ledger` (its URL).

Browser tests are plain (non-async) functions: while Playwright's sync API is alive it marks
its own event loop as running in the main thread, so server code runs in `LoopThread`s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from services.common.settings import Settings
from services.explorer.app import create_app as create_explorer
from tests.browser.browserutil import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DEFAULT_TIMEOUT_MS,
    INSTALL_HINT,
    VIEWPORT,
    LoopThread,
    serving,
)
from tests.service.ledgerutil import LedgerNode, free_port

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


# Package scope: one browser for every test under tests/browser, stopped once they are done, so
# that a run of the whole suite gets its main thread's event loop state back for async tests.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API (its driver process), for as long as browser tests run."""
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless, launched once; fails (never skips) if it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {INSTALL_HINT}", pytrace=False)
    try:
        # Playwright gives chromium a fresh temporary --user-data-dir and removes it on close.
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
    except PlaywrightError as exc:
        pytest.fail(f"{CHROMIUM} did not start ({INSTALL_HINT}?):\n{exc}", pytrace=False)
    yield instance
    instance.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Console errors and uncaught page errors the `page` saw; must be empty at teardown."""
    return []


@pytest.fixture
def open_page(
    browser: Browser, console_errors: list[str], server_loop: LoopThread
) -> Iterator[Callable[[], Page]]:
    """Call it for a page in a fresh 1280x800 context (own cookies and storage: another user);
    any console or page error in any of them fails the test. (It takes `server_loop` so that
    the pages close before the servers' loop does: a live page's connection left open when the
    loop closes would be an unclosed transport.)"""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        new_page = context.new_page()
        shown = {"type": "text/html"}  # the Content-Type of the document on show

        def on_response(response: Response) -> None:
            if response.request.is_navigation_request() and response.frame == new_page.main_frame:
                shown["type"] = response.headers.get("content-type", "")

        def on_console(message: ConsoleMessage) -> None:
            where = message.location.get("url", "")
            if message.type != "error":
                return
            if urlsplit(where).path == "/favicon.ico" and not shown["type"].startswith("text/html"):
                return
            console_errors.append(f"console.error: {message.text} ({where})")

        def on_page_error(error: PlaywrightError) -> None:
            console_errors.append(f"uncaught: {error.message}")

        new_page.on("response", on_response)
        new_page.on("console", on_console)
        new_page.on("pageerror", on_page_error)
        return new_page

    yield make
    for context in contexts:
        context.close()
    if console_errors:
        pytest.fail(
            "the page reported errors:\n" + "\n".join(f"  {e}" for e in console_errors),
            pytrace=False,
        )


@pytest.fixture
def page(open_page: Callable[[], Page]) -> Page:
    """A page in a fresh 1280x800 context; any console or page error fails the test."""
    return open_page()


@pytest.fixture
def server_loop() -> Iterator[LoopThread]:
    """An event loop in a background thread for the servers a test starts."""
    with LoopThread() as loop:
        yield loop


@pytest.fixture
def ledger(server_loop: LoopThread, tmp_path: Path, redis_url: str) -> Iterator[LedgerNode]:
    """A real regtest ledger app on a real loopback port, stopped after the test."""
    node = server_loop.run(LedgerNode(tmp_path / "ledger", redis_url).start())
    try:
        yield node
    finally:
        server_loop.run(node.stop())


@pytest.fixture
def explorer(
    server_loop: LoopThread, ledger: LedgerNode, tmp_path: Path, redis_url: str
) -> Iterator[str]:
    """The explorer app on a real loopback port, reading `ledger`; its URL."""
    port = free_port()
    settings = Settings(
        network="regtest",
        data_dir=tmp_path / "explorer",
        redis_url=redis_url,
        ledger_url=ledger.url,
        public_url=ledger.url,
        explorer_port=port,
    )
    with serving(server_loop, create_explorer(settings), port) as url:
        yield url
