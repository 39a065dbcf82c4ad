"""The golden vectors in tests/vectors/ against the code, and both against docs/protocol.md.

Each test recomputes the vector values with `pybtc` from the inputs in the files and compares
byte for byte, so a change to any encoding, hash or rule fails here. Three more tests keep the
three artefacts together: regenerating the vectors in memory must give the committed files,
every `Reason` code must be documented, and every hex example in the document must be a value
from the vectors.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pybtc import (
    NETWORKS,
    REGTEST,
    AddressError,
    Block,
    BlockHeader,
    ChainParams,
    MemoryChain,
    PrivateKey,
    Reason,
    Transaction,
    ValidationError,
)
from pybtc.block import HEADER_SIZE, NONCE_OFFSET, merkle_root
from pybtc.difficulty import ancestor_timestamps, is_retarget_height, median_time_past, next_bits
from pybtc.difficulty import retarget as retarget_bits
from pybtc.encoding import (
    COIN,
    MAX_MONEY,
    U32_MAX,
    U64_MAX,
    format_amount,
    parse_amount,
    sha256,
    sha256d,
    u32,
    u64,
    var_bytes,
    var_str,
)
from pybtc.keys import (
    address_from_payload,
    address_from_public_key,
    decode_address,
    is_address,
    is_strong_public_key,
    verify_signature,
)
from pybtc.params import GENESIS_MESSAGE, GENESIS_TIME, genesis_reward_address
from pybtc.pow import bits_to_target, block_work, hash_meets_target, target_to_bits
from pybtc.state import BlockUndo, connect_block
from pybtc.validation import Account, validate_transaction, validate_transaction_state
from tests.vectors import generate

VECTORS = Path(generate.__file__).resolve().parent
PROTOCOL_MD = VECTORS.parent.parent / "docs" / "protocol.md"


@cache
def load(name: str) -> Any:
    """One vector file, parsed."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def cases(name: str, *path: str) -> list[Any]:
    """The list at `path` inside vector file `name`, for parametrize."""
    node = load(name)
    for key in path:
        node = node[key]
    assert isinstance(node, list)
    assert node, f"{name}: {'/'.join(path)} is empty"
    return node


def by_case(item: Any) -> str:
    """A readable parametrize id."""
    return str(item.get("case", item)) if isinstance(item, dict) else str(item)


def params_named(network_id_or_name: str) -> ChainParams:
    """The parameters of a network given by name or network id."""
    for params in NETWORKS.values():
        if network_id_or_name in (params.name, params.network_id):
            return params
    raise KeyError(network_id_or_name)


# -- the three artefacts agree ------------------------------------------------------------------


def test_committed_vectors_are_exactly_what_the_generator_writes() -> None:
    expected = generate.build()
    on_disk = {p.name for p in VECTORS.glob("*.json")}
    assert on_disk == set(expected), "stale or missing vector files: run the generator"
    for name, text in expected.items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, (
            f"tests/vectors/{name} differs from `python -m tests.vectors.generate`"
        )


def test_every_reason_code_is_documented() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    missing = [r.value for r in Reason if f"`{r.value}`" not in text]
    assert not missing, f"docs/protocol.md does not list {missing}"
    assert [c["code"] for c in load("reasons.json")["codes"]] == [r.value for r in Reason]


def test_every_chain_param_is_documented() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(ChainParams) if f"`{f.name}`" not in text]
    assert not missing, f"docs/protocol.md does not list the ChainParams fields {missing}"


def test_hex_examples_in_the_document_come_from_the_vectors() -> None:
    corpus = "".join(generate.build().values())
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    examples = set(re.findall(r"\b[0-9a-f]{16,}\b", text))
    assert len(examples) >= 10, "the document should show hex examples from the vectors"
    strays = sorted(e for e in examples if e not in corpus)
    assert not strays, f"hex in docs/protocol.md that no vector contains: {strays}"


# -- encoding ----------------------------------------------------------------------------------


def test_encoding_constants() -> None:
    constants = load("encoding.json")["constants"]
    assert constants == {
        "COIN": COIN,
        "MAX_MONEY": MAX_MONEY,
        "U32_MAX": U32_MAX,
        "U64_MAX": str(U64_MAX),
    }
    assert COIN == 100_000_000
    assert MAX_MONEY == 21_000_000 * COIN


def test_fixed_width_integers() -> None:
    data = load("encoding.json")
    for item in data["u32"]:
        assert u32(item["value"]).hex() == item["hex"] == struct.pack(">I", item["value"]).hex()
    for item in data["u64"]:
        value = int(item["value"])
        assert u64(value).hex() == item["hex"] == struct.pack(">Q", value).hex()


def test_length_prefixed_bytes_and_strings() -> None:
    data = load("encoding.json")
    for item in data["var_bytes"]:
        raw = bytes.fromhex(item["data"])
        assert var_bytes(raw).hex() == item["hex"]
        assert bytes.fromhex(item["hex"])[0] == len(raw)
    for item in data["var_str"]:
        assert var_str(item["text"]).hex() == item["hex"]
        assert bytes.fromhex(item["hex"])[1:].decode("utf-8") == item["text"]
    limit = data["var_bytes_max_length"]
    var_bytes(b"\0" * limit)
    with pytest.raises(ValueError, match="at most 255"):
        var_bytes(b"\0" * (limit + 1))


def test_hashes() -> None:
    for item in load("encoding.json")["hashes"]:
        raw = bytes.fromhex(item["data"])
        assert sha256(raw).hex() == item["sha256"]
        assert sha256d(raw).hex() == item["sha256d"]
        assert sha256(bytes.fromhex(item["sha256"])).hex() == item["sha256d"]


def test_amount_display_format() -> None:
    data = load("encoding.json")
    for item in data["format_amount"]:
        assert format_amount(item["units"]) == item["text"]
        assert parse_amount(item["text"]) == item["units"]
    for item in data["parse_amount"]:
        assert parse_amount(item["text"]) == item["units"]
    for item in data["parse_amount_rejected"]:
        with pytest.raises(ValueError, match=re.escape(item["error"])):
            parse_amount(item["text"])


# -- keys and addresses ------------------------------------------------------------------------


@pytest.mark.parametrize("item", cases("keys.json", "keys"), ids=by_case)
def test_public_key_of_seed(item: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(item["seed"])
    assert key.public_key.hex() == item["public_key"]
    if item["seed_text"].startswith("pybtc vector key"):
        assert sha256(item["seed_text"].encode()).hex() == item["seed"]


@pytest.mark.parametrize("item", cases("keys.json", "signatures"), ids=by_case)
def test_deterministic_signature(item: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(item["seed"])
    message = bytes.fromhex(item["message"])
    assert key.public_key.hex() == item["public_key"]
    assert key.sign(message).hex() == item["signature"]
    assert verify_signature(key.public_key, bytes.fromhex(item["signature"]), message)


@pytest.mark.parametrize("item", cases("keys.json", "verify"), ids=by_case)
def test_what_verification_accepts(item: dict[str, Any]) -> None:
    public_key = bytes.fromhex(item["public_key"])
    signature = bytes.fromhex(item["signature"])
    message = bytes.fromhex(item["message"])
    assert verify_signature(public_key, signature, message) is item["valid"]
    assert is_strong_public_key(public_key) is item["strong_key"]
    try:  # OpenSSL alone, without the strong-key rule
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        plain = True
    except (InvalidSignature, ValueError):
        plain = False
    assert plain is item["plain_rfc8032"]
    assert item["valid"] is (item["strong_key"] and item["plain_rfc8032"])
    assert (item["refused_because"] is None) is item["valid"]


def test_the_refused_small_order_keys_are_the_documented_ones() -> None:
    """The canonical weak keys whose forgeries pass plain RFC 8032 are the five y values of
    docs/protocol.md §3.1, and the rule refuses each with either sign bit."""
    p = 2**255 - 19
    forged_y = {
        int.from_bytes(bytes.fromhex(c["public_key"]), "little") & ((1 << 255) - 1)
        for c in cases("keys.json", "verify")
        if c["plain_rfc8032"] and not c["strong_key"]
    }
    small_order_y = {y for y in forged_y if y < p}
    assert {0, 1, p - 1} < small_order_y
    assert len(small_order_y) == 5
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    for y in small_order_y:
        assert f"`{y.to_bytes(32, 'little').hex()}`" in text
        for sign in (0, 1 << 255):
            assert not is_strong_public_key((y | sign).to_bytes(32, "little"))


@pytest.mark.parametrize("item", cases("addresses.json", "from_public_key"), ids=by_case)
def test_address_of_public_key(item: dict[str, Any]) -> None:
    public_key = bytes.fromhex(item["public_key"])
    assert sha256(public_key).hex() == item["sha256_public_key"]
    assert item["sha256_public_key"][:40] == item["payload"]
    assert item["versioned_payload"] == "38" + item["payload"]
    assert sha256d(bytes.fromhex(item["versioned_payload"]))[:4].hex() == item["checksum"]
    address = item["address"]
    assert address_from_public_key(public_key) == address
    assert len(address) == 34
    assert address.startswith("P")
    assert decode_address(address).hex() == item["payload"]


def test_address_of_payload() -> None:
    data = load("addresses.json")
    assert data["version"] == 0x38
    for item in data["from_payload"]:
        payload = bytes.fromhex(item["payload"])
        assert address_from_payload(payload) == item["address"]
        assert decode_address(item["address"]) == payload
    assert data["from_payload"][-1]["address"] == genesis_reward_address(GENESIS_MESSAGE)


@pytest.mark.parametrize("item", cases("addresses.json", "invalid"), ids=by_case)
def test_rejected_address(item: dict[str, Any]) -> None:
    assert item["reason"] == Reason.BAD_ADDRESS
    assert not is_address(item["address"])
    with pytest.raises(AddressError) as info:
        decode_address(item["address"])
    assert info.value.reason == Reason.BAD_ADDRESS
    assert info.value.message == item["message"]


# -- transactions ------------------------------------------------------------------------------


def hand_built_body(fields: dict[str, Any]) -> bytes:
    """The body layout of docs/protocol.md §4, written out with struct instead of pybtc."""

    def var(raw: bytes) -> bytes:
        return bytes([len(raw)]) + raw

    return (
        var(fields["sender"].encode())
        + var(fields["recipient"].encode())
        + struct.pack(
            ">QQQQ", fields["amount"], fields["fee"], fields["nonce"], fields["timestamp"]
        )
        + var(bytes.fromhex(fields["public_key"]))
    )


@pytest.mark.parametrize("item", cases("transactions.json", "transactions"), ids=by_case)
def test_transaction_bytes_signature_and_txid(item: dict[str, Any]) -> None:
    tx = Transaction(**item["fields"])
    body = tx.body_bytes()
    assert body.hex() == item["body"]
    assert body == hand_built_body(item["fields"])
    for network_id, message in item["signing_messages"].items():
        assert tx.signing_message(network_id).hex() == message
        assert bytes.fromhex(message) == bytes([len(network_id)]) + network_id.encode() + body
    assert tx.signature == item["signature"]
    if item["signer_seed"] is not None:
        signer = PrivateKey.from_hex(item["signer_seed"])
        assert tx.public_key == signer.public_key.hex()
        message = tx.signing_message(item["signed_for"])
        assert signer.sign(message).hex() == item["signature"]
    for network_id, valid in item["signature_valid"].items():
        signed = verify_signature(
            bytes.fromhex(tx.public_key),
            bytes.fromhex(tx.signature),
            tx.signing_message(network_id),
        )
        assert signed is valid
        assert valid is (network_id == item["signed_for"])
    encoded = tx.encode()
    assert encoded.hex() == item["encoded"]
    assert encoded == body + bytes([len(tx.signature) // 2]) + bytes.fromhex(tx.signature)
    assert tx.txid == item["txid"] == sha256d(encoded).hex()
    assert tx.to_dict() == item["json"]
    assert Transaction.from_dict(item["json"]) == tx
    assert tx.is_coinbase is (item["fields"]["sender"] == "0")


@pytest.mark.parametrize("item", cases("transactions.json", "rejections"), ids=by_case)
def test_transaction_rejection(item: dict[str, Any]) -> None:
    if item["level"] == "decode":
        with pytest.raises(ValidationError) as info:
            Transaction.from_dict(item["json"])
    else:
        tx = Transaction.from_dict(item["json"])
        params = params_named(item["network"])
        if item["level"] == "transaction":
            with pytest.raises(ValidationError) as info:
                validate_transaction(tx, params)
        else:
            assert item["level"] == "state"
            validate_transaction(tx, params)
            account = Account(**item["account"])
            if item["reason"] is None:
                validate_transaction_state(tx, account)
                return
            with pytest.raises(ValidationError) as info:
                validate_transaction_state(tx, account)
    assert info.value.reason == item["reason"]
    assert info.value.message == item["message"]


# -- Merkle tree and blocks --------------------------------------------------------------------


@pytest.mark.parametrize("item", cases("merkle.json", "cases"), ids=lambda c: f"{len(c['txids'])}")
def test_merkle_root(item: dict[str, Any]) -> None:
    txids = item["txids"]
    assert merkle_root(txids) == item["root"]
    levels = item["levels"]
    assert levels[0] == [sha256d(b"\x00" + bytes.fromhex(t)).hex() for t in txids]
    for below, above in itertools.pairwise(levels):
        nodes = [bytes.fromhex(n) for n in below]
        expected = [
            sha256d(b"\x01" + a + b).hex() for a, b in zip(nodes[::2], nodes[1::2], strict=False)
        ]
        if len(nodes) % 2:
            expected.append(below[-1])
        assert above == expected
    assert levels[-1] == [item["root"]]


@pytest.mark.parametrize("item", cases("blocks.json", "headers"), ids=by_case)
def test_header_bytes_and_hash(item: dict[str, Any]) -> None:
    f = item["fields"]
    header = BlockHeader(
        index=int(f["index"]),
        timestamp=int(f["timestamp"]),
        previous_hash=f["previous_hash"],
        merkle_root=f["merkle_root"],
        bits=f["bits"],
        nonce=int(f["nonce"]),
    )
    raw = header.encode()
    assert len(raw) == HEADER_SIZE == 92
    assert raw.hex() == item["header"]
    assert raw == struct.pack(
        ">QQ32s32sIQ",
        header.index,
        header.timestamp,
        bytes.fromhex(header.previous_hash),
        bytes.fromhex(header.merkle_root),
        header.bits,
        header.nonce,
    )
    assert header.prefix_bytes().hex() == item["prefix"] == item["header"][: 2 * NONCE_OFFSET]
    assert raw[NONCE_OFFSET:] == struct.pack(">Q", header.nonce)
    assert header.hash == item["hash"] == sha256d(raw).hex()
    assert f"{header.bits:#010x}" == item["bits_hex"]
    target = bits_to_target(header.bits)
    assert f"{target:064x}" == item["target"]
    assert hash_meets_target(bytes.fromhex(header.hash), target) is item["meets_target"]
    assert (int(item["hash"], 16) <= target) is item["meets_target"]
    assert str(block_work(header.bits)) == item["work"]
    assert BlockHeader.from_dict(header.to_dict()) == header


def test_regtest_chain_blocks_state_and_undo() -> None:
    data = load("blocks.json")
    chain = MemoryChain(REGTEST)
    state: dict[str, Account] = {}
    state.update(connect_block(REGTEST.genesis, lambda a: state.get(a, Account()), REGTEST)[0])
    for step in data["chain"]:
        block = Block.from_dict(step["block"])
        assert block.to_dict() == step["block"]
        assert block.header.encode().hex() == step["header"]
        result = chain.add_block(block, data["chain_validated_at"])
        assert result.is_tip
        assert str(chain.chain_work) == step["chain_work"]
        changed, undo = connect_block(block, lambda a: state.get(a, Account()), REGTEST)
        assert undo.to_dict() == step["undo"]
        state.update(changed)
        after = {a: {"balance": s.balance, "nonce": s.nonce} for a, s in state.items()}
        assert after == step["accounts_after"]
        assert {a: chain.account(a) for a in state} == state


@pytest.mark.parametrize("item", cases("blocks.json", "undo_rejections"), ids=by_case)
def test_rejected_undo_record(item: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        BlockUndo.from_dict(item["json"])
    assert info.value.reason == item["reason"]
    assert info.value.message == item["message"]


# -- proof of work and difficulty --------------------------------------------------------------


@pytest.mark.parametrize("item", cases("pow.json", "bits"), ids=lambda c: c["bits_hex"])
def test_bits_target_and_work(item: dict[str, Any]) -> None:
    target = bits_to_target(item["bits"])
    assert f"{target:064x}" == item["target"]
    assert target_to_bits(target) == item["bits"]
    assert str(block_work(item["bits"])) == item["work"] == str(2**256 // (target + 1))
    exponent, mantissa = item["bits"] >> 24, item["bits"] & 0xFFFFFF
    assert target == (
        mantissa * 256 ** (exponent - 3) if exponent >= 3 else mantissa >> (8 * (3 - exponent))
    )


@pytest.mark.parametrize("item", cases("pow.json", "rejected_bits"), ids=lambda c: c["bits_hex"])
def test_rejected_bits(item: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        bits_to_target(item["bits"])
    assert info.value.reason == item["reason"] == Reason.BAD_BITS
    assert info.value.message == item["message"]


def test_target_to_bits_rounds_down() -> None:
    for item in cases("pow.json", "target_to_bits"):
        target = int(item["target"], 16)
        assert target_to_bits(target) == item["bits"]
        decoded = bits_to_target(item["bits"])
        assert f"{decoded:064x}" == item["decoded_target"]
        assert decoded <= target


def test_hash_comparison_and_cumulative_work() -> None:
    for item in cases("pow.json", "hash_meets_target"):
        target = bits_to_target(item["bits"])
        assert f"{target:064x}" == item["target"]
        assert hash_meets_target(bytes.fromhex(item["hash"]), target) is item["meets"]
    work = load("pow.json")["cumulative_work"]
    assert [str(block_work(b)) for b in work["bits"]] == work["work"]
    assert str(sum(block_work(b) for b in work["bits"])) == work["total"]


@pytest.mark.parametrize("item", cases("difficulty.json", "retarget"), ids=by_case)
def test_retarget(item: dict[str, Any]) -> None:
    params = params_named(item["network"])
    assert params.target_timespan == item["expected_timespan"]
    new_bits = retarget_bits(item["old_bits"], item["actual_timespan"], params)
    assert new_bits == item["new_bits"]
    assert f"{new_bits:#010x}" == item["new_bits_hex"]
    assert f"{bits_to_target(new_bits):064x}" == item["new_target"]
    scaled = int(item["scaled_target"], 16)
    assert item["capped"] is (scaled > params.pow_limit)
    assert new_bits == target_to_bits(max(1, min(scaled, params.pow_limit)))


def test_retarget_heights_and_window() -> None:
    data = load("difficulty.json")
    for name, heights in data["retarget_heights"].items():
        for height, expected in heights.items():
            assert is_retarget_height(int(height), NETWORKS[name]) is expected
    for window in data["retarget_windows"]:
        params = NETWORKS["devnet"]
        assert is_retarget_height(window["height"], params)
        assert window["first_height"] == window["height"] - params.retarget_interval
    nb = data["next_bits"]
    params = NETWORKS[nb["network"]]
    headers = {
        h: BlockHeader(h, t, "00" * 32, "00" * 32, nb["bits"], 0)
        for h, t in enumerate(nb["timestamps"], start=1)
    }
    parent = headers[nb["height"] - 1]
    assert next_bits(parent, headers.__getitem__, params) == nb["new_bits"]
    assert retarget_bits(nb["bits"], nb["actual_timespan"], params) == nb["new_bits"]


def test_median_time_past() -> None:
    data = load("difficulty.json")
    for item in data["median_time_past"]:
        assert median_time_past(item["timestamps"]) == item["median"]
        assert item["median"] == sorted(item["timestamps"])[len(item["timestamps"]) // 2]
    for item in data["median_time_past_window"]:
        parent_height = item["parent_height"]
        headers = {
            h: BlockHeader(h, GENESIS_TIME + h, "00" * 32, "00" * 32, REGTEST.pow_limit_bits, 0)
            for h in range(1, parent_height + 1)
        }
        stamps = ancestor_timestamps(headers[parent_height], headers.__getitem__, REGTEST)
        assert [t - GENESIS_TIME for t in stamps] == item["heights"]


# -- money and networks ------------------------------------------------------------------------


def test_subsidy_and_supply() -> None:
    for name, data in load("subsidy.json")["networks"].items():
        params = NETWORKS[name]
        assert params.halving_interval == data["halving_interval"]
        for item in data["subsidy"]:
            assert params.subsidy(item["height"]) == item["subsidy"]
        for item in data["total_supply"]:
            assert params.total_supply(item["height"]) == item["total"]
            assert item["total"] <= MAX_MONEY
    for item in load("subsidy.json")["subsidy_rejected_heights"]:
        for params in NETWORKS.values():
            with pytest.raises(ValueError, match=re.escape(item["error"])):
                params.subsidy(item["height"])


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_parameters_and_genesis(name: str) -> None:
    data = load("params.json")
    item, params = data["networks"][name], NETWORKS[name]
    simple = {f.name for f in dataclasses.fields(ChainParams)} - {"genesis"}
    assert simple <= set(item), "params.json must list every ChainParams field"
    for field in simple:
        assert getattr(params, field) == item[field], field
    assert f"{params.pow_limit:064x}" == item["pow_limit"]
    assert params.target_timespan == item["target_timespan"]
    genesis = params.genesis
    assert genesis.hash == item["genesis"]["hash"]
    assert genesis.header.encode().hex() == item["genesis"]["header"]
    assert genesis.transactions[0].txid == item["genesis"]["coinbase_txid"]
    assert str(block_work(genesis.header.bits)) == item["genesis"]["work"]
    assert genesis.to_dict() == item["genesis"]["block"]
    assert Block.from_dict(item["genesis"]["block"]) == genesis
    assert data["genesis_time"] == GENESIS_TIME == genesis.timestamp
    assert data["genesis_message"] == GENESIS_MESSAGE
    payload = sha256(GENESIS_MESSAGE.encode())[:20]
    assert data["genesis_reward_payload"] == payload.hex()
    assert genesis.transactions[0].recipient == address_from_payload(payload)
