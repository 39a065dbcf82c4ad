"""Schemathesis against every operation of the ledger's OpenAPI document, on a real ledger.

The document (`services/node/openapi.yaml`, served at /openapi.yaml; docs/api.yaml is a symlink
to it) is loaded by schemathesis, which makes one test per operation and sends it three kinds of
request: the document's own examples, its coverage cases (boundaries, missing and wrong-typed
parameters and bodies), and generated ones, valid for the schema and invalid (the "negative"
mode). They go over TCP to a real regtest ledger with a real Redis bus and a real miner service
(so `GET /mine` mines a block instead of answering 503 `no-miner`), served on a background
event loop (tests/service/fuzzutil.py).

Every answer must:

- not be a 5xx, and come within `CLIENT_TIMEOUT` (no hang);
- conform to the document: a documented status, content type, headers and body schema, and a
  4xx for a request the document calls invalid (schemathesis' checks). Not
  `positive_data_acceptance`: no schema can say which well-formed requests a node accepts (a
  signature, an address checksum, a nonce, a peer that answers), so a schema-valid request may
  be refused, with a 4xx the document lists;
- if it is a 4xx, carry a JSON body of exactly `{"error": <text>, "reason": <code>}`;
- if it is a 4xx, leave the ledger as it was (`LedgerWatch.digest`, read after every request and
  compared with the one before): only the rejection log may grow.

Peers: the ledger allows loopback peers only, and resolves IP literals and `localhost` only
(`OfflineResolverLoop`), so a fuzzed peer URL can reach nothing beyond this machine, not even a
DNS server; the random strings name no running ledger, so nothing is ever registered.

The default run is deterministic and bounded (`DEFAULT_EXAMPLES` generated requests per
operation, plus the examples and coverage cases). `PYBTC_FUZZ_EXAMPLES=500 pytest
tests/service/test_api_fuzz_ledger.py` makes a longer, random one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml

from pybtc import COIN, DEVNET, REGTEST, Transaction
from services.common.embedded_redis import EmbeddedRedis
from services.common.settings import Settings
from tests.chainutil import test_key
from tests.service.fuzzutil import (
    CLIENT_TIMEOUT,
    BackgroundLoop,
    LedgerWatch,
    OfflineResolverLoop,
    assert_json_refusal,
    fuzz_examples,
    is_random_run,
)
from tests.service.ledgerutil import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "services" / "node" / "openapi.yaml"
DEFAULT_EXAMPLES = 15
MINER, ALICE, BOB = test_key(0), test_key(1), test_key(2)

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",  # schema-valid and schema-invalid requests
            "max-examples": fuzz_examples(DEFAULT_EXAMPLES),
            "deterministic": not is_random_run(),
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {"positive_data_acceptance": {"enabled": False}},
        "request-timeout": CLIENT_TIMEOUT,
    }
)
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG)


class FuzzedLedger(LedgerWatch):
    """The ledger under fuzzing, and its state as of the last answer."""

    def __init__(self, url: str) -> None:
        super().__init__(url, [MINER.address, ALICE.address, BOB.address])
        self.last = self.digest()

    def check(self, response: schemathesis.Response) -> None:
        """A 4xx is a JSON refusal and changed nothing; any other answer may have."""
        previous, self.last = self.last, self.digest()
        status = response.status_code
        if 400 <= status < 500:
            content_type = (response.headers.get("content-type") or [""])[0]
            assert_json_refusal(status, content_type, response.text)
            assert self.last == previous, f"a refused request ({status}) changed the ledger"


@pytest.fixture(scope="module")
def fuzzed_ledger(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzedLedger]:
    """A regtest ledger with its miner (paying test key 0), four blocks mined by GET /mine and
    one pending transaction, so that lookups find something."""
    from services.miner.app import create_app as create_miner
    from services.node.app import create_app as create_ledger

    redis_server.flushall()
    port, miner_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        network="regtest",
        data_dir=tmp_path_factory.mktemp("fuzzed-ledger"),
        redis_url=redis_server.url,
        ledger_port=port,
        miner_port=miner_port,  # GET /mine asks the miner there
        public_url=url,
        peer_networks="loopback",
        peer_timeout=2.0,
        sync_interval=3600.0,  # no background syncs between a request and its digest
        miner_workers=1,
        miner_address=MINER.address,
        mine_timeout=CLIENT_TIMEOUT / 2,
    )
    with BackgroundLoop(OfflineResolverLoop) as services:
        services.serve(lambda: create_ledger(settings), port)
        services.serve(lambda: create_miner(settings), miner_port)
        watch = LedgerWatch(url, [])
        try:
            _wait_for_miner(watch)
            for _ in range(3):
                assert watch.http.get(url + "/mine", timeout=CLIENT_TIMEOUT).status_code == 200
            tx = Transaction.create(
                MINER,
                ALICE.address,
                COIN,
                fee=2_000,
                nonce=0,
                timestamp=0,
                network_id=REGTEST.network_id,
            )
            resp = watch.http.post(url + "/transactions/new", json=tx.to_dict(), timeout=10)
            assert resp.status_code == 201, resp.text
        finally:
            watch.close()
        ledger = FuzzedLedger(url)
        yield ledger
        ledger.close()


def _wait_for_miner(watch: LedgerWatch, seconds: float = 30.0) -> None:
    """Until the miner answers the ledger (GET /mine stops answering 503);
    the block that GET /mine then mines is the chain's first."""
    deadline = time.monotonic() + seconds
    while True:
        resp = watch.http.get(watch.url + "/mine", timeout=CLIENT_TIMEOUT)
        if resp.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp.status_code == 200, resp.text


@SCHEMA.parametrize()
def test_every_operation(case: schemathesis.Case, fuzzed_ledger: FuzzedLedger) -> None:
    """No 5xx, no hang, answers as documented, and a 4xx is a JSON refusal that changed
    nothing."""
    response = case.call(base_url=fuzzed_ledger.url, timeout=CLIENT_TIMEOUT)
    case.validate_response(response)
    fuzzed_ledger.check(response)


def test_every_operation_is_fuzzed() -> None:
    """The fuzzing covers every operation the document has (none skipped as invalid)."""
    document = yaml.safe_load(SPEC_PATH.read_text())
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }
    loaded = {
        (result.ok().method.upper(), result.ok().path) for result in SCHEMA.get_all_operations()
    }
    assert loaded == documented


def test_the_documents_examples_are_real(fuzzed_ledger: FuzzedLedger) -> None:
    """The path examples the fuzzing starts from name real things: the genesis blocks of
    devnet and regtest, and the genesis coinbase (the same on every network)."""
    document = yaml.safe_load(SPEC_PATH.read_text())

    def examples(path: str, name: str) -> dict[str, Any]:
        (parameter,) = (
            p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name
        )
        return {key: value["value"] for key, value in parameter["examples"].items()}

    assert examples("/blocks/{hash}", "hash") == {
        "devnet-genesis": DEVNET.genesis.hash,
        "regtest-genesis": REGTEST.genesis.hash,
    }
    coinbase = REGTEST.genesis.transactions[0].txid
    assert coinbase == DEVNET.genesis.transactions[0].txid
    assert examples("/tx/{txid}", "txid") == {"genesis-coinbase": coinbase}
    assert fuzzed_ledger.get(f"/tx/{coinbase}")["status"] == "confirmed"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/nodes/register", {"nodes": "\U000fd96f:5000"}),
        ("/nodes/register", {"nodes": ["a..b:5000"]}),
        ("/nodes/register", {"nodes": "x" * 64 + ".example:5000"}),
        ("/nodes/resolve", {"miner_node": ".\x07"}),
    ],
)
def test_a_peer_name_that_cannot_be_encoded_is_a_bad_url(
    fuzzed_ledger: FuzzedLedger, path: str, body: dict[str, Any]
) -> None:
    """Found by this fuzzing: a peer host name that IDNA cannot encode (an empty or over-long
    label, a character outside IDNA) made resolving raise UnicodeError, a 500. It is a 400
    `bad-peer-url`, and nothing changes."""
    before = fuzzed_ledger.digest()
    resp = fuzzed_ledger.http.post(fuzzed_ledger.url + path, json=body, timeout=CLIENT_TIMEOUT)
    refusal = assert_json_refusal(resp.status_code, resp.headers["Content-Type"], resp.text)
    assert (resp.status_code, refusal["reason"]) == (400, "bad-peer-url")
    assert fuzzed_ledger.digest() == before


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("body", [b"\r\n", b" ", b"\t\n"])
def test_a_blank_announcement_is_malformed(
    fuzzed_ledger: FuzzedLedger, method: str, body: bytes
) -> None:
    """Found by this fuzzing: a body of only whitespace to /nodes/resolve counted as no body
    (a 200 consensus run), though the document says the body is a JSON object. It is a 400
    `malformed-json`; no body at all is still the tutorial's plain consensus call."""
    url = fuzzed_ledger.url + "/nodes/resolve"
    headers = {"Content-Type": "application/json"}
    resp = fuzzed_ledger.http.request(method, url, data=body, headers=headers, timeout=10)
    refusal = assert_json_refusal(resp.status_code, resp.headers["Content-Type"], resp.text)
    assert (resp.status_code, refusal["reason"]) == (400, "malformed-json")
    resp = fuzzed_ledger.http.request(method, url, timeout=CLIENT_TIMEOUT)
    assert resp.status_code == 200, resp.text
