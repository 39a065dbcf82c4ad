"""Helpers for the API fuzz tests: real services on a background event loop, the bounds of a
fuzz run, a digest of a ledger's state, and what a refusal must look like.

The fuzzers (schemathesis, and hypothesis driving `requests`) are synchronous: they send one
request and wait for its answer. The services under test therefore run on an event loop of
their own in a background thread — the real apps from their factories, served on real loopback
ports, exactly as `pybtc up` serves them — while the test thread sends requests over TCP.

A fuzz run is deterministic by default (hypothesis derandomized, no example database), so CI
runs the same examples every time. `PYBTC_FUZZ_EXAMPLES=<n>` asks for `n` generated examples
per test instead of the default and makes the run random (a new seed each run; hypothesis
prints how to reproduce a failure).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import requests
from aiohttp import web
from hypothesis import HealthCheck, settings

T = TypeVar("T")

CLIENT_TIMEOUT = 30.0
"""Seconds a fuzzed request may take before the test calls it a hang (GET /mine included)."""


def fuzz_examples(default: int) -> int:
    """Generated examples per test: `PYBTC_FUZZ_EXAMPLES`, else `default`."""
    raw = os.environ.get("PYBTC_FUZZ_EXAMPLES", "")
    return int(raw) if raw else default


def is_random_run() -> bool:
    """True when `PYBTC_FUZZ_EXAMPLES` asks for a bigger, random run."""
    return bool(os.environ.get("PYBTC_FUZZ_EXAMPLES"))


def fuzz_settings(default_examples: int) -> settings:
    """Hypothesis settings of a fuzz test: bounded, and derandomized unless a random run."""
    return settings(
        max_examples=fuzz_examples(default_examples),
        derandomize=not is_random_run(),
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


class BackgroundLoop:
    """An asyncio event loop running in a daemon thread; `run` executes a coroutine on it.

    Used as a context manager: on exit every app served with `serve` is cleaned up (its
    cleanup contexts closed, as on a normal shutdown), then the loop is stopped and closed.
    """

    def __init__(
        self,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        name: str = "fuzzed-services",
    ) -> None:
        self.loop = loop_factory()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.runners: list[web.AppRunner] = []

    def __enter__(self) -> BackgroundLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for runner in reversed(self.runners):
                self.run(runner.cleanup())
            self.run(self.loop.shutdown_asyncgens())
            self.run(self.loop.shutdown_default_executor())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run `coro` on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, make_app: Callable[[], web.Application], port: int | None) -> None:
        """Build an app on the loop and start it: on 127.0.0.1:`port`, or, with no port, only
        its startup and cleanup contexts (a miner, which nobody needs to reach over HTTP)."""

        async def start() -> web.AppRunner:
            runner = web.AppRunner(make_app())
            await runner.setup()
            if port is not None:
                await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner

        self.runners.append(self.run(start()))


class OfflineResolverLoop(asyncio.SelectorEventLoop):
    """An event loop that resolves IP literals and `localhost` only (AI_NUMERICHOST otherwise),
    as a machine without DNS would: a fuzzed peer name never becomes a DNS query that leaves
    this machine. The rest of name handling stays real: the IDNA encoding Python applies before
    resolving, and the peer policy's verdict on the addresses."""

    async def getaddrinfo(  # type: ignore[override]
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        if host != "localhost":
            flags |= socket.AI_NUMERICHOST
        return await super().getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )


class LedgerWatch:
    """A ledger's state as its GET endpoints show it, read between fuzzed requests."""

    def __init__(self, url: str, addresses: Sequence[str]) -> None:
        self.url = url
        self.addresses = list(addresses)
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> Any:
        resp = self.http.get(self.url + path, timeout=CLIENT_TIMEOUT)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def digest(self) -> dict[str, Any]:
        """What a refused request must leave alone: the tip and chain work, the valid blocks
        stored near the tip (stale branches too), the mempool, the peers, the reorg log and the
        watched accounts. Not the rejection log, whose job is to record refusals, nor blocks
        stored as invalid (the document says a block that fails when connected is kept,
        marked, and refused again by its code)."""
        status = self.get("/status")
        height = status["height"]
        tree = self.get(f"/blocks/tree?from={max(1, height - 89)}&to={height + 10}")
        return {
            "tip": status["tip"],
            "height": status["height"],
            "chain_work": status["chain_work"],
            "blocks": sorted(b["hash"] for b in tree["blocks"] if b["invalid_reason"] is None),
            "mempool": [tx["txid"] for tx in self.get("/mempool?limit=500")["transactions"]],
            "peers": sorted(peer["url"] for peer in self.get("/nodes")["peers"]),
            "reorgs": self.get("/reorgs?limit=500")["reorgs"],
            "accounts": [self.get(f"/address/{address}") for address in self.addresses],
        }


def assert_json_refusal(
    status: int, content_type: str, text: str, context: str = ""
) -> dict[str, Any]:
    """A 4xx body is JSON, exactly `{"error": <what is wrong>, "reason": <code>}`, both set."""
    where = f"{context} {status} {content_type}: {text[:500]}"
    assert content_type.split(";")[0].strip() == "application/json", where
    body = json.loads(text)
    assert isinstance(body, dict), where
    assert set(body) == {"error", "reason"}, where
    assert isinstance(body["error"], str), where
    assert body["error"].strip(), where
    assert isinstance(body["reason"], str), where
    assert body["reason"].strip(), where
    return body
