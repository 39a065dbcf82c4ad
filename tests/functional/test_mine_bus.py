"""The bus is a hint, never a command: forged mining messages on a node's Redis channel.

A real ledger process and a real on-demand miner process (tests/functional/test_miner.py's),
the session's real Redis, and a forger in the test that publishes well-formed envelopes on the
node's `mining` channel under the ledger's and the miner's own origins, as anyone who can reach
the Redis could:

- `test_forged_mine_requests_mine_nothing`: twenty `{"action": "mine"}` requests make the miner
  mine nothing, and the ledger's height stays where it was.
- `test_forged_mined_answers_complete_nothing`: forged `ready` heartbeats do not make a miner
  present (`GET /mine` is still an immediate 503 `no-miner`), and forged `mined` answers (the
  genesis hash, a hash of no block, a number) to every request seen and to made-up ones do not
  complete a real `GET /mine`: its answer is the block the real miner mined after the request,
  connected on the ledger's main chain; never a 502.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pybtc import get_params
from services.common.envelope import Envelope, Kind
from tests.functional.conftest import ChildProcesses, get_json, http
from tests.functional.test_miner import (
    BusRecorder,
    MinerProcess,
    assert_gone,
    assert_linked,
    main_chain,
    node_id,
    start_ledger,
)

logger = logging.getLogger(__name__)

NETWORK = "regtest"
GENESIS = get_params(NETWORK).genesis.hash
FORGED_REQUESTS = 20
QUIET = 5.0
"""Seconds the forged requests get to mine something (a regtest block takes milliseconds)."""


@pytest.fixture
def node(children: ChildProcesses) -> Iterator[str]:
    tag = node_id()
    yield tag
    children.reap_all()
    assert_gone(tag)


class Forger(BusRecorder):
    """Publishes forged mining envelopes on one node's channel; with `answer`, also answers
    every `mine` request it sees with a forged `mined` carrying `answer` as the hash, and every
    `interval` seconds forges a `ready` heartbeat and a `mined` for a made-up request."""

    poll = 0.01

    def __init__(self, redis_url: str, node: str, answer: Any = None, interval: float = 0.05):
        super().__init__(redis_url, NETWORK, Kind.MINING)
        self.node, self.answer, self.interval = node, answer, interval
        self.seq = itertools.count(10**9)  # past any sequence the real services reach
        self.sent = 0
        self.requests_seen = 0
        self.last_forged = 0.0

    def publish(self, role: str, data: dict[str, Any]) -> None:
        envelope = Envelope(Kind.MINING, f"{self.node}/{role}", next(self.seq), data)
        self.client.publish(self.channels[0], envelope.to_json())
        self.sent += 1

    def mined(self, request_id: str) -> None:
        self.publish(
            "miner",
            {"action": "mined", "request_id": request_id, "node": self.node, "hash": self.answer},
        )

    def heard(self, envelope: Envelope) -> None:
        super().heard(envelope)
        request_id = envelope.data.get("request_id")
        if self.answer is not None and envelope.data.get("action") == "mine":
            if not isinstance(request_id, str):
                return
            self.requests_seen += 1
            self.mined(request_id)

    def tick(self) -> None:
        if self.answer is not None and time.monotonic() - self.last_forged > self.interval:
            self.last_forged = time.monotonic()
            self.publish("miner", {"action": "ready", "node": self.node, "mode": "on-demand"})
            self.mined(uuid.uuid4().hex)


def on_demand_miner(
    children: ChildProcesses, data: Path, node: str, ledger_url: str, port: int, redis_url: str
) -> MinerProcess:
    return MinerProcess(
        children,
        data,
        network=NETWORK,
        mode="on-demand",
        node=node,
        ledger_url=ledger_url,
        port=port,
        redis_url=redis_url,
        workers=1,
    ).start()


def test_forged_mine_requests_mine_nothing(
    children: ChildProcesses, node: str, tmp_path: Path, redis_url: str
) -> None:
    data = tmp_path / "node"
    ledger = start_ledger(children, data, redis_url, NETWORK, node)
    miner = on_demand_miner(children, data, node, ledger.url, ledger.miner_port, redis_url)
    time.sleep(1.0)  # the miner's bus subscription is up well before its first heartbeat ends
    with Forger(redis_url, node) as forger:
        for _ in range(FORGED_REQUESTS):
            request = {"action": "mine", "request_id": uuid.uuid4().hex, "node": node}
            forger.publish("ledger", request)
        time.sleep(QUIET)
    status = miner.status()
    logger.info(
        "%d forged mine requests: miner found=%d pending=%d ledger height=%d",
        forger.sent,
        status["blocks_found"],
        status["requests_pending"],
        get_json(f"{ledger.url}/status")["height"],
    )
    assert (status["blocks_found"], status["requests_pending"], status["job"]) == (0, 0, None)
    assert get_json(f"{ledger.url}/status")["height"] == 1, "the bus made the miner mine"


@pytest.mark.parametrize(
    "answer", [GENESIS, "ab" * 32, 12345], ids=["genesis", "unknown-hash", "not-a-hash"]
)
def test_forged_mined_answers_complete_nothing(
    children: ChildProcesses, node: str, tmp_path: Path, redis_url: str, answer: Any
) -> None:
    data = tmp_path / "node"
    ledger = start_ledger(children, data, redis_url, NETWORK, node)
    with Forger(redis_url, node, answer=answer) as forger:
        time.sleep(0.5)  # forged heartbeats: a ledger that trusts them thinks a miner is there
        reply = http("GET", f"{ledger.url}/mine", timeout=30.0)
        logger.info("no miner, forged ready/mined: GET /mine -> %d %s", reply.status, reply.text)
        assert reply.status == 503, reply.text
        assert reply.json()["reason"] == "no-miner"

        miner = on_demand_miner(children, data, node, ledger.url, ledger.miner_port, redis_url)
        started_at = get_json(f"{ledger.url}/status")["height"]
        reply = http("GET", f"{ledger.url}/mine", timeout=60.0)
        logger.info(
            "real miner, %d forged messages, %d requests seen: GET /mine -> %d %s",
            forger.sent,
            forger.requests_seen,
            reply.status,
            reply.text[:200],
        )
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body["message"] == "new block found"
    assert body["index"] > started_at
    chain = main_chain(ledger.url)
    assert_linked(chain)
    block = chain[body["index"] - 1]
    assert (block.hash, block.header.nonce, block.previous_hash) == (
        body["hash"],
        body["nonce"],
        body["previous_hash"],
    )
    assert body["hash"] != GENESIS
    status = miner.status()
    assert status["last_block"] == body["hash"], "the answer is a block the miner mined"
    assert status["blocks_accepted"] == 1
