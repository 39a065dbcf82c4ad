"""Property-based fuzzing of every parser that sees what a peer or a client sends: a transaction,
a block, a header (the JSON forms of docs/protocol.md), and a request body (the services' strict
JSON reader). Whatever comes in, the parser either returns an object that serialises back to
what it accepted, or refuses with the protocol's own error carrying a reason code — never any
other exception (a 500 in a service, a crashed sync with a peer).

Two kinds of input: arbitrary JSON values, and near misses — a valid object with one field
replaced by an arbitrary value, removed, or joined by an unknown field — which reach the checks
behind the shape checks. (The bus envelope has its own fuzz test in tests/service/test_bus.py.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from pybtc import REGTEST, Block, BlockHeader, PrivateKey, Reason, Transaction, ValidationError
from pybtc.mining import build_block, mine_block
from services.common.web import ServiceError, parse_json
from tests.strategies import json_values

T = TypeVar("T")
KEY = PrivateKey(b"\x07" * 32)
TX = Transaction.create(
    KEY,
    PrivateKey(b"\x08" * 32).address,
    12_345,
    fee=1_000,
    nonce=3,
    timestamp=1_700_000_000,
    network_id=REGTEST.network_id,
)
_MINED = mine_block(
    build_block(
        REGTEST,
        REGTEST.genesis.header,
        bits=REGTEST.genesis.header.bits,
        transactions=[TX],
        miner_address=KEY.address,
        timestamp=REGTEST.genesis.timestamp + 1,
    )
)
assert _MINED is not None
BLOCK = _MINED

JSON = json_values(text_size=80, max_leaves=12)


def near_misses(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`valid` with one field replaced by any JSON value, removed, or an unknown one added."""
    field = st.sampled_from(sorted(valid))
    replaced = st.tuples(field, JSON).map(lambda kv: valid | {kv[0]: kv[1]})
    removed = field.map(lambda k: {n: v for n, v in valid.items() if n != k})
    added = st.tuples(st.text(max_size=12).filter(lambda k: k not in valid), JSON).map(
        lambda kv: valid | {kv[0]: kv[1]}
    )
    return st.one_of(replaced, removed, added)


def parsed_or_refused(parse: Callable[[Any], T], data: Any) -> T | None:
    """`parse(data)`, or None when it refused with the protocol's error and a reason code; any
    other exception fails the test."""
    refusal: ValidationError | None = None
    try:
        return parse(data)
    except ValidationError as exc:
        refusal = exc
    assert isinstance(refusal.reason, Reason)
    assert str(refusal)
    return None


@settings(max_examples=400, deadline=None)
@given(st.one_of(JSON, near_misses(TX.to_dict())))
def test_transaction_from_dict_accepts_exactly_or_refuses_with_a_reason(data: Any) -> None:
    tx = parsed_or_refused(Transaction.from_dict, data)
    if tx is None:
        return
    again = tx.to_dict()
    assert Transaction.from_dict(again) == tx
    for name, value in again.items():  # nothing it accepted was changed on the way in
        if name in data:
            assert data[name] == value


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, near_misses(BLOCK.header.to_dict())))
def test_header_from_dict_accepts_exactly_or_refuses_with_a_reason(data: Any) -> None:
    header = parsed_or_refused(BlockHeader.from_dict, data)
    if header is not None:
        assert BlockHeader.from_dict(header.to_dict()) == header


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        JSON,
        near_misses(BLOCK.to_dict()),
        near_misses(TX.to_dict()).map(
            lambda tx: BLOCK.to_dict() | {"transactions": [BLOCK.to_dict()["transactions"][0], tx]}
        ),
    )
)
def test_block_from_dict_accepts_exactly_or_refuses_with_a_reason(data: Any) -> None:
    block = parsed_or_refused(Block.from_dict, data)
    if block is not None:
        assert Block.from_dict(block.to_dict()) == block


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        JSON.map(json.dumps),
        st.sampled_from(
            [
                '{"a": 1, "a": 2}',
                '{"amount": NaN}',
                "[Infinity]",
                "[" * 100_000,
                '"\\ud800"',
                b"\xff\xfe{}",
                "",
            ]
        ),
    )
)
def test_request_bodies_parse_strictly_or_refuse_with_400(raw: bytes | str) -> None:
    refusal: ServiceError | None = None
    try:
        value = parse_json(raw)
    except ServiceError as exc:
        refusal = exc
    if refusal is not None:
        assert (refusal.status, refusal.reason) == (400, "malformed-json")
        return
    assert json.loads(json.dumps(value)) == value
