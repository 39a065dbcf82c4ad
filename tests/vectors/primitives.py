"""Vectors of the building blocks: encoding.json, keys.json and addresses.json.

docs/protocol.md sections 2 and 3 describe what these values are.
"""

from __future__ import annotations

from functools import partial
from hashlib import sha512
from typing import Any

from pybtc import COIN, MAX_MONEY, PrivateKey
from pybtc.encoding import (
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
    ADDRESS_VERSION,
    B58_ALPHABET,
    address_from_payload,
    b58encode,
    decode_address,
    is_strong_public_key,
    verify_signature,
)
from pybtc.params import GENESIS_MESSAGE
from tests.vectors.common import (
    ED25519_L,
    ED25519_P,
    KEYS,
    T0,
    plain_rfc8032_verify,
    rejection,
)

# -- encoding.json ----------------------------------------------------------------------------


def encoding_vectors() -> dict[str, Any]:
    """Integers, length-prefixed bytes and strings, hashes, and the amount display format."""
    amounts_ok = ["1.5", "0.00000001", ".5", "21000000", " 2.25 ", "\t3\t", "0", "1."]
    amounts_bad = [
        "1.000000001",
        "-1",
        "1e3",
        "21000000.00000001",
        "abc",
        "1,5",
        "",
        ".",
        "\u0661.\u0665",  # Arabic-Indic digits: not ASCII digits
        "\uff11",  # a fullwidth digit one
        "1\n",  # only spaces and tabs are stripped
        "\u00a01",  # nor a no-break space
    ]
    bad_parse: list[dict[str, str]] = []
    for text in amounts_bad:
        try:
            parse_amount(text)
        except ValueError as exc:
            bad_parse.append({"text": text, "error": str(exc)})
        else:  # pragma: no cover - the list above holds only rejected texts
            raise AssertionError(text)
    return {
        "description": "Encoding primitives (docs/protocol.md section 2). u64 values are "
        "decimal strings. format_amount/parse_amount are the wallet display form, not consensus; "
        "parse_amount strips only spaces and tabs and accepts only ASCII digits.",
        "constants": {
            "COIN": COIN,
            "MAX_MONEY": MAX_MONEY,
            "U32_MAX": U32_MAX,
            "U64_MAX": str(U64_MAX),
        },
        "u32": [{"value": v, "hex": u32(v).hex()} for v in (0, 1, 0x12345678, U32_MAX)],
        "u64": [
            {"value": str(v), "hex": u64(v).hex()}
            for v in (0, 1, 5_000_000_000, T0, 2**53 + 1, U64_MAX)
        ],
        "var_bytes": [
            {"data": data.hex(), "hex": var_bytes(data).hex()}
            for data in (b"", b"\x00", bytes(range(32)), b"\xab" * 255)
        ],
        "var_bytes_max_length": 255,
        "var_str": [
            {"text": text, "hex": var_str(text).hex()}
            for text in ("", "0", "pybtc-regtest", "pybtc-devnet", "pyBTC ₿ 비트코인")
        ],
        "hashes": [
            {"data": data.hex(), "sha256": sha256(data).hex(), "sha256d": sha256d(data).hex()}
            for data in (b"", b"abc", b"pybtc")
        ],
        "format_amount": [
            {"units": units, "text": format_amount(units)}
            for units in (0, 1, 150_000_000, COIN, 50 * COIN + 1_000, MAX_MONEY)
        ],
        "parse_amount": [{"text": text, "units": parse_amount(text)} for text in amounts_ok],
        "parse_amount_rejected": bad_parse,
    }


# -- keys.json --------------------------------------------------------------------------------

RFC8032_TEST1_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"


def keys_vectors() -> dict[str, Any]:
    """Seeds to public keys, deterministic signatures, and what verification accepts."""
    keys = [
        {
            "seed_text": f"pybtc vector key {n}",
            "seed": key.seed.hex(),
            "public_key": key.public_key.hex(),
        }
        for n, key in KEYS.items()
    ]
    rfc = PrivateKey.from_hex(RFC8032_TEST1_SEED)
    keys.append(
        {
            "seed_text": "RFC 8032 section 7.1 TEST 1",
            "seed": RFC8032_TEST1_SEED,
            "public_key": rfc.public_key.hex(),
        }
    )
    signers = [(KEYS[1], b""), (KEYS[1], b"abc"), (KEYS[2], b"pybtc"), (rfc, b"")]
    signatures = [
        {
            "seed": key.seed.hex(),
            "public_key": key.public_key.hex(),
            "message": message.hex(),
            "signature": key.sign(message).hex(),
        }
        for key, message in signers
    ]
    return {
        "description": "Ed25519 (RFC 8032) keys and signatures (docs/protocol.md section 3). "
        "'verify' pins what verification accepts, edge cases included: valid = strong_key "
        "and plain_rfc8032, where plain_rfc8032 is OpenSSL's verdict without the strong-key "
        "rule. The weak-key forgeries pass the plain check and are refused by the rule.",
        "keys": keys,
        "signatures": signatures,
        "verify": verify_cases(),
    }


ORDER_8_Y = (
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
)
"""The two y values (32 bytes little-endian, sign bit clear) of the four points of order 8."""


def _y(value: int) -> bytes:
    """A 32-byte encoding: `value` little-endian (the sign bit is part of it when >= 2**255)."""
    return value.to_bytes(32, "little")


def _owner_signature(key: PrivateKey, r: bytes, message: bytes) -> bytes:
    """R = `r`, S = k·a mod L (k over these R bytes): only the owner, who knows a, can make it.

    [S]B - [k]A is then the neutral point. With `r` its canonical encoding (0100...00) the
    equation holds and a cofactorless verifier accepts, though libsodium refuses a small-order
    R; with a non-canonical `r` the encodings differ and nobody accepts.
    """
    digest = sha512(key.seed).digest()
    a = int.from_bytes(digest[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    k = int.from_bytes(sha512(r + key.public_key + message).digest(), "little") % ED25519_L
    return r + (k * a % ED25519_L).to_bytes(32, "little")


def _forged_message(public_key: bytes, signature: bytes) -> bytes:
    """The first message 'forged <i>' that `signature` passes under the plain RFC 8032 check."""
    tries = (f"forged {i}".encode() for i in range(256))
    return next(m for m in tries if plain_rfc8032_verify(public_key, signature, m))


def verify_cases() -> list[dict[str, Any]]:
    """Signature checks a second implementation must answer exactly as pyBTC does.

    'plain_rfc8032' is OpenSSL's verdict without the strong-key rule: the weak-key forgeries
    pass it and are refused only by the rule (`strong_key` false), so `valid` is
    `strong_key and plain_rfc8032`.
    """
    key, message = KEYS[1], b"abc"
    public, good = key.public_key, key.sign(message)
    s_plus_l = (int.from_bytes(good[32:], "little") + ED25519_L).to_bytes(32, "little")
    neutral = _y(1)  # the neutral point (order 1)
    forged = neutral + bytes(32)  # R = neutral point, S = 0: [0]B - [k]A = R when [k]A = 0
    not_matched = "the signature does not verify"
    cases: list[tuple[str, bytes, bytes, bytes, str | None]] = [
        ("a good signature", public, good, message, None),
        ("another message", public, good, b"abd", not_matched),
        ("one bit of R flipped", public, bytes([good[0] ^ 1]) + good[1:], message, not_matched),
        (
            "S + L instead of S (non-canonical S)",
            public,
            good[:32] + s_plus_l,
            message,
            "S is not below L: OpenSSL refuses a non-canonical S",
        ),
        ("another key", KEYS[2].public_key, good, message, not_matched),
        ("a 31-byte key", public[:31], good, message, "the key is not 32 bytes"),
        ("a 63-byte signature", public, good[:63], message, "the signature is not 64 bytes"),
        (
            "a key that is not a curve point (y = 2)",
            _y(2),
            forged,
            message,
            "the key is not a point: it verifies nothing",
        ),
        (
            "R = neutral point, S = k*a mod L, made by the key's owner (libsodium refuses it)",
            public,
            _owner_signature(key, neutral, message),
            message,
            None,
        ),
        (
            "R = neutral point non-canonical (y = p + 1), S = k*a mod L",
            public,
            _owner_signature(key, _y(ED25519_P + 1), message),
            message,
            "R is not the canonical encoding of [S]B - [k]A",
        ),
    ]
    weak: list[tuple[str, bytes, bytes, bytes | None]] = [
        ("neutral point key (y = 1), R = neutral, S = 0", neutral, forged, message),
        ("neutral point key, R = neutral, S = 0, another message", neutral, forged, b"pybtc"),
        ("neutral point key with the sign bit set", _y(1 + 2**255), forged, message),
        ("neutral point key, non-canonical (y = p + 1)", _y(ED25519_P + 1), forged, message),
        ("all-zero key (y = 0, order 4) and signature, message abc", bytes(32), bytes(64), b"abc"),
        ("all-zero key (y = 0, order 4) and signature, forged message", bytes(32), bytes(64), None),
        ("order-2 key (y = p - 1), R = neutral, S = 0", _y(ED25519_P - 1), forged, None),
        ("non-canonical key y = p (a second name for y = 0)", _y(ED25519_P), forged, None),
        *(
            (f"order-8 key (y = {y[:8]}...), R = neutral, S = 0", bytes.fromhex(y), forged, None)
            for y in ORDER_8_Y
        ),
    ]
    for name, pk, sig, msg in weak:  # messages None: the first that the plain check accepts
        y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
        why = "weak key: y >= p (not canonical)" if y >= ED25519_P else "weak key: small order"
        text = msg if msg is not None else _forged_message(pk, sig)
        cases.append((name, pk, sig, text, why))
    return [
        {
            "case": name,
            "public_key": pk.hex(),
            "signature": sig.hex(),
            "message": msg.hex(),
            "valid": verify_signature(pk, sig, msg),
            "strong_key": is_strong_public_key(pk),
            "plain_rfc8032": plain_rfc8032_verify(pk, sig, msg),
            "refused_because": why,
        }
        for name, pk, sig, msg, why in cases
    ]


# -- addresses.json ---------------------------------------------------------------------------


def addresses_vectors() -> dict[str, Any]:
    """Public key -> payload -> address, and mistyped addresses with their rejection."""
    valid = []
    for key in KEYS.values():
        payload = sha256(key.public_key)[:20]
        versioned = bytes([ADDRESS_VERSION]) + payload
        checksum = sha256d(versioned)[:4]
        valid.append(
            {
                "public_key": key.public_key.hex(),
                "sha256_public_key": sha256(key.public_key).hex(),
                "payload": payload.hex(),
                "versioned_payload": versioned.hex(),
                "checksum": checksum.hex(),
                "address": key.address,
            }
        )
    payloads = [bytes(20), b"\xff" * 20, sha256(GENESIS_MESSAGE.encode())[:20]]
    return {
        "description": "Addresses: Base58Check(0x38 || sha256(public_key)[:20]) "
        "(docs/protocol.md section 3). Reason codes are normative; messages are pyBTC's.",
        "version": ADDRESS_VERSION,
        "alphabet": B58_ALPHABET,
        "from_public_key": valid,
        "from_payload": [
            {"payload": p.hex(), "address": address_from_payload(p)} for p in payloads
        ],
        "invalid": invalid_addresses(valid[0]["address"], valid[0]["payload"]),
    }


def _next_char(char: str) -> str:
    """The Base58 character after `char`: a one-character typo."""
    return B58_ALPHABET[(B58_ALPHABET.index(char) + 1) % len(B58_ALPHABET)]


def invalid_addresses(good: str, payload_hex: str) -> list[dict[str, Any]]:
    """Typical typos and foreign strings, each with pyBTC's reason and message."""
    payload = bytes.fromhex(payload_hex)
    other_version = bytes([0x37]) + payload
    cases: list[tuple[str, object]] = [
        ("last character changed", good[:-1] + _next_char(good[-1])),
        ("a middle character changed", good[:10] + _next_char(good[10]) + good[11:]),
        ("two neighbours swapped", good[:5] + good[6] + good[5] + good[7:]),
        ("digit zero", good[:4] + "0" + good[5:]),
        ("capital O", good[:4] + "O" + good[5:]),
        ("capital I", good[:4] + "I" + good[5:]),
        ("lowercase l", good[:4] + "l" + good[5:]),
        ("a character outside Base58", good[:4] + "-" + good[5:]),
        ("one character short", good[:-1]),
        ("one character long", good + "a"),
        ("empty", ""),
        ("a space in front", " " + good),
        ("version 0x37", b58encode(other_version + sha256d(other_version)[:4])),
        ("a Bitcoin address (version 0x00)", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
        ("decodes to 34 bytes", "1" * 34),
        ("the coinbase marker", "0"),
        ("not a string", 12345),
        ("null", None),
    ]
    return [
        {"case": name, "address": text} | rejection(partial(decode_address, text))
        for name, text in cases
    ]
