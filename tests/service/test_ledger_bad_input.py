"""Bad input against the ledger: every refusal is a 4xx JSON `{"error", "reason"}`, never a
500, and leaves the node's state as it was.

Each test starts from a real regtest ledger (SQLite in tmp_path, real Redis) where the miner
key holds two block rewards and one of its transactions is pending, sends one kind of bad
input, checks the status and the exact reason code, and compares a snapshot of the state
(tip, height, mempool, the balances and nonces of every test address) before and after.
Bodies are sent as raw bytes with `Content-Type: application/json`, so literals such as NaN,
Infinity, 1e400 and duplicate keys reach the server exactly as written. A Hypothesis test
finishes with random JSON values, and objects shaped like transactions and blocks.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybtc import COIN, DEVNET, REGTEST, Block, BlockHeader, Transaction
from pybtc.block import HEADER_FIELDS
from pybtc.keys import address_from_public_key
from pybtc.mining import build_block, mine_block
from pybtc.params import make_genesis
from pybtc.pow import bits_to_target, hash_meets_target, target_to_bits
from pybtc.transaction import TX_FIELDS
from services.common.web import SECURITY_HEADERS
from services.node.app import create_app
from tests.chainutil import remine, test_key
from tests.service.ledgerutil import ledger_settings, mine

MINER, ALICE, BOB = test_key(0), test_key(1), test_key(2)
ADDRESSES = (MINER.address, ALICE.address, BOB.address)
SUBSIDY = REGTEST.subsidy(2)
JSON = {"Content-Type": "application/json"}
TX_PATH, BLOCK_PATH = "/transactions/new", "/mining/submit"


@dataclass
class World:
    """A ledger where the miner holds 2 block rewards and sent Bob 1 pyBTC (nonce 0, pending)."""

    client: TestClient
    pending: Transaction

    def next_tx(self, **changes: Any) -> Transaction:
        """A valid transfer Miner -> Alice with the next nonce (1); `changes` override fields."""
        fields: dict[str, Any] = {"fee": 1_000, "nonce": 1} | changes
        key = fields.pop("key", MINER)
        recipient = fields.pop("recipient", ALICE.address)
        amount = fields.pop("amount", COIN)
        network_id = fields.pop("network_id", REGTEST.network_id)
        return Transaction.create(
            key, recipient, amount, timestamp=0, network_id=network_id, **fields
        )

    async def tip(self) -> BlockHeader:
        status = await (await self.client.get("/status")).json()
        view = await (await self.client.get(f"/blocks/{status['tip']}")).json()
        return Block.from_dict(view["block"]).header

    async def snapshot(self) -> dict[str, Any]:
        return await snapshot(self.client)

    async def refused(
        self, path: str, body: bytes | dict[str, Any] | list[Any], status: int, reason: str
    ) -> dict[str, Any]:
        return await refused(self.client, path, body, status, reason)


async def snapshot(client: TestClient) -> dict[str, Any]:
    """Everything a refusal must leave alone: tip, height, mempool, the test accounts."""
    status = await (await client.get("/status")).json()
    pool = await (await client.get("/mempool")).json()
    accounts = {}
    for address in ADDRESSES:
        accounts[address] = await (await client.get(f"/address/{address}")).json()
    return {
        "tip": status["tip"],
        "height": status["height"],
        "mempool_size": status["mempool_size"],
        "mempool": [tx["txid"] for tx in pool["transactions"]],
        "accounts": accounts,
    }


async def refused(
    client: TestClient,
    path: str,
    body: bytes | dict[str, Any] | list[Any],
    status: int,
    reason: str,
) -> dict[str, Any]:
    """POST `body` (bytes as they are, anything else as JSON text) to `path`; assert the
    refusal and that the state did not move. Returns the error body."""
    before = await snapshot(client)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await client.post(path, data=raw, headers=JSON)
    answer = await assert_refusal(resp, status, reason)
    assert await snapshot(client) == before
    return answer


async def assert_refusal(resp: ClientResponse, status: int, reason: str) -> dict[str, Any]:
    """A 4xx with a JSON `{"error": <text>, "reason": <the expected code>}`."""
    text = await resp.text()
    assert 400 <= resp.status < 500, text
    assert resp.content_type == "application/json", text
    body = json.loads(text)
    assert isinstance(body, dict)
    assert (resp.status, body.get("reason")) == (status, reason), text
    assert isinstance(body.get("error"), str)
    assert body["error"]
    return body


def with_literal(body: dict[str, Any], field: str, literal: str) -> bytes:
    """`body` as JSON text with `field`'s value replaced by the raw JSON text `literal`."""
    marker = "\x00literal\x00"
    return json.dumps(body | {field: marker}).replace(json.dumps(marker), literal).encode()


@pytest.fixture
async def world(ledger_client: TestClient) -> World:
    """The ledger of `World`: two blocks mined to the miner, Miner -> Bob pending."""
    await mine(ledger_client, MINER.address, 2)
    pending = Transaction.create(
        MINER, BOB.address, COIN, fee=1_000, nonce=0, timestamp=0, network_id=REGTEST.network_id
    )
    resp = await ledger_client.post(TX_PATH, json=pending.to_dict())
    assert resp.status == 201, await resp.text()
    return World(ledger_client, pending)


async def test_the_base_transaction_is_valid(world: World) -> None:
    """The transaction every other test spoils is itself accepted (so each refusal is caused by
    the one thing a test changes)."""
    resp = await world.client.post(TX_PATH, json=world.next_tx().to_dict())
    assert resp.status == 201, await resp.text()


# -- the shape of the body --------------------------------------------------------------------


@pytest.mark.parametrize("path", [TX_PATH, BLOCK_PATH])
@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"amount": 1,}',
        b"{'amount': 1}",
        b'{"amount": }',
        b"{amount: 1}",
        b'{"a": 1} trailing',
        b"\xff\xfe\x00",
        b'{"sender": "\xff"}',
        b"[" * 50_000,
        b'{"amount": ' + b"9" * 5_000 + b"}",
    ],
    ids=[
        "unclosed",
        "trailing-comma",
        "single-quotes",
        "missing-value",
        "bare-key",
        "trailing-text",
        "not-utf8",
        "bad-utf8-in-string",
        "deep-nesting",
        "5000-digit-integer",
    ],
)
async def test_malformed_json(world: World, path: str, raw: bytes) -> None:
    """A body that is not JSON (strict: no trailing text, no 5000-digit numbers, no nesting
    that exhausts the parser) is a 400 malformed-json."""
    await world.refused(path, raw, 400, "malformed-json")


@pytest.mark.parametrize("path", [TX_PATH, BLOCK_PATH])
@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"tx"', b"5", b"-1.5", b"null", b"true"])
async def test_json_that_is_not_an_object(world: World, path: str, raw: bytes) -> None:
    """A JSON array, string, number, boolean or null instead of an object is a 400 bad-type."""
    await world.refused(path, raw, 400, "bad-type")


@pytest.mark.parametrize("path", [TX_PATH, BLOCK_PATH])
@pytest.mark.parametrize("raw", [b"", b"  \r\n\t "])
async def test_empty_body(world: World, path: str, raw: bytes) -> None:
    """An empty (or blank) body is a 400 malformed-json."""
    await world.refused(path, raw, 400, "malformed-json")


@pytest.mark.parametrize("field", TX_FIELDS)
async def test_transaction_missing_field(world: World, field: str) -> None:
    """A transaction without one of its fields is a 400 missing-field."""
    body = world.next_tx().to_dict()
    del body[field]
    answer = await world.refused(TX_PATH, body, 400, "missing-field")
    assert field in answer["error"]


async def test_transaction_missing_everything_but_sender(world: World) -> None:
    """Only a sender and a key (no signature-required shortcut): 400 missing-field."""
    body = {"sender": MINER.address, "public_key": MINER.public_key.hex()}
    await world.refused(TX_PATH, body, 400, "missing-field")


@pytest.mark.parametrize("field", [*HEADER_FIELDS, "transactions"])
async def test_block_missing_field(world: World, field: str) -> None:
    """A block without one of its fields is a 400 missing-field."""
    body = (await template(world)).to_dict()
    del body[field]
    answer = await world.refused(BLOCK_PATH, body, 400, "missing-field")
    assert field in answer["error"]


async def test_extra_fields(world: World) -> None:
    """A field that is not part of a transaction or a block is a 400 unknown-field: in a
    transaction, in a block, and in a transaction inside a block."""
    tx = world.next_tx().to_dict()
    for extra in ({"memo": "hi"}, {"Amount": 5}, {"": 0}):
        await world.refused(TX_PATH, tx | extra, 400, "unknown-field")
    block = solve(await template(world)).to_dict()  # a valid header: the fault is in a tx
    await world.refused(BLOCK_PATH, block | {"miner": "me"}, 400, "unknown-field")
    block["transactions"][0]["memo"] = "hi"
    await world.refused(BLOCK_PATH, block, 400, "unknown-field")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("sender", 5, "bad-address"),
        ("sender", None, "bad-address"),
        ("sender", ["P"], "bad-address"),
        ("recipient", {"address": ALICE.address}, "bad-address"),
        ("recipient", True, "bad-address"),
        ("nonce", "1", "bad-type"),
        ("nonce", 1.0, "bad-type"),
        ("nonce", -1, "out-of-range"),
        ("nonce", 2**64, "out-of-range"),
        ("timestamp", 1.5, "bad-type"),
        ("timestamp", None, "bad-type"),
        ("timestamp", False, "bad-type"),
        ("public_key", 5, "bad-type"),
        ("public_key", 0, "bad-type"),
        ("public_key", [], "bad-type"),
        ("public_key", "zz" * 32, "bad-hex"),
        ("public_key", "AB" * 32, "bad-hex"),
        ("public_key", "ab" * 31, "bad-hex"),
        ("public_key", "abc", "bad-hex"),
        ("signature", {}, "bad-type"),
        ("signature", "ab" * 63, "bad-hex"),
        ("signature", " " + "ab" * 64, "bad-hex"),
        ("txid", "00" * 32, "bad-txid"),
        ("txid", 5, "bad-txid"),
        ("txid", None, "bad-txid"),
    ],
)
async def test_transaction_wrong_types(world: World, field: str, value: Any, reason: str) -> None:
    """A transaction field of the wrong JSON type or shape is a 400 with the field's code."""
    body = world.next_tx().to_dict() | {field: value}
    await world.refused(TX_PATH, body, 400, reason)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("index", "4", "bad-type"),
        ("index", 0, "out-of-range"),
        ("index", -4, "out-of-range"),
        ("timestamp", 1.5, "bad-type"),
        ("previous_hash", 5, "bad-type"),
        ("previous_hash", "ab", "bad-hex"),
        ("merkle_root", "xyz", "bad-hex"),
        ("bits", -1, "out-of-range"),
        ("bits", 2**32, "out-of-range"),
        ("bits", "207fffff", "bad-type"),
        ("nonce", 1.0, "bad-type"),
        ("nonce", 2**64, "out-of-range"),
        ("transactions", {}, "bad-type"),
        ("transactions", "[]", "bad-type"),
        ("transactions", [5], "bad-type"),
        ("transactions", [None], "bad-type"),
        ("transactions", [], "no-transactions"),
        ("hash", "00" * 32, "bad-block-hash"),
        ("hash", 5, "bad-block-hash"),
    ],
)
async def test_block_wrong_types(world: World, field: str, value: Any, reason: str) -> None:
    """A block field of the wrong JSON type or shape is a 400 with the field's code."""
    body = solve(await template(world)).to_dict()  # else a bad-pow header could come first
    if field != "hash":
        body.pop("hash")  # else a changed header field would first be a bad-block-hash
    await world.refused(BLOCK_PATH, body | {field: value}, 400, reason)


AMOUNT_LITERALS = [
    ("-1", "bad-{field}"),
    ("1.5", "bad-type"),
    ("5.0", "bad-type"),
    ("1e3", "bad-type"),
    ('"5"', "bad-type"),
    ("true", "bad-type"),
    ("false", "bad-type"),
    ("null", "bad-type"),
    ("1e400", "bad-type"),
    ("-1e400", "bad-type"),
    ("NaN", "malformed-json"),
    ("Infinity", "malformed-json"),
    ("-Infinity", "malformed-json"),
    ("9" * 400, "bad-{field}"),
    ("-" + "9" * 400, "bad-{field}"),
    (str(21_000_000 * COIN + 1), "bad-{field}"),
]


@pytest.mark.parametrize("field", ["amount", "fee"])
@pytest.mark.parametrize(
    ("literal", "reason"), AMOUNT_LITERALS, ids=[lit[:12] for lit, _ in AMOUNT_LITERALS]
)
async def test_amount_and_fee_values(world: World, field: str, literal: str, reason: str) -> None:
    """Amounts and fees are integers of base units in [0, MAX_MONEY]: negatives, floats (also
    5.0 and 1e3), strings, booleans, null, 1e400, NaN, ±Infinity and 400-digit integers are a
    400 with bad-type, bad-amount/bad-fee or malformed-json."""
    body = world.next_tx().to_dict()
    await world.refused(
        TX_PATH, with_literal(body, field, literal), 400, reason.format(field=field)
    )


async def test_zero_amount_and_zero_fee(world: World) -> None:
    """Correctly signed zeros: a transfer of 0 is a 400 bad-amount; a fee of 0 is below the
    relay minimum, 400 fee-too-low."""
    await world.refused(TX_PATH, world.next_tx(amount=0).to_dict(), 400, "bad-amount")
    await world.refused(TX_PATH, world.next_tx(fee=0).to_dict(), 400, "fee-too-low")


async def test_amount_plus_fee_over_the_supply(world: World) -> None:
    """amount + fee above MAX_MONEY (each within it) is a 400 bad-fee."""
    tx = world.next_tx(amount=21_000_000 * COIN, fee=1_000)
    await world.refused(TX_PATH, tx.to_dict(), 400, "bad-fee")


async def test_more_than_the_balance(world: World) -> None:
    """Spending more than the balance left after pending spends is a 400 insufficient-funds."""
    tx = world.next_tx(amount=2 * SUBSIDY - COIN)
    await world.refused(TX_PATH, tx.to_dict(), 400, "insufficient-funds")


@pytest.mark.parametrize("nonce", [2, 10**6, 2**64 - 1])
async def test_wrong_nonce(world: World, nonce: int) -> None:
    """A nonce past the sender's next (1, counting the pending one) is a 400 bad-nonce."""
    await world.refused(TX_PATH, world.next_tx(nonce=nonce).to_dict(), 400, "bad-nonce")


@pytest.mark.parametrize("path", [TX_PATH, BLOCK_PATH])
async def test_duplicate_json_keys(world: World, path: str) -> None:
    """A key that appears twice in an object is a 400 malformed-json, whichever value the
    parser would keep, at the top level and nested."""
    body = world.next_tx().to_dict()
    text = json.dumps(body)
    twice = text[:-1] + f', "amount": {body["amount"]}' + "}"
    await world.refused(path, twice.encode(), 400, "malformed-json")
    nested = json.dumps({"transactions": [{"a": 1}]}).replace('"a": 1', '"a": 1, "a": 2')
    await world.refused(path, nested.encode(), 400, "malformed-json")


# -- signatures, keys, addresses ----------------------------------------------------------------


async def test_forged_signature(world: World) -> None:
    """The right signature with one byte flipped is a 400 bad-signature."""
    tx = world.next_tx().to_dict()
    sig = bytearray.fromhex(tx.pop("signature"))
    sig[10] ^= 0x01
    tx.pop("txid")
    await world.refused(TX_PATH, tx | {"signature": sig.hex()}, 400, "bad-signature")


async def test_signature_by_another_key(world: World) -> None:
    """The same transaction signed by Alice's key (the miner's public key left in) is a 400
    bad-signature."""
    tx = world.next_tx()
    forged = Transaction.create(
        ALICE,
        tx.recipient,
        tx.amount,
        fee=tx.fee,
        nonce=tx.nonce,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    body = tx.to_dict() | {"signature": forged.signature}
    body.pop("txid")
    await world.refused(TX_PATH, body, 400, "bad-signature")


async def test_public_key_of_someone_else(world: World) -> None:
    """A transaction from the miner's address carrying (and signed by) Alice's key is a 400
    sender-key-mismatch: a key may only spend from its own address."""
    theft = Transaction(MINER.address, BOB.address, COIN, 1_000, 1, 0, ALICE.public_key.hex())
    signed = replace(theft, signature=ALICE.sign(theft.signing_message("pybtc-regtest")).hex())
    await world.refused(TX_PATH, signed.to_dict(), 400, "sender-key-mismatch")


def mistype(address: str) -> str:
    """`address` with one character changed to another Base58 character."""
    position = 17
    swapped = "2" if address[position] != "2" else "3"
    return address[:position] + swapped + address[position + 1 :]


@pytest.mark.parametrize("field", ["sender", "recipient"])
@pytest.mark.parametrize(
    "spoil",
    [
        mistype,
        lambda a: a[:-1],
        lambda a: a + "1",
        lambda a: a.lower(),
        lambda a: " " + a,
        lambda a: a.replace(a[5], "0", 1),
        lambda a: "",
    ],
    ids=["one-char", "short", "long", "lowercase", "space", "zero", "empty"],
)
async def test_mistyped_address(world: World, field: str, spoil: Callable[[str], str]) -> None:
    """A mistyped sender or recipient is a 400 bad-address, never coins sent to nowhere."""
    body = world.next_tx().to_dict()
    await world.refused(TX_PATH, body | {field: spoil(body[field])}, 400, "bad-address")


WEAK_KEYS = {
    "neutral-y1": "01" + "00" * 31,
    "y0": "00" * 32,
    "y-minus-1": "ec" + "ff" * 30 + "7f",
    "order-8-a": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order-8-b": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "non-canonical-y-p": "ed" + "ff" * 30 + "7f",
}


@pytest.mark.parametrize("key_hex", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
async def test_weak_public_key(world: World, key_hex: str) -> None:
    """A small-order (or non-canonical) public key, with the address that key hashes to as
    the sender and the identity "signature" that such keys verify in lax libraries, is a 400
    bad-public-key."""
    sender = address_from_public_key(bytes.fromhex(key_hex))
    tx = Transaction(sender, ALICE.address, COIN, 1_000, 0, 0, key_hex, "01" + "00" * 63)
    await world.refused(TX_PATH, tx.to_dict(), 400, "bad-public-key")


async def test_signed_for_another_network(world: World) -> None:
    """A transaction signed for pybtc-devnet is a 400 bad-signature on regtest (the network id
    is signed, so nothing replays across networks)."""
    tx = world.next_tx(network_id=DEVNET.network_id)
    await world.refused(TX_PATH, tx.to_dict(), 400, "bad-signature")


async def test_coinbase_style_transaction(world: World) -> None:
    """A loose transaction from sender "0" (the tutorial's mining reward) is a 400
    coinbase-outside-block: only a block makes money."""
    coinbase = Transaction.coinbase(ALICE.address, 50 * COIN, 4, int(time.time()))
    await world.refused(TX_PATH, coinbase.to_dict(), 400, "coinbase-outside-block")
    await world.refused(
        TX_PATH, coinbase.to_dict() | {"type": "sharing"}, 400, "coinbase-outside-block"
    )


# -- replays and double spends ------------------------------------------------------------------


async def test_replayed_transaction(world: World) -> None:
    """The same signed transaction sent again after it was mined is a 409 already-confirmed."""
    await mine(world.client, BOB.address)
    found = await (await world.client.get(f"/tx/{world.pending.txid}")).json()
    assert found["status"] == "confirmed"
    await world.refused(TX_PATH, world.pending.to_dict(), 409, "already-confirmed")
    relay = world.pending.to_dict() | {"type": "sharing"}
    await world.refused(TX_PATH, relay, 409, "already-confirmed")


async def test_double_spend_against_the_mempool(world: World) -> None:
    """Nonce 0 again (pending to Bob) to Alice at the same fee is a 409
    replacement-fee-too-low; the pending transaction stays."""
    rival = world.next_tx(nonce=0, recipient=ALICE.address)
    await world.refused(TX_PATH, rival.to_dict(), 409, "replacement-fee-too-low")
    pool = await (await world.client.get("/mempool")).json()
    assert [t["txid"] for t in pool["transactions"]] == [world.pending.txid]


# -- blocks ---------------------------------------------------------------------------------------


async def template(world: World) -> Block:
    """The ledger's own template for a block paying Bob (not mined)."""
    resp = await world.client.get("/mining/template", params={"address": BOB.address})
    assert resp.status == 200
    return Block.from_dict((await resp.json())["block"])


def solve(block: Block) -> Block:
    mined = mine_block(block)
    assert mined is not None
    return mined


def on(tip: BlockHeader, *txs: Transaction, timestamp: int | None = None, **kw: Any) -> Block:
    """A mined block on `tip` paying Bob, with `txs`; `kw` override build_block's arguments."""
    args: dict[str, Any] = {
        "bits": tip.bits,
        "transactions": txs,
        "miner_address": BOB.address,
        "timestamp": tip.timestamp + 1 if timestamp is None else timestamp,
    } | kw
    return solve(build_block(REGTEST, tip, **args))


def failing_pow(block: Block) -> Block:
    """`block` with the first nonce whose hash misses its target."""
    target = bits_to_target(block.header.bits)
    nonce = 0
    while hash_meets_target(bytes.fromhex(block.with_nonce(nonce).hash), target):
        nonce += 1
    return block.with_nonce(nonce)


def two_with_one_nonce(world: World) -> tuple[Transaction, Transaction]:
    first = world.next_tx(nonce=0, recipient=ALICE.address)
    second = world.next_tx(nonce=0, recipient=BOB.address, fee=2_000)
    return first, second


BadBlock = Callable[[World, BlockHeader], Block]

BAD_BLOCKS: dict[str, tuple[BadBlock, str]] = {
    "bad-pow": (lambda w, tip: failing_pow(on(tip)), "bad-pow"),
    "broken-link": (lambda w, tip: remine(on(tip), previous_hash="ab" * 32), "unknown-parent"),
    "harder-bits": (
        lambda w, tip: on(tip, bits=target_to_bits(bits_to_target(tip.bits) >> 8)),
        "bad-difficulty",
    ),
    "easier-than-limit": (lambda w, tip: on(tip, bits=0x2100FFFF), "bad-bits"),
    "future-time": (
        lambda w, tip: on(tip, timestamp=int(time.time()) + REGTEST.max_future_block_time + 600),
        "time-too-new",
    ),
    "old-time": (lambda w, tip: on(tip, timestamp=REGTEST.genesis.timestamp), "time-too-old"),
    "overpaying-coinbase": (
        lambda w, tip: remine(
            on(tip),
            [Transaction.coinbase(BOB.address, SUBSIDY + 1, tip.index + 1, tip.timestamp + 1)],
        ),
        "bad-coinbase-amount",
    ),
    "wrong-merkle-root": (lambda w, tip: remine(on(tip), merkle_root="00" * 32), "bad-merkle-root"),
    "skipped-index": (
        lambda w, tip: remine(on(replace(tip, index=tip.index + 1)), previous_hash=tip.hash),
        "bad-index",
    ),
    "double-spend-inside": (lambda w, tip: on(tip, *two_with_one_nonce(w)), "bad-nonce"),
    "same-tx-twice": (lambda w, tip: on(tip, w.pending, w.pending), "duplicate-tx"),
    "unfunded-sender": (
        lambda w, tip: on(tip, w.next_tx(key=ALICE, nonce=0, recipient=BOB.address)),
        "insufficient-funds",
    ),
    "second-coinbase": (
        lambda w, tip: on(tip, Transaction.coinbase(ALICE.address, COIN, 0, 0)),
        "multiple-coinbase",
    ),
    "coinbase-wrong-height": (
        lambda w, tip: remine(
            on(tip), [Transaction.coinbase(BOB.address, SUBSIDY, tip.index, tip.timestamp + 1)]
        ),
        "bad-coinbase",
    ),
    "other-genesis": (
        lambda w, tip: solve(
            make_genesis(timestamp=tip.timestamp, bits=tip.bits, nonce=0, subsidy=SUBSIDY)
        ),
        "bad-genesis",
    ),
    "forged-tx-inside": (
        lambda w, tip: on(tip, replace(w.next_tx(), signature=w.pending.signature)),
        "bad-signature",
    ),
}


@pytest.mark.parametrize("case", BAD_BLOCKS, ids=list(BAD_BLOCKS))
async def test_bad_block(world: World, case: str) -> None:
    """A submitted block that breaks a consensus rule is a 400 with the rule's reason code and
    the tip, mempool and balances stay as they were: bad PoW, a broken link, wrong bits, a
    timestamp too far ahead or not after the median time past, an over-paying coinbase, a
    wrong Merkle root, a skipped height, two transactions with one nonce (a double spend
    inside one block), the same transaction twice, an unfunded sender, a second coinbase, a
    coinbase numbered for another height, another genesis, a forged transaction inside."""
    make, reason = BAD_BLOCKS[case]
    block = make(world, await world.tip())
    await world.refused(BLOCK_PATH, block.to_dict(), 400, reason)
    # sent again: the same answer (a block kept as invalid answers with its stored reason)
    await world.refused(BLOCK_PATH, block.to_dict(), 400, reason)


async def test_invalid_block_is_remembered_and_taints_children(world: World) -> None:
    """A block that failed on connection (over-paying coinbase) is kept marked invalid with its
    reason (GET /blocks/{hash}); a child built on it is a 400 invalid-ancestor."""
    tip = await world.tip()
    make, _ = BAD_BLOCKS["overpaying-coinbase"]
    bad = make(world, tip)
    await world.refused(BLOCK_PATH, bad.to_dict(), 400, "bad-coinbase-amount")
    view = await (await world.client.get(f"/blocks/{bad.hash}")).json()
    assert view["invalid_reason"] == "bad-coinbase-amount"
    assert (view["in_best_chain"], view["confirmations"]) == (False, 0)
    child = on(bad.header)
    await world.refused(BLOCK_PATH, child.to_dict(), 400, "invalid-ancestor")


async def test_duplicate_block(world: World) -> None:
    """The same block submitted twice: 201, then a 400 duplicate-block that changes nothing.
    The genesis block itself is a duplicate too."""
    block = solve(await template(world))
    resp = await world.client.post(BLOCK_PATH, json=block.to_dict())
    assert resp.status == 201, await resp.text()
    await world.refused(BLOCK_PATH, block.to_dict(), 400, "duplicate-block")
    await world.refused(BLOCK_PATH, REGTEST.genesis.to_dict(), 400, "duplicate-block")


# -- body size, paths, methods, headers -------------------------------------------------------


@pytest.fixture
async def small_body_client(aiohttp_client: Any, tmp_path: Path, redis_url: str) -> TestClient:
    """A ledger that accepts request bodies of at most 2048 bytes, with one block mined."""
    app = create_app(ledger_settings(tmp_path, redis_url, max_body_bytes=2048))
    client = await aiohttp_client(app)
    await mine(client, MINER.address)
    return client


@pytest.mark.parametrize("path", [TX_PATH, BLOCK_PATH])
async def test_body_over_the_size_limit(small_body_client: TestClient, path: str) -> None:
    """A 4096-byte body where 2048 is the limit is a 413 body-too-large (valid JSON or not);
    a transaction within the limit is still admitted afterwards."""
    client = small_body_client
    padded = json.dumps({"memo": "x" * 4096})[:4096].encode()
    assert len(padded) == 4096
    await refused(client, path, padded, 413, "body-too-large")
    valid_json = json.dumps({"memo": "x" * (4096 - 12)}).encode()
    assert len(valid_json) == 4096
    await refused(client, path, valid_json, 413, "body-too-large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for _ in range(8):
            yield b" " * 512

    before = await snapshot(client)
    resp = await client.post(path, data=chunks(), headers=JSON)
    await assert_refusal(resp, 413, "body-too-large")
    assert await snapshot(client) == before
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, name
    tx = Transaction.create(
        MINER, ALICE.address, COIN, fee=1_000, nonce=0, timestamp=0, network_id="pybtc-regtest"
    )
    resp = await client.post(TX_PATH, json=tx.to_dict())
    assert resp.status == 201, await resp.text()


async def test_compressed_body_over_the_size_limit(small_body_client: TestClient) -> None:
    """A gzip body of about 1 KiB that inflates to 1 MiB is a 413 body-too-large: the limit
    holds for the decompressed body, and the node neither stalls nor inflates it all."""
    bomb = gzip.compress(b" " * 1_048_576)
    assert len(bomb) < 2048
    before = await snapshot(small_body_client)
    resp = await small_body_client.post(
        TX_PATH, data=bomb, headers=JSON | {"Content-Encoding": "gzip"}
    )
    await assert_refusal(resp, 413, "body-too-large")
    assert await snapshot(small_body_client) == before


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_body_that_does_not_decompress(world: World, encoding: str) -> None:
    """A body labelled Content-Encoding gzip or deflate that is not compressed is a 400 JSON
    refusal (malformed-json), not a 500.

    Sent over a raw socket, like curl: aiohttp closes the connection after a body it cannot
    decode, and its own client may see the close before the answer.
    """
    before = await world.snapshot()
    raw = json.dumps(world.next_tx().to_dict()).encode()
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"POST {TX_PATH} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: application/json\r\nContent-Encoding: {encoding}\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), answer
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body.get("reason") == "malformed-json", body
    assert body.get("error")
    assert await world.snapshot() == before


@pytest.mark.parametrize(
    "path",
    ["/nope", "/chain/", "/chains", "/transactions", "/blocks/height/1/x", "/tx", "/a%00b"],
)
async def test_unknown_path(world: World, path: str) -> None:
    """An unknown path is a 404 not-found in the same JSON shape as every other refusal."""
    before = await world.snapshot()
    for method in ("GET", "POST"):
        resp = await world.client.request(method, path, json=world.next_tx().to_dict())
        await assert_refusal(resp, 404, "not-found")
    assert await world.snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", TX_PATH),
        ("PUT", TX_PATH),
        ("GET", BLOCK_PATH),
        ("POST", "/chain"),
        ("DELETE", "/status"),
        ("POST", "/mine"),
        ("PATCH", "/mempool"),
        ("POST", "/mining/template"),
        ("POST", "/healthz"),
        ("POST", "/metrics"),
    ],
)
async def test_wrong_method(world: World, method: str, path: str) -> None:
    """A known path with the wrong method is a 405 method-not-allowed (JSON, with Allow) and
    changes nothing."""
    before = await world.snapshot()
    resp = await world.client.request(method, path, json=world.next_tx().to_dict())
    await assert_refusal(resp, 405, "method-not-allowed")
    assert resp.headers.get("Allow")
    assert await world.snapshot() == before


async def test_security_headers_on_every_response(world: World) -> None:
    """Every answer (200, 201, 400, 404, 405, 409, 503; JSON, YAML, Prometheus text) carries
    nosniff, DENY framing, no-referrer, a CSP and same-origin resources (413: see the size
    limit test)."""
    client = world.client
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/", None),
        ("GET", "/status", None),
        ("GET", "/chain", None),
        ("GET", "/openapi.yaml", None),
        ("GET", "/metrics", None),
        ("GET", "/healthz", None),
        ("GET", "/mine", None),
        ("GET", "/nope", None),
        ("DELETE", "/status", None),
        ("GET", "/tx/zz", None),
        ("POST", TX_PATH, world.next_tx().to_dict()),
        ("POST", TX_PATH, world.pending.to_dict() | {"txid": "00" * 32}),
        ("POST", TX_PATH, world.next_tx(nonce=0, recipient=ALICE.address).to_dict()),
    ]
    seen = set()
    for method, path, body in requests:
        resp = await client.request(method, path, json=body)
        seen.add(resp.status)
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, (method, path, name)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert {200, 201, 400, 404, 405, 409, 503} <= seen


def surrogate_txid(world: World, block: Block) -> tuple[str, bytes, str]:
    return TX_PATH, with_literal(world.next_tx().to_dict(), "txid", '"\\ud800"'), "bad-txid"


def surrogate_field_name(world: World, block: Block) -> tuple[str, bytes, str]:
    text = json.dumps(world.next_tx().to_dict())[:-1] + ', "\\ud800": 1}'
    return TX_PATH, text.encode(), "unknown-field"


def surrogate_block_hash(world: World, block: Block) -> tuple[str, bytes, str]:
    return BLOCK_PATH, with_literal(block.to_dict(), "hash", '"\\ud800"'), "bad-block-hash"


@pytest.mark.parametrize(
    "case",
    [surrogate_txid, surrogate_field_name, surrogate_block_hash],
    ids=["tx-txid", "tx-field-name", "block-hash"],
)
async def test_lone_surrogates_in_rejected_objects(
    world: World, case: Callable[[World, Block], tuple[str, bytes, str]]
) -> None:
    """JSON may spell a lone UTF-16 surrogate ("\\ud800"); a rejected object carrying one in its
    id or a field name is a 400 like any other.

    The rejection log stores the object's id and the error message in SQLite, which cannot
    encode a lone surrogate as UTF-8: the UnicodeEncodeError escapes as a 500.
    """
    path, raw, reason = case(world, await template(world))
    assert b"\\ud800" in raw
    await world.refused(path, raw, 400, reason)


# -- random input ----------------------------------------------------------------------------


REAL_VALUES = [
    MINER.address,
    ALICE.address,
    "0",
    MINER.public_key.hex(),
    "00" * 64,
    REGTEST.genesis.hash,
    "207fffff",
    0x207FFFFF,
    1,
    1_000,
    COIN,
    2**64,
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(REAL_VALUES)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
tx_like = st.fixed_dictionaries(
    {}, optional=dict.fromkeys((*TX_FIELDS, "txid", "type"), json_values)
)
block_like = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys((*HEADER_FIELDS, "hash"), json_values)
    | {"transactions": st.lists(tx_like | json_values, max_size=3)},
)
# Mutants of real objects reach the deeper rules. The base transaction is correctly signed but
# carries nonce 7 (the miner's next is 1), and the base block is the genesis block, so no
# mutant of a few fields can be valid: any change to a signed field breaks the signature.
BASE_TX = Transaction.create(
    MINER, ALICE.address, COIN, fee=1_000, nonce=7, timestamp=0, network_id=REGTEST.network_id
).to_dict()
field_values = (
    json_values
    | st.sampled_from(REAL_VALUES)
    | st.integers(min_value=0, max_value=2**64)
    | st.binary(min_size=32, max_size=32).map(bytes.hex)
    | st.binary(min_size=64, max_size=64).map(bytes.hex)
)
tx_mutants = st.dictionaries(
    st.sampled_from((*TX_FIELDS, "txid", "type")), field_values, min_size=1, max_size=2
).map(lambda changes: BASE_TX | changes)
GENESIS = REGTEST.genesis.to_dict()
GENESIS_WITHOUT_HASH = {k: v for k, v in GENESIS.items() if k != "hash"}
block_mutants = st.builds(
    lambda base, changes: base | changes,
    st.sampled_from([GENESIS, GENESIS_WITHOUT_HASH]),
    st.dictionaries(
        st.sampled_from((*HEADER_FIELDS, "hash", "transactions")),
        field_values | st.lists(tx_mutants | st.just(BASE_TX), min_size=1, max_size=3),
        min_size=1,
        max_size=3,
    ),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=json_values | tx_like | block_like | tx_mutants | block_mutants)
async def test_random_json_is_never_a_5xx(world: World, payload: Any) -> None:
    """Random JSON (nested values with huge integers, NaN and Infinity, text; objects built
    from the transaction and block field names; real transactions and blocks with a few fields
    replaced) POSTed to /transactions/new and /mining/submit: never a 5xx, always a JSON
    refusal, and the state never changes."""
    before = await world.snapshot()
    raw = json.dumps(payload).encode()
    for path in (TX_PATH, BLOCK_PATH):
        resp = await world.client.post(path, data=raw, headers=JSON)
        text = await resp.text()
        assert resp.status < 500, text
        body = json.loads(text)
        if resp.status >= 400:
            assert set(body) == {"error", "reason"}, text
        else:  # only a pending transaction sent again can be accepted, and that changes nothing
            assert body.get("new") is False, text
    assert await world.snapshot() == before
