"""The wallet file (services/wallet/keyfile.py) against docs/wallet.md and its vectors.

The vectors are checked independently of the code under test (hashlib's PBKDF2 and a bare
AES-GCM), then through `encrypt_key` / `decrypt_key`. Every refusal is checked by its message.
PBKDF2 at 600,000 iterations takes about 0.4 s, so only the round trip and the vectors use
it; everything else runs at the 100,000 a reader must accept, and the checks that must come
before any key is derived run with the derivation replaced by a tripwire.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pybtc import PrivateKey
from services.wallet import keyfile
from services.wallet.keyfile import (
    CANNOT_OPEN,
    KeyFileError,
    associated_data,
    decrypt_key,
    derive_key,
    encrypt_key,
    parse_key_file,
    read_key_file,
    write_key_file,
)
from tests.chainutil import test_key

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "wallet_file.json").read_text(encoding="utf-8")
)
KEY, OTHER = test_key(1), test_key(2)
PASSPHRASE = "correct horse \u2603 battery"
FAST = 100_000


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    """A regtest wallet file at 100,000 iterations with a fixed salt and nonce (made once)."""
    return encrypt_key(
        KEY, PASSPHRASE, "regtest", iterations=FAST, salt=bytes(range(16)), nonce=bytes(12)
    )


def tripwire(*args: object) -> bytes:
    raise AssertionError("derive_key ran, but the file should be refused before it")


@pytest.fixture
def no_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a key is derived: these refusals must come before the slow part."""
    monkeypatch.setattr(keyfile, "derive_key", tripwire)


def edited(doc: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    copied = copy.deepcopy(doc)
    change(copied)
    return copied


def flip(text: str, at: int) -> str:
    """`text` with the hex digit at `at` changed."""
    at %= len(text)
    return text[:at] + f"{int(text[at], 16) ^ 1:x}" + text[at + 1 :]


def refused(doc: object, passphrase: str = PASSPHRASE, **kwargs: Any) -> str:
    with pytest.raises(KeyFileError) as info:
        decrypt_key(doc, passphrase, **kwargs)
    assert str(info.value) == info.value.message
    return info.value.message


# -- writing and reading back ----------------------------------------------------------------


def test_round_trip_with_the_default_iterations() -> None:
    doc = encrypt_key(KEY, PASSPHRASE, "devnet")
    assert doc["kdf"]["iterations"] == 600_000
    assert set(doc) == {
        "format",
        "version",
        "network",
        "address",
        "public_key",
        "kdf",
        "cipher",
        "ciphertext",
    }
    assert (doc["format"], doc["version"], doc["network"]) == ("pybtc-wallet", 1, "devnet")
    assert doc["address"] == KEY.address
    assert doc["public_key"] == KEY.public_key.hex()
    assert doc["kdf"]["name"] == "PBKDF2-HMAC-SHA256"
    assert doc["cipher"]["name"] == "AES-256-GCM"
    assert len(doc["kdf"]["salt"]) == 32
    assert len(doc["cipher"]["nonce"]) == 24
    assert len(doc["ciphertext"]) == 96
    assert KEY.seed.hex() not in json.dumps(doc)
    assert decrypt_key(json.loads(json.dumps(doc)), PASSPHRASE, network="devnet") == KEY


def test_fresh_salt_and_nonce_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyfile, "derive_key", lambda *a: bytes(32))  # only randomness matters
    first = encrypt_key(KEY, PASSPHRASE, "devnet", iterations=FAST)
    second = encrypt_key(KEY, PASSPHRASE, "devnet", iterations=FAST)
    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["cipher"]["nonce"] != second["cipher"]["nonce"]


def test_non_ascii_passphrase_is_used_as_typed(sample: dict[str, Any]) -> None:
    assert decrypt_key(sample, PASSPHRASE) == KEY
    umlauts = "p\u00e4ssw\u00f6rd"
    doc = encrypt_key(OTHER, umlauts, "devnet", iterations=FAST)
    assert decrypt_key(doc, umlauts) == OTHER
    decomposed = unicodedata.normalize("NFD", umlauts)
    assert decomposed != umlauts
    assert refused(doc, decomposed) == CANNOT_OPEN


def test_a_passphrase_that_is_not_text_is_refused(sample: dict[str, Any]) -> None:
    assert "not valid text" in refused(sample, "broken \udc80 surrogate")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"passphrase": ""}, "the passphrase is empty"),
        ({"network": "mainnet"}, "unknown network 'mainnet'"),
        ({"iterations": 99_999}, "iterations must be 100000 to 10000000"),
        ({"iterations": 10_000_001}, "iterations must be 100000 to 10000000"),
        ({"salt": bytes(15)}, "the salt is 16 bytes and the nonce 12"),
        ({"nonce": bytes(16)}, "the salt is 16 bytes and the nonce 12"),
    ],
)
def test_encrypt_refuses_bad_arguments(no_kdf: None, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"passphrase": PASSPHRASE, "network": "devnet"} | kwargs
    with pytest.raises(KeyFileError, match=message):
        encrypt_key(KEY, args.pop("passphrase"), args.pop("network"), **args)


# -- the vectors -----------------------------------------------------------------------------


def test_vector_format_block_matches_the_module() -> None:
    fmt = VECTORS["format"]
    assert fmt["format"] == keyfile.FORMAT
    assert fmt["version"] == keyfile.VERSION
    assert fmt["kdf"] == keyfile.KDF_NAME
    assert fmt["cipher"] == keyfile.CIPHER_NAME
    assert fmt["write_iterations"] == keyfile.DEFAULT_ITERATIONS == 600_000
    assert (fmt["read_iterations_min"], fmt["read_iterations_max"]) == (100_000, 10_000_000)
    assert {c["iterations"] for c in VECTORS["cases"]} == {600_000, 100_000}
    assert any(not c["passphrase"].isascii() for c in VECTORS["cases"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["case"])
def test_vector_file_from_its_inputs(case: dict[str, Any]) -> None:
    seed, salt, nonce = (bytes.fromhex(case[k]) for k in ("seed", "salt", "nonce"))
    key = PrivateKey(seed)
    doc = case["file"]
    assert case["passphrase"].encode("utf-8").hex() == case["passphrase_utf8"]
    # Independently of keyfile: hashlib's PBKDF2, then AES-GCM over the documented string.
    derived = hashlib.pbkdf2_hmac(
        "sha256", bytes.fromhex(case["passphrase_utf8"]), salt, case["iterations"], 32
    )
    assert derived.hex() == case["derived_key"]
    aad = f"pybtc-wallet:1:{case['network']}:{key.address}:{key.public_key.hex()}"
    assert case["associated_data"] == aad
    assert AESGCM(derived).encrypt(nonce, seed, aad.encode()).hex() == doc["ciphertext"]
    assert doc == {
        "format": "pybtc-wallet",
        "version": 1,
        "network": case["network"],
        "address": key.address,
        "public_key": key.public_key.hex(),
        "kdf": {"name": "PBKDF2-HMAC-SHA256", "iterations": case["iterations"], "salt": salt.hex()},
        "cipher": {"name": "AES-256-GCM", "nonce": nonce.hex()},
        "ciphertext": doc["ciphertext"],
    }
    # Through keyfile: the reader opens it (and the writer, at the cheap count, writes it).
    assert decrypt_key(doc, case["passphrase"], network=case["network"]) == key
    assert associated_data(case["network"], key.address, key.public_key.hex()) == aad.encode()
    if case["iterations"] == FAST:
        written = encrypt_key(
            key,
            case["passphrase"],
            case["network"],
            iterations=case["iterations"],
            salt=salt,
            nonce=nonce,
        )
        assert written == doc
        assert derive_key(case["passphrase"], salt, case["iterations"]) == derived


@pytest.mark.parametrize("item", VECTORS["refusals"], ids=lambda c: c["case"])
def test_vector_refusal(item: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    if item["stage"] == "parse":
        monkeypatch.setattr(keyfile, "derive_key", tripwire)
    else:
        parse_key_file(item["file"])  # well formed: only the passphrase can tell
    assert refused(item["file"], item["passphrase"]) == item["error"]
    if item["stage"] == "decrypt":
        assert item["error"] == CANNOT_OPEN


# -- refusals --------------------------------------------------------------------------------


def test_wrong_passphrase(sample: dict[str, Any]) -> None:
    assert refused(sample, "correct horse battery") == CANNOT_OPEN
    assert refused(sample, PASSPHRASE + " ") == CANNOT_OPEN
    assert refused(sample, "") == CANNOT_OPEN


EDITS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("network", lambda d: d.update(network="devnet"), CANNOT_OPEN),
    (
        "address",
        lambda d: d.update(address=OTHER.address),
        "the file's address is not the address of its public key",
    ),
    (
        "public_key",
        lambda d: d.update(public_key=OTHER.public_key.hex()),
        "the file's address is not the address of its public key",
    ),
    (
        "address and public_key",
        lambda d: d.update(address=OTHER.address, public_key=OTHER.public_key.hex()),
        CANNOT_OPEN,
    ),
    ("ciphertext", lambda d: d.update(ciphertext=flip(d["ciphertext"], 5)), CANNOT_OPEN),
    ("tag", lambda d: d.update(ciphertext=flip(d["ciphertext"], -1)), CANNOT_OPEN),
    ("salt", lambda d: d["kdf"].update(salt=flip(d["kdf"]["salt"], 0)), CANNOT_OPEN),
    ("nonce", lambda d: d["cipher"].update(nonce=flip(d["cipher"]["nonce"], 3)), CANNOT_OPEN),
    ("iterations", lambda d: d["kdf"].update(iterations=FAST + 1), CANNOT_OPEN),
]


@pytest.mark.parametrize(("change", "message"), [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_each_edited_field_is_refused(
    sample: dict[str, Any], change: Callable[[dict[str, Any]], object], message: str
) -> None:
    assert refused(edited(sample, change)) == message


def test_a_secret_that_is_not_the_files_key_is_refused(sample: dict[str, Any]) -> None:
    """Well sealed under the file's own associated data, so only the after-check finds it."""
    doc = copy.deepcopy(sample)
    aes = AESGCM(derive_key(PASSPHRASE, bytes(range(16)), FAST))
    aad = associated_data(doc["network"], doc["address"], doc["public_key"])
    doc["ciphertext"] = aes.encrypt(bytes(12), OTHER.seed, aad).hex()
    assert refused(doc) == "the file's public key is not the key of the secret inside it"


@pytest.mark.parametrize("iterations", [0, -1, 1, 99_999, 10_000_001, 10**12, 2**64])
def test_iterations_out_of_range_refused_without_deriving(
    sample: dict[str, Any], no_kdf: None, iterations: int
) -> None:
    doc = edited(sample, lambda d: d["kdf"].update(iterations=iterations))
    message = refused(doc)
    assert message.startswith("kdf iterations must be a whole number from 100,000 to 10,000,000")
    assert str(iterations) in message


def test_the_network_asked_for_must_be_the_files(sample: dict[str, Any], no_kdf: None) -> None:
    assert refused(sample, network="devnet") == "this wallet file is for regtest, not devnet"


BAD_SHAPES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("format", lambda d: d.update(format="bitcoin-wallet"), "not a pyBTC wallet file"),
    ("version 2", lambda d: d.update(version=2), "version 2 is not one this pyBTC reads"),
    ("version as text", lambda d: d.update(version="1"), "version '1' is not one"),
    ("version true", lambda d: d.update(version=True), "version True is not one"),
    ("unknown network", lambda d: d.update(network="mainnet"), "network 'mainnet' is unknown"),
    ("network not text", lambda d: d.update(network=["regtest"]), "network ['regtest'] is"),
    ("address not text", lambda d: d.update(address=7), "address is not valid: an address must"),
    (
        "address mistyped",
        lambda d: d.update(address=d["address"][:-1] + ("a" if d["address"][-1] != "a" else "b")),
        "the file's address is not valid: address checksum does not match",
    ),
    ("short public key", lambda d: d.update(public_key="ab" * 31), "public_key must be 64"),
    ("public key not text", lambda d: d.update(public_key=None), "public_key must be 64"),
    ("uppercase hex", lambda d: d.update(ciphertext=d["ciphertext"].upper()), "lowercase hex"),
    ("short ciphertext", lambda d: d.update(ciphertext=d["ciphertext"][:-2]), "must be 96"),
    ("short salt", lambda d: d["kdf"].update(salt="00" * 15), "kdf salt must be 32"),
    ("long nonce", lambda d: d["cipher"].update(nonce="00" * 13), "cipher nonce must be 24"),
    ("hex with spaces", lambda d: d["cipher"].update(nonce=" " + "0" * 23), "must be 24"),
    ("kdf name", lambda d: d["kdf"].update(name="scrypt"), "unsupported key derivation 'scrypt'"),
    ("cipher name", lambda d: d["cipher"].update(name="AES-128-GCM"), "unsupported cipher"),
    ("iterations as text", lambda d: d["kdf"].update(iterations="600000"), "whole number"),
    ("iterations float", lambda d: d["kdf"].update(iterations=600000.0), "whole number"),
    ("iterations true", lambda d: d["kdf"].update(iterations=True), "whole number"),
    ("kdf not an object", lambda d: d.update(kdf="PBKDF2"), '"kdf" must be a JSON object'),
    ("cipher not an object", lambda d: d.update(cipher=[]), '"cipher" must be a JSON object'),
    ("unknown field", lambda d: d.update(label="savings"), "unknown fields 'label'"),
    ("unknown kdf field", lambda d: d["kdf"].update(hash="sha512"), '"kdf" has unknown fields'),
    ("unknown cipher field", lambda d: d["cipher"].update(tag="00"), '"cipher" has unknown'),
    ("missing field", lambda d: d.pop("ciphertext"), "has no 'ciphertext'"),
    ("missing salt", lambda d: d["kdf"].pop("salt"), "\"kdf\" has no 'salt'"),
    ("missing nonce", lambda d: d["cipher"].pop("nonce"), "\"cipher\" has no 'nonce'"),
]


@pytest.mark.parametrize(
    ("change", "message"), [b[1:] for b in BAD_SHAPES], ids=[b[0] for b in BAD_SHAPES]
)
def test_bad_shapes_refused_before_deriving(
    sample: dict[str, Any], no_kdf: None, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    assert message in refused(edited(sample, change))


@pytest.mark.parametrize("doc", [None, [], "{}", 1, {}], ids=repr)
def test_not_a_wallet_object(no_kdf: None, doc: object) -> None:
    message = refused(doc)
    assert message == "the wallet file must be a JSON object" or "has no 'format'" in message


# -- the disk --------------------------------------------------------------------------------


def test_written_file_is_private_and_never_replaced(tmp_path: Path, sample: dict[str, Any]) -> None:
    path = tmp_path / "wallet.json"
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        write_key_file(path, sample)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == sample
    assert [p.name for p in tmp_path.iterdir()] == ["wallet.json"]  # no temporary file left
    text = path.read_text()
    other = edited(sample, lambda d: d.update(network="devnet"))
    with pytest.raises(KeyFileError, match="exists already; not overwriting a wallet file"):
        write_key_file(path, other)
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["wallet.json"]


def test_write_into_a_missing_directory(tmp_path: Path, sample: dict[str, Any]) -> None:
    with pytest.raises(KeyFileError, match=r"cannot write .*: No such file or directory"):
        write_key_file(tmp_path / "absent" / "wallet.json", sample)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"format": 1, "format": 2}', "the field 'format' appears twice"),
        (b" " * (64 * 1024) + b"{}", "larger than 64 KiB"),
    ],
    ids=["empty", "garbage", "not UTF-8", "array", "duplicate key", "too large"],
)
def test_read_refuses_what_is_not_a_wallet_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "wallet.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message):
        read_key_file(path)


def test_read_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no wallet file at"):
        read_key_file(tmp_path / "nothing.json")
