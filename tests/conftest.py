"""Fixtures shared by every test tier."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common.embedded_redis import EmbeddedRedis
from tests.chainutil import FundedChain, make_funded_chain


@pytest.fixture
def funded() -> FundedChain:
    """A regtest chain of genesis + 3 blocks mined to test key 0 (150 pyBTC), with 3 other keys."""
    return make_funded_chain(blocks=3)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One private redis-server on a free loopback TCP port for the whole session; it requires
    a password, as `pybtc up`'s does (`redis_url` carries it)."""
    with EmbeddedRedis(password=secrets.token_urlsafe(16)) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session Redis's URL, emptied (FLUSHALL) before each test."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_unix_server() -> Iterator[EmbeddedRedis]:
    """One private redis-server on a unix socket (TCP disabled) for the whole session, with a
    password."""
    with EmbeddedRedis(unix_socket=True, password=secrets.token_urlsafe(16)) as server:
        yield server


@pytest.fixture
def redis_unix_url(redis_unix_server: EmbeddedRedis) -> str:
    """The unix-socket Redis's URL, emptied (FLUSHALL) before each test."""
    redis_unix_server.flushall()
    return redis_unix_server.url


@pytest.fixture
async def ledger_client(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> TestClient:
    """A real regtest ledger app (SQLite in tmp_path, the session's real Redis as its bus)."""
    from services.node.app import create_app
    from tests.service.ledgerutil import ledger_settings

    app = create_app(ledger_settings(tmp_path, redis_url))
    return await aiohttp_client(app)
