"""Vectors of the wallet file: wallet_file.json (docs/wallet.md, "The wallet file").

Fixed seeds, passphrases, salts and nonces go in; the whole file comes out, with the derived
AES key and the associated data beside it so a second implementation (the browser wallet's
WebCrypto code) can find which step differs. Then files every reader must refuse, each made by
editing one field of a good file, with the stage at which pyBTC refuses it.

The key derivation runs 600,000 iterations for most cases, so the result is computed once per
process and reused (`tests.vectors.generate.build` is called more than once by the tests).
"""

from __future__ import annotations

import copy
import json
import unicodedata
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pybtc import PrivateKey
from pybtc.encoding import sha256
from services.wallet.keyfile import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    KeyFileError,
    associated_data,
    decrypt_key,
    derive_key,
    encrypt_key,
)
from tests.vectors.common import KEYS


def fixed_bytes(label: str, size: int) -> bytes:
    """`size` bytes that look random but are fixed: sha256(label)[:size]."""
    return sha256(label.encode())[:size]


# (case, key number, passphrase, network, iterations)
CASES = (
    ("devnet, ASCII passphrase", 1, "correct horse battery staple", "devnet", DEFAULT_ITERATIONS),
    ("regtest, non-ASCII passphrase", 2, "correct horse \u2603 battery", "regtest", 600_000),
    (
        "devnet, fewest iterations a reader accepts",
        3,
        "p\u00e4ssw\u00f6rd \U0001f511",
        "devnet",
        100_000,
    ),
)


def good_case(case: str, key_number: int, passphrase: str, network: str, iterations: int) -> Any:
    """One file with every intermediate value."""
    key = KEYS[key_number]
    salt = fixed_bytes(f"pybtc wallet vector salt {key_number}", 16)
    nonce = fixed_bytes(f"pybtc wallet vector nonce {key_number}", 12)
    doc = encrypt_key(key, passphrase, network, iterations=iterations, salt=salt, nonce=nonce)
    return {
        "case": case,
        "seed": key.seed.hex(),
        "seed_text": f"pybtc vector key {key_number}",
        "passphrase": passphrase,
        "passphrase_utf8": passphrase.encode().hex(),
        "network": network,
        "iterations": iterations,
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "derived_key": derive_key(passphrase, salt, iterations).hex(),
        "associated_data": associated_data(network, key.address, key.public_key.hex()).decode(),
        "file": doc,
    }


def refusals(base: dict[str, Any], other: PrivateKey) -> list[dict[str, Any]]:
    """Files made from `base` (a good case) that must not open."""
    good = base["file"]
    passphrase = base["passphrase"]

    def edited(change: Any) -> dict[str, Any]:
        doc = copy.deepcopy(good)
        change(doc)
        return doc

    def flip(text: str, at: int) -> str:
        """`text` with the hex digit at `at` changed (one bit flipped)."""
        at %= len(text)
        return text[:at] + f"{int(text[at], 16) ^ 1:x}" + text[at + 1 :]

    items: list[tuple[str, str, dict[str, Any], str]] = [
        ("wrong passphrase", "correct horse battery staple", good, "decrypt"),
        (
            "the same passphrase in Unicode NFD (passphrases are not normalized)",
            unicodedata.normalize("NFD", passphrase),
            good,
            "decrypt",
        ),
        ("network edited", passphrase, edited(lambda d: d.update(network="regtest")), "decrypt"),
        (
            "address and public key both replaced by another key's",
            passphrase,
            edited(lambda d: d.update(address=other.address, public_key=other.public_key.hex())),
            "decrypt",
        ),
        (
            "one ciphertext byte edited",
            passphrase,
            edited(lambda d: d.update(ciphertext=flip(d["ciphertext"], 0))),
            "decrypt",
        ),
        (
            "the tag's last byte edited",
            passphrase,
            edited(lambda d: d.update(ciphertext=flip(d["ciphertext"], -1))),
            "decrypt",
        ),
        (
            "salt edited",
            passphrase,
            edited(lambda d: d["kdf"].update(salt=flip(d["kdf"]["salt"], -1))),
            "decrypt",
        ),
        (
            "nonce edited",
            passphrase,
            edited(lambda d: d["cipher"].update(nonce=flip(d["cipher"]["nonce"], -1))),
            "decrypt",
        ),
        (
            "iterations edited",
            passphrase,
            edited(lambda d: d["kdf"].update(iterations=d["kdf"]["iterations"] + 1)),
            "decrypt",
        ),
        (
            "address edited (no longer the public key's)",
            passphrase,
            edited(lambda d: d.update(address=other.address)),
            "parse",
        ),
        (
            "iterations below the minimum",
            passphrase,
            edited(lambda d: d["kdf"].update(iterations=MIN_ITERATIONS - 1)),
            "parse",
        ),
        (
            "iterations above the maximum",
            passphrase,
            edited(lambda d: d["kdf"].update(iterations=MAX_ITERATIONS + 1)),
            "parse",
        ),
        ("version 2", passphrase, edited(lambda d: d.update(version=2)), "parse"),
        (
            "uppercase hex",
            passphrase,
            edited(lambda d: d["kdf"].update(salt=d["kdf"]["salt"].upper())),
            "parse",
        ),
        ("an unknown field", passphrase, edited(lambda d: d.update(label="savings")), "parse"),
        (
            "secret of another key under this file's public key and address",
            passphrase,
            _sealed_with_seed(good, passphrase, other.seed),
            "check",
        ),
    ]
    out = []
    for case, text, doc, stage in items:
        try:
            decrypt_key(doc, text)
        except KeyFileError as exc:
            error = exc.message
        else:  # pragma: no cover - every item above is refused
            raise AssertionError(case)
        out.append({"case": case, "passphrase": text, "file": doc, "stage": stage, "error": error})
    return out


def _sealed_with_seed(good: dict[str, Any], passphrase: str, seed: bytes) -> dict[str, Any]:
    """`good` with `seed` encrypted properly in it: only the after-decryption check finds it."""
    doc = copy.deepcopy(good)
    aes = AESGCM(
        derive_key(passphrase, bytes.fromhex(doc["kdf"]["salt"]), doc["kdf"]["iterations"])
    )
    aad = associated_data(doc["network"], doc["address"], doc["public_key"])
    doc["ciphertext"] = aes.encrypt(bytes.fromhex(doc["cipher"]["nonce"]), seed, aad).hex()
    return doc


@cache
def _wallet_file_text() -> str:
    cases = [good_case(*case) for case in CASES]
    data = {
        "description": "The wallet file, format 1 (docs/wallet.md). derived_key = "
        "PBKDF2-HMAC-SHA256(passphrase_utf8, salt, iterations, 32 bytes); file.ciphertext = "
        "AES-256-GCM(derived_key, nonce, seed, associated_data as UTF-8): 32 encrypted bytes "
        "then the 16-byte tag. Passphrases are used as typed (UTF-8, no Unicode "
        "normalization). 'refusals' are files a reader must not open: stage 'parse' is refused "
        "before any key is derived, 'decrypt' fails the AES-GCM tag, 'check' decrypts but the "
        "seed's public key is not the file's. 'error' is pyBTC's wording.",
        "format": {
            "format": "pybtc-wallet",
            "version": 1,
            "kdf": "PBKDF2-HMAC-SHA256",
            "cipher": "AES-256-GCM",
            "write_iterations": DEFAULT_ITERATIONS,
            "read_iterations_min": MIN_ITERATIONS,
            "read_iterations_max": MAX_ITERATIONS,
            "salt_bytes": 16,
            "nonce_bytes": 12,
            "associated_data": "pybtc-wallet:1:<network>:<address>:<public_key>",
        },
        "cases": cases,
        "refusals": refusals(cases[-1], KEYS[1]),
    }
    return json.dumps(data)


def wallet_file_vectors() -> dict[str, Any]:
    """Good wallet files with their inputs and intermediate values, and files to refuse."""
    result: dict[str, Any] = json.loads(_wallet_file_text())
    return result
