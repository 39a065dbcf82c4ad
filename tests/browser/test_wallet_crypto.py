"""The browser wallet's cryptography (services/wallet/static/pybtc-crypto.js) against pyBTC.

The module is served with the harness pages in tests/browser/wallet_harness/ by `StaticSite` on
127.0.0.1 (a secure context, so WebCrypto with Ed25519), under the wallet pages' policy
`Content-Security-Policy: default-src 'self'`, and driven through `page.evaluate`. Every result
is compared with pybtc computed here, and with tests/vectors/*.json: encoding primitives,
signing messages, encodings and txids, keys and signatures, addresses and every kind of typo
(same message), amounts typed by a user, a transaction signed in the browser; and wallet files
both ways, against `cryptography` following docs/wallet.md to the letter, against pyBTC's own
reader and writer (services/wallet/keyfile.py: same refusals, same messages, nothing derived
before a malformed file is refused) and against tests/vectors/wallet_file.json.

A page that is secure but whose Web Crypto lacks Ed25519 (older browsers) is played by
wallet_harness/no-ed25519.js: tweetnacl signs, Web Crypto does the rest.

The fallback is checked in a real insecure context: pages at http://wallet.example/ (answered by
Playwright's request routing, never the network) are not a secure context, so chromium leaves
`crypto.subtle` undefined. There tweetnacl signs, and what needs SHA-256, PBKDF2 or AES-GCM says
that a secure context is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from playwright.sync_api import Page, Route

from pybtc.encoding import COIN, format_amount, parse_amount, sha256
from pybtc.errors import AddressError, TransactionError
from pybtc.keys import PrivateKey, address_from_public_key, decode_address
from pybtc.params import DEVNET, NETWORKS, REGTEST
from pybtc.transaction import Transaction
from pybtc.validation import validate_transaction
from services.wallet.keyfile import CANNOT_OPEN, KeyFileError, decrypt_key, encrypt_key
from tests.browser.browserutil import REPO, StaticSite

STATIC = REPO / "services" / "wallet" / "static"
HARNESS = Path(__file__).resolve().parent / "wallet_harness"
VECTORS = REPO / "tests" / "vectors"
CSP = "default-src 'self'"
INSECURE_ORIGIN = "http://wallet.example"  # not localhost, not HTTPS: not a secure context

SECURE_CONTEXT = "open the wallet on localhost or over HTTPS"
FAST_ITERATIONS = 100_000  # the least a reader accepts: keeps the tests quick


def vectors(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


def site_files() -> dict[str, str]:
    """Path -> text of everything the harness pages load."""
    return {
        "/": (HARNESS / "index.html").read_text(),
        "/bare.html": (HARNESS / "bare.html").read_text(),
        "/no-ed25519.html": (HARNESS / "no-ed25519.html").read_text(),
        "/no-ed25519.js": (HARNESS / "no-ed25519.js").read_text(),
        "/harness.js": (HARNESS / "harness.js").read_text(),
        "/pybtc-crypto.js": (STATIC / "pybtc-crypto.js").read_text(),
        "/vendor/nacl-fast.min.js": (STATIC / "vendor" / "nacl-fast.min.js").read_text(),
    }


def wait_for_module(page: Page) -> str:
    """Wait until the harness has imported the module; return its `cryptoMode()`."""
    page.locator("html[data-mode]").wait_for(state="attached")
    mode = page.locator("html").get_attribute("data-mode")
    assert mode is not None
    return mode


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    """The harness and the module on 127.0.0.1, with the wallet pages' CSP."""
    with StaticSite(site_files(), headers={"Content-Security-Policy": CSP}) as served:
        yield served


@pytest.fixture
def crypto_page(page: Page, site: StaticSite) -> Page:
    """The harness page in a secure context: `window.c` is the module, in webcrypto mode."""
    response = page.goto(f"{site.url}/")
    assert response is not None
    assert response.headers["content-security-policy"] == CSP
    assert wait_for_module(page) == "webcrypto"
    return page


def open_insecure(page: Page, path: str) -> str:
    """Open a harness page at http://wallet.example (routed, not a secure context)."""
    files = site_files()

    def answer(route: Route) -> None:
        path = route.request.url.removeprefix(INSECURE_ORIGIN).split("?", 1)[0]
        if path not in files:
            route.fulfill(status=404, body="not found")
            return
        content_type = "text/javascript" if path.endswith(".js") else "text/html; charset=utf-8"
        route.fulfill(
            status=200,
            body=files[path],
            headers={"Content-Type": content_type, "Content-Security-Policy": CSP},
        )

    page.route(f"{INSECURE_ORIGIN}/**", answer)
    page.goto(f"{INSECURE_ORIGIN}{path}")
    assert page.evaluate("window.isSecureContext") is False
    assert page.evaluate("crypto.subtle === undefined && typeof crypto.getRandomValues")
    return wait_for_module(page)


def run(page: Page, body: str, arg: Any = None) -> Any:
    """Run `body` as an async function of `c` (the module) and `arg` in the page."""
    return page.evaluate(f"async (arg) => {{ const c = window.c; {body} }}", arg)


def attempt(page: Page, body: str, arg: Any = None) -> dict[str, Any]:
    """Like `run`, but returns {"value": ...} or {"error": message, "name": error class}."""
    result: dict[str, Any] = page.evaluate(
        f"async (arg) => window.attempt(async () => {{ const c = window.c; {body} }})", arg
    )
    return result


def python_error(func: Any, *args: Any) -> str | None:
    """The message `func(*args)` raises (ValueError / pyBTC errors), or None if it returns."""
    try:
        func(*args)
    except AddressError as exc:
        return exc.message
    except ValueError as exc:
        return str(exc)
    return None


# -- the wallet file, straight from docs/wallet.md with `cryptography` -----------------------


def associated_data(network: str, address: str, public_key: str) -> bytes:
    return f"pybtc-wallet:1:{network}:{address}:{public_key}".encode()


def pbkdf2(passphrase: str, salt: bytes, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return kdf.derive(passphrase.encode())


def python_wallet_file(
    seed: bytes,
    passphrase: str,
    network: str,
    *,
    salt: bytes,
    nonce: bytes,
    iterations: int,
    address: str | None = None,
    public_key: str | None = None,
) -> dict[str, Any]:
    """The wallet file of docs/wallet.md (address/public_key overridable, to forge mismatches)."""
    key = PrivateKey(seed)
    address = address or key.address
    public_key = public_key or key.public_key.hex()
    sealed = AESGCM(pbkdf2(passphrase, salt, iterations)).encrypt(
        nonce, seed, associated_data(network, address, public_key)
    )
    return {
        "format": "pybtc-wallet",
        "version": 1,
        "network": network,
        "address": address,
        "public_key": public_key,
        "kdf": {"name": "PBKDF2-HMAC-SHA256", "iterations": iterations, "salt": salt.hex()},
        "cipher": {"name": "AES-256-GCM", "nonce": nonce.hex()},
        "ciphertext": sealed.hex(),
    }


def python_open_wallet(doc: dict[str, Any], passphrase: str) -> bytes:
    """The seed in a wallet file, read as docs/wallet.md says (raises InvalidTag if refused)."""
    key = pbkdf2(passphrase, bytes.fromhex(doc["kdf"]["salt"]), doc["kdf"]["iterations"])
    seed = AESGCM(key).decrypt(
        bytes.fromhex(doc["cipher"]["nonce"]),
        bytes.fromhex(doc["ciphertext"]),
        associated_data(doc["network"], doc["address"], doc["public_key"]),
    )
    assert PrivateKey(seed).public_key.hex() == doc["public_key"]
    assert PrivateKey(seed).address == doc["address"]
    return seed


SEED = sha256(b"pybtc browser wallet test key")
SALT = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")

ENCRYPT_JS = """
const key = await c.keyFromSeed(arg.seed);
return c.encryptWallet(key, arg.passphrase, arg.network, arg.options);
"""
DECRYPT_JS = """
const key = await c.decryptWallet(arg.doc, arg.passphrase, arg.network ?? undefined);
return {seed: c.bytesToHex(key.seed), publicKey: c.bytesToHex(key.publicKey),
        address: key.address};
"""


# -- loading -------------------------------------------------------------------------------


def test_module_loads_under_the_wallet_csp_and_uses_webcrypto(crypto_page: Page) -> None:
    state = run(
        crypto_page,
        """return {webcrypto: c.hasWebCrypto(), subtle: c.hasSubtleCrypto(),
                   secure: window.isSecureContext, nacl: typeof globalThis.nacl,
                   exports: Object.keys(c).sort()};""",
    )
    assert state["webcrypto"] is True
    assert state["subtle"] is True
    assert state["secure"] is True
    assert state["nacl"] == "object"  # loaded as the real pages will, yet unused here
    for name in [
        "hasWebCrypto",
        "cryptoMode",
        "signingMessage",
        "encodeTransaction",
        "txid",
        "addressFromPublicKey",
        "checkAddress",
        "parseAmount",
        "formatAmount",
        "generateKey",
        "keyFromSeed",
        "sign",
        "signTransaction",
        "encryptWallet",
        "decryptWallet",
    ]:
        assert name in state["exports"], name


# -- encoding and transactions ------------------------------------------------------------


def test_encoding_primitives_match_the_vectors(crypto_page: Page) -> None:
    enc = vectors("encoding")
    got = run(
        crypto_page,
        """const hex = c.bytesToHex;
        const thrown = (f) => { try { f(); } catch (e) { return e; } return {}; };
        return {
          u64: arg.u64.map((v) => hex(c.u64(BigInt(v.value)))),
          varBytes: arg.var_bytes.map((v) => hex(c.varBytes(c.hexToBytes(v.data)))),
          varStr: arg.var_str.map((v) => hex(c.varStr(v.text))),
          sha256: await Promise.all(arg.hashes.map(
            async (v) => hex(await c.sha256(c.hexToBytes(v.data))))),
          sha256d: await Promise.all(arg.hashes.map(
            async (v) => hex(await c.sha256d(c.hexToBytes(v.data))))),
          tooLong: thrown(() => c.varBytes(new Uint8Array(256))).message,
          u64Over: thrown(() => c.u64(2n ** 64n)).name,
          u64Float: thrown(() => c.u64(1.5)).name,
        };""",
        enc,
    )
    assert got["u64"] == [v["hex"] for v in enc["u64"]]
    assert got["varBytes"] == [v["hex"] for v in enc["var_bytes"]]
    assert got["varStr"] == [v["hex"] for v in enc["var_str"]]
    assert got["sha256"] == [v["sha256"] for v in enc["hashes"]]
    assert got["sha256d"] == [v["sha256d"] for v in enc["hashes"]]
    assert got["tooLong"] == "var_bytes holds at most 255 bytes"
    assert got["u64Over"] == "RangeError"
    assert got["u64Float"] == "TypeError"


def test_signing_messages_encodings_and_txids_match_the_vectors(crypto_page: Page) -> None:
    txs = vectors("transactions")["transactions"]
    got = run(
        crypto_page,
        """return Promise.all(arg.map(async (v) => ({
          messages: Object.fromEntries(Object.keys(v.signing_messages).map(
            (net) => [net, c.bytesToHex(c.signingMessage(v.fields, net))])),
          encoded: c.bytesToHex(c.encodeTransaction(v.fields)),
          txid: await c.txid(v.fields),
        })));""",
        txs,
    )
    for vector, result in zip(txs, got, strict=True):
        assert result["messages"] == vector["signing_messages"], vector["case"]
        assert result["encoded"] == vector["encoded"], vector["case"]
        assert result["txid"] == vector["txid"] == vector["json"]["txid"], vector["case"]
        assert Transaction.from_dict(vector["fields"]).txid == result["txid"]


def test_the_vector_transactions_are_signed_alike(crypto_page: Page) -> None:
    signed = [v for v in vectors("transactions")["transactions"] if v["signature"]]
    assert len(signed) >= 3
    got = run(
        crypto_page,
        """return Promise.all(arg.map(async (v) => {
          const key = await c.keyFromSeed(v.signer_seed);
          const unsigned = {...v.fields, signature: ""};
          const signature = await c.sign(key, c.signingMessage(unsigned, v.signed_for));
          return c.bytesToHex(signature);
        }));""",
        signed,
    )
    assert got == [v["signature"] for v in signed]


# -- keys and addresses ---------------------------------------------------------------------


def test_keys_and_signatures_match_the_vectors(crypto_page: Page) -> None:
    keys = vectors("keys")
    got = run(
        crypto_page,
        """const hex = c.bytesToHex;
        const keys = await Promise.all(arg.keys.map(async (v) => {
          const key = await c.keyFromSeed(c.hexToBytes(v.seed));
          return {seed: hex(key.seed), publicKey: hex(key.publicKey), address: key.address,
                  address2: await c.addressFromPublicKey(key.publicKey)};
        }));
        const signatures = await Promise.all(arg.signatures.map(async (v) =>
          hex(await c.sign(await c.keyFromSeed(v.seed), c.hexToBytes(v.message)))));
        return {keys, signatures};""",
        keys,
    )
    for vector, key in zip(keys["keys"], got["keys"], strict=True):
        public_key = bytes.fromhex(vector["public_key"])
        assert key["seed"] == vector["seed"]
        assert key["publicKey"] == vector["public_key"]
        assert key["address"] == key["address2"] == address_from_public_key(public_key)
        assert PrivateKey.from_hex(vector["seed"]).public_key == public_key
    assert got["signatures"] == [v["signature"] for v in keys["signatures"]]


def test_addresses_match_the_vectors(crypto_page: Page) -> None:
    addresses = vectors("addresses")
    got = run(
        crypto_page,
        """const fromKeys = await Promise.all(arg.from_public_key.map(
             (v) => c.addressFromPublicKey(c.hexToBytes(v.public_key))));
        const fromPayloads = await Promise.all(arg.from_payload.map(
             (v) => c.addressFromPayload(c.hexToBytes(v.payload))));
        const valid = await Promise.all([...arg.from_public_key, ...arg.from_payload].map(
             async (v) => { const r = await c.checkAddress(v.address);
                            return r.ok ? c.bytesToHex(r.payload) : r.message; }));
        const invalid = await Promise.all(arg.invalid.map((v) => c.checkAddress(v.address)));
        return {fromKeys, fromPayloads, valid, invalid};""",
        addresses,
    )
    assert got["fromKeys"] == [v["address"] for v in addresses["from_public_key"]]
    assert got["fromPayloads"] == [v["address"] for v in addresses["from_payload"]]
    every_valid = addresses["from_public_key"] + addresses["from_payload"]
    assert got["valid"] == [v["payload"] for v in every_valid]
    assert len(addresses["invalid"]) >= 15
    for vector, result in zip(addresses["invalid"], got["invalid"], strict=True):
        assert result == {"ok": False, "message": vector["message"]}, vector["case"]


GOOD = "PiTTcSHxtdZsF1FHdb155usBmr9rCm5qpG"
MORE_ADDRESS_CASES = [
    GOOD,
    GOOD + "\n",
    "\t" + GOOD,
    GOOD + "\x1c",  # whitespace to Python's strip(), not to JavaScript's trim()
    "\x85" + GOOD[1:],
    "\ufeff" + GOOD[1:],  # the reverse: trim() strips it, Python does not
    GOOD[:4] + " " + GOOD[5:],
    GOOD[:4] + "'" + GOOD[5:],
    GOOD[:4] + '"' + GOOD[5:],
    GOOD[:4] + "\\" + GOOD[5:],
    GOOD[:4] + "\x00" + GOOD[5:],
    GOOD[:4] + "\x7f" + GOOD[5:],
    GOOD[:4] + "\u200b" + GOOD[5:],  # zero-width space: repr escapes it
    GOOD[:4] + "\u00a0" + GOOD[5:],
    GOOD[:4] + "é" + GOOD[5:],
    GOOD[:4] + "€" + GOOD[5:],
    GOOD[:4] + "\U0001f511" + GOOD[5:],  # one code point, two UTF-16 units
    GOOD[:33] + "\U0001f511",
    GOOD[:4] + "ａ" + GOOD[5:],  # a fullwidth letter
    GOOD.lower(),
    GOOD.upper(),
    GOOD[::-1],
    "P" * 34,
    "z" * 34,
    "1" * 33 + "2",
    "2" * 34,
    GOOD[:-1],
    GOOD * 2,
]


def test_check_address_says_what_pybtc_says(crypto_page: Page) -> None:
    got = run(
        crypto_page,
        "return Promise.all(arg.map(async (a) => (await c.checkAddress(a)).message ?? null));",
        MORE_ADDRESS_CASES,
    )
    expected = [python_error(decode_address, a) for a in MORE_ADDRESS_CASES]
    assert expected[0] is None
    assert len({e for e in expected if e}) >= 10  # many different messages are exercised
    for address, js_message, py_message in zip(MORE_ADDRESS_CASES, got, expected, strict=True):
        assert js_message == py_message, repr(address)


# -- amounts -------------------------------------------------------------------------------

MORE_AMOUNTS = [
    "0.000000001",
    "1.000000000",
    "-1",
    "+1",
    "1e3",
    "1E3",
    "",
    " ",
    " 1",
    "1 ",
    "\t1.5\t",
    " \t 2 \t ",
    "\n1",
    "1\r",
    "\u20001",
    "\ufeff1",
    "1 000",
    "1_000",
    "0x10",
    "Infinity",
    "NaN",
    "1..5",
    "1.5.",
    ".",
    "..5",
    "1.",
    ".00000001",
    "00000000000000000000021000000",
    "21000000",
    "21000000.00000000",
    "21000000.000000001",
    "21000000.00000001",
    "21000001",
    "99999999.99999999",
    "100000000",
    "999999999999999999999999999999",
    "0",
    "0.0",
    "00.00000000",
    "12345678.12345678",
    "0.1",
    "0.10000000",
    "١",
    "１",
    "²",
]


def test_parse_amount_matches_pybtc(crypto_page: Page) -> None:
    enc = vectors("encoding")
    texts = (
        [v["text"] for v in enc["parse_amount"]]
        + [v["text"] for v in enc["parse_amount_rejected"]]
        + MORE_AMOUNTS
    )
    got = run(
        crypto_page,
        """return arg.map((t) => { try { return {units: String(c.parseAmount(t))}; }
                                   catch (e) { return {error: e.message}; } });""",
        texts,
    )
    for text, result in zip(texts, got, strict=True):
        error = python_error(parse_amount, text)
        expected = {"error": error} if error else {"units": str(parse_amount(text))}
        assert result == expected, repr(text)
    for vector in enc["parse_amount"]:
        assert {"units": str(vector["units"])} in got
    for vector in enc["parse_amount_rejected"]:
        assert {"error": vector["error"]} in got
    refused = run(
        crypto_page,
        "try { c.parseAmount(150000000); } catch (e) { return e.name; } return null;",
    )
    assert refused == "TypeError"


def test_format_amount_matches_pybtc(crypto_page: Page) -> None:
    cases = [v["units"] for v in vectors("encoding")["format_amount"]]
    cases += [12345678, 99999999, COIN - 1, COIN + 1, -1, -150000000, 2**53 - 1]
    got = run(
        crypto_page,
        """return arg.map((u) => [c.formatAmount(u), c.formatAmount(BigInt(u))]);""",
        cases,
    )
    big = run(crypto_page, "return c.formatAmount(2n ** 64n - 1n);")
    assert got == [[format_amount(u), format_amount(u)] for u in cases]
    assert big == format_amount(2**64 - 1)


# -- signing -------------------------------------------------------------------------------

SIGN_JS = """
const key = await c.keyFromSeed(c.hexToBytes(arg.seed));
return c.signTransaction(key, {...arg.fields, amount: c.parseAmount(arg.amount)}, arg.network);
"""


def test_a_transaction_signed_in_the_browser_is_valid_in_python(crypto_page: Page) -> None:
    key = PrivateKey(SEED)
    recipient = PrivateKey(sha256(b"a recipient")).address
    fields = {"recipient": recipient, "fee": 1000, "nonce": 4, "timestamp": 1795132900}
    arg = {"seed": SEED.hex(), "fields": fields, "amount": "1.5", "network": "pybtc-regtest"}
    signed = run(crypto_page, SIGN_JS, arg)

    assert list(signed) == [*Transaction.from_dict(signed).to_dict()]  # same keys, same order
    tx = Transaction.from_dict(signed)  # checks the txid too
    validate_transaction(tx, REGTEST)
    with pytest.raises(TransactionError) as excinfo:
        validate_transaction(tx, DEVNET)
    assert excinfo.value.reason == "bad-signature"
    python = Transaction.create(
        key,
        recipient,
        150_000_000,
        fee=1000,
        nonce=4,
        timestamp=1795132900,
        network_id=REGTEST.network_id,
    )
    assert signed == python.to_dict()  # Ed25519 is deterministic: the very same signature
    assert signed["sender"] == key.address
    assert signed["amount"] == 150_000_000

    devnet = run(crypto_page, SIGN_JS, arg | {"network": "pybtc-devnet"})
    validate_transaction(Transaction.from_dict(devnet), DEVNET)
    assert devnet["signature"] != signed["signature"]


def test_sign_transaction_refuses_what_the_ledger_would(crypto_page: Page) -> None:
    recipient = PrivateKey(sha256(b"a recipient")).address
    typo = recipient[:-1] + ("a" if recipient[-1] != "a" else "b")
    base = {"recipient": recipient, "amount": 1, "fee": 0, "nonce": 0, "timestamp": 0}
    body = """const key = await c.keyFromSeed(arg.seed);
              return c.signTransaction(key, arg.fields, "pybtc-regtest");"""
    cases = {
        "typo": (base | {"recipient": typo}, python_error(decode_address, typo)),
        "zero": (base | {"amount": 0}, "amount must be at least 1 base unit"),
        "too much": (
            base | {"amount": 21_000_000 * COIN, "fee": 1},
            "amount plus fee exceeds the money supply",
        ),
        "negative fee": (base | {"fee": -1}, None),
        "float": (base | {"amount": 1.5}, None),
        "negative nonce": (base | {"nonce": -1}, None),
    }
    for case, (fields, message) in cases.items():
        result = attempt(crypto_page, body, {"seed": SEED.hex(), "fields": fields})
        assert "error" in result, case
        if case == "typo":
            assert result["error"] == f"recipient: {message}"
        elif message:
            assert result["error"] == message, case
    mismatch = attempt(
        crypto_page,
        """const key = await c.keyFromSeed(arg.seed);
           const other = await c.keyFromSeed(arg.other);
           return c.signTransaction({...key, publicKey: other.publicKey}, arg.fields, "x");""",
        {"seed": SEED.hex(), "other": sha256(b"other").hex(), "fields": base},
    )
    assert mismatch["error"] == "key.publicKey is not the public key of key.seed"


def test_generated_keys_are_fresh_and_consistent(crypto_page: Page) -> None:
    got = run(
        crypto_page,
        """const keys = [await c.generateKey(), await c.generateKey()];
        return keys.map((k) => ({seed: c.bytesToHex(k.seed), publicKey: c.bytesToHex(k.publicKey),
                                 address: k.address}));""",
    )
    assert got[0]["seed"] != got[1]["seed"]
    for key in got:
        python = PrivateKey.from_hex(key["seed"])
        assert python.public_key.hex() == key["publicKey"]
        assert python.address == key["address"]


# -- the wallet file -------------------------------------------------------------------------

COUNT_KDF_JS = """
if (window.kdfCalls === undefined) {
  window.kdfCalls = 0;
  const subtle = crypto.subtle;
  for (const name of ["deriveBits", "deriveKey"]) {
    const original = subtle[name].bind(subtle);
    subtle[name] = (...args) => { window.kdfCalls++; return original(...args); };
  }
}
window.kdfCalls = 0;
"""
REFUSE_JS = """
const results = [];
for (const [doc, passphrase] of arg) {
  window.kdfCalls = 0;
  const start = performance.now();
  const r = await window.attempt(() => c.decryptWallet(doc, passphrase));
  results.push({...r, ms: performance.now() - start, kdf: window.kdfCalls});
}
return results;
"""


def python_refusal(doc: Any, passphrase: str, network: str | None = None) -> str:
    """pyBTC's message for a wallet file it will not open (services/wallet/keyfile.py)."""
    with pytest.raises(KeyFileError) as excinfo:
        decrypt_key(doc, passphrase, network=network)
    return excinfo.value.message


def refusals_in_browser(page: Page, files: list[tuple[Any, str]]) -> list[dict[str, Any]]:
    """Each (doc, passphrase) opened in the browser: error, error class, ms and KDF runs."""
    run(page, COUNT_KDF_JS)
    results: list[dict[str, Any]] = run(page, REFUSE_JS, files)
    for result in results:
        assert result["name"] == "WalletFileError", result
    return results


def test_wallet_files_match_the_vectors(crypto_page: Page) -> None:
    wallet = vectors("wallet_file")
    fmt = wallet["format"]
    constants = run(
        crypto_page,
        """return [c.WALLET_FORMAT, c.WALLET_VERSION, c.WALLET_ITERATIONS, c.MIN_ITERATIONS,
                   c.MAX_ITERATIONS, [...c.NETWORKS]];""",
    )
    assert constants == [
        fmt["format"],
        fmt["version"],
        fmt["write_iterations"],
        fmt["read_iterations_min"],
        fmt["read_iterations_max"],
        sorted(NETWORKS),
    ]
    for case in wallet["cases"]:
        options = {"salt": case["salt"], "nonce": case["nonce"], "iterations": case["iterations"]}
        arg = {
            "seed": case["seed"],
            "passphrase": case["passphrase"],
            "network": case["network"],
            "options": options,
        }
        assert run(crypto_page, ENCRYPT_JS, arg) == case["file"], case["case"]
        opened = run(
            crypto_page,
            DECRYPT_JS,
            {"doc": case["file"], "passphrase": case["passphrase"], "network": case["network"]},
        )
        assert opened["seed"] == case["seed"], case["case"]
        assert opened["address"] == case["file"]["address"], case["case"]

    refusals = wallet["refusals"]
    assert {r["stage"] for r in refusals} == {"parse", "decrypt", "check"}
    results = refusals_in_browser(crypto_page, [(r["file"], r["passphrase"]) for r in refusals])
    for refusal, result in zip(refusals, results, strict=True):
        assert result["error"] == refusal["error"], refusal["case"]
        # "parse": refused before any key is derived; the others derive the key once.
        assert result["kdf"] == (0 if refusal["stage"] == "parse" else 1), refusal["case"]


def test_a_browser_wallet_file_is_the_documented_one(crypto_page: Page) -> None:
    passphrase = "correct horse battery staple"
    options = {"salt": SALT.hex(), "nonce": NONCE.hex(), "iterations": FAST_ITERATIONS}
    arg = {"seed": SEED.hex(), "passphrase": passphrase, "network": "devnet", "options": options}
    doc = run(crypto_page, ENCRYPT_JS, arg)
    expected = python_wallet_file(
        SEED, passphrase, "devnet", salt=SALT, nonce=NONCE, iterations=FAST_ITERATIONS
    )
    assert doc == expected
    assert list(doc) == list(expected)  # and in the documented order
    assert python_open_wallet(doc, passphrase) == SEED
    assert decrypt_key(doc, passphrase, network="devnet").seed == SEED  # and pybtc's reader
    pybtc_doc = encrypt_key(
        PrivateKey(SEED), passphrase, "devnet", iterations=FAST_ITERATIONS, salt=SALT, nonce=NONCE
    )
    assert doc == pybtc_doc

    # The writer's default: 600,000 iterations, fresh salt and nonce every time.
    fresh = [
        run(crypto_page, ENCRYPT_JS, arg | {"options": {}, "passphrase": "pässwörd ₿ 🔑"})
        for _ in range(2)
    ]
    for doc in fresh:
        assert doc["kdf"]["iterations"] == 600_000
        assert python_open_wallet(doc, "pässwörd ₿ 🔑") == SEED
    assert fresh[0]["kdf"]["salt"] != fresh[1]["kdf"]["salt"]
    assert fresh[0]["cipher"]["nonce"] != fresh[1]["cipher"]["nonce"]


def test_a_python_wallet_file_opens_in_the_browser(crypto_page: Page) -> None:
    python = PrivateKey(SEED)
    expected = {
        "seed": SEED.hex(),
        "publicKey": python.public_key.hex(),
        "address": python.address,
    }
    for passphrase in ["pässwörd ₿ 🔑", ""]:  # writers refuse "", readers open what they find
        doc = python_wallet_file(
            SEED, passphrase, "regtest", salt=SALT, nonce=NONCE, iterations=FAST_ITERATIONS
        )
        for given in [doc, json.dumps(doc, indent=2)]:  # the object, or the file's text
            arg = {"doc": given, "passphrase": passphrase, "network": "regtest"}
            assert run(crypto_page, DECRYPT_JS, arg) == expected
    doc = encrypt_key(python, "pw", "devnet", iterations=FAST_ITERATIONS)  # random salt, nonce
    assert run(crypto_page, DECRYPT_JS, {"doc": doc, "passphrase": "pw"}) == expected


def test_wrong_passphrases_and_edited_files_are_refused(crypto_page: Page) -> None:
    doc = python_wallet_file(
        SEED, "right", "devnet", salt=SALT, nonce=NONCE, iterations=FAST_ITERATIONS
    )
    other = PrivateKey(sha256(b"someone else"))
    flipped = doc["ciphertext"][:-1] + ("0" if doc["ciphertext"][-1] != "0" else "1")
    edits: dict[str, dict[str, Any]] = {
        "wrong passphrase": {},
        "network": {"network": "regtest"},
        "address and public key": {
            "address": other.address,
            "public_key": other.public_key.hex(),
        },
        "ciphertext": {"ciphertext": flipped},
        "salt": {"kdf": doc["kdf"] | {"salt": "ff" * 16}},
        "iterations": {"kdf": doc["kdf"] | {"iterations": FAST_ITERATIONS + 1}},
        "nonce": {"cipher": doc["cipher"] | {"nonce": "ff" * 12}},
    }
    files = [
        (doc | edit, "wrong" if case == "wrong passphrase" else "right")
        for case, edit in edits.items()
    ]
    files.append((doc, "Right"))
    files.append((doc, "right "))
    for (edited, passphrase), result in zip(
        files, refusals_in_browser(crypto_page, files), strict=True
    ):
        assert result["error"] == CANNOT_OPEN == python_refusal(edited, passphrase)
        assert result["kdf"] == 1
    # The right passphrase opens it; a file for another network than the page's does not.
    assert "value" in attempt(crypto_page, DECRYPT_JS, {"doc": doc, "passphrase": "right"})
    arg = {"doc": doc, "passphrase": "right", "network": "regtest"}
    result = attempt(crypto_page, DECRYPT_JS, arg)
    assert result["error"] == python_refusal(doc, "right", "regtest")
    assert result["error"] == "this wallet file is for devnet, not regtest"


def test_a_file_whose_key_is_not_its_seeds_is_refused(crypto_page: Page) -> None:
    """A file naming one key but holding another's seed, sealed properly: caught after opening,
    or before when its address is not its public key's."""
    key, other = PrivateKey(SEED), PrivateKey(sha256(b"someone else"))
    fixed: dict[str, Any] = {"salt": SALT, "nonce": NONCE, "iterations": FAST_ITERATIONS}
    forged = [
        python_wallet_file(
            other.seed,
            "pw",
            "devnet",
            address=key.address,
            public_key=key.public_key.hex(),
            **fixed,
        ),
        python_wallet_file(SEED, "pw", "devnet", public_key=other.public_key.hex(), **fixed),
        python_wallet_file(SEED, "pw", "devnet", address=other.address, **fixed),
    ]
    results = refusals_in_browser(crypto_page, [(doc, "pw") for doc in forged])
    assert [r["error"] for r in results] == [python_refusal(doc, "pw") for doc in forged]
    assert results[0]["error"] == "the file's public key is not the key of the secret inside it"
    assert [r["kdf"] for r in results] == [1, 0, 0]


def test_malformed_files_are_refused_before_the_kdf_runs(crypto_page: Page) -> None:
    doc = python_wallet_file(SEED, "pw", "devnet", salt=SALT, nonce=NONCE, iterations=100_000)
    kdf, cipher = doc["kdf"], doc["cipher"]
    iterations = [99_999, 10_000_001, 2**40, 0, -600_000, "600000", 600_000.5, True, None, [1]]
    malformed: list[Any] = [
        *(doc | {"kdf": kdf | {"iterations": n}} for n in iterations),
        doc | {"kdf": kdf | {"name": "scrypt"}},
        doc | {"cipher": cipher | {"name": "AES-128-GCM"}},
        doc | {"version": 2},
        doc | {"version": "1"},
        doc | {"version": False},
        doc | {"format": "electrum"},
        doc | {"network": "mainnet"},
        doc | {"network": "it's"},
        doc | {"network": 'say "hi"'},
        doc | {"network": None},
        [doc],
        42,
        {k: v for k, v in doc.items() if k not in ("ciphertext", "kdf")},
        doc | {"seed": SEED.hex(), "Zeta": 1, "alpha": 2, "é": 3},
        doc | {"kdf": kdf | {"memory": 1}},
        doc | {"kdf": "PBKDF2"},
        doc | {"cipher": None},
        doc | {"kdf": {k: v for k, v in kdf.items() if k != "salt"}},
        doc | {"address": doc["address"][:-1] + "1"},
        doc | {"address": "0"},
        doc | {"address": 12345},
        doc | {"address": PrivateKey(sha256(b"someone else")).address},
        doc | {"public_key": doc["public_key"].upper()},
        doc | {"public_key": doc["public_key"][:-2]},
        doc | {"kdf": kdf | {"salt": "00" * 8}},
        doc | {"cipher": cipher | {"nonce": "00" * 16}},
        doc | {"ciphertext": doc["ciphertext"][:64]},
        doc | {"ciphertext": 7},
    ]
    expected = [python_refusal(d, "pw") for d in malformed]
    assert len(set(expected)) >= 20  # the cases reach many different checks
    results = refusals_in_browser(crypto_page, [(d, "pw") for d in malformed])
    for case, message, result in zip(malformed, expected, results, strict=True):
        assert result["error"] == message, case
        assert result["kdf"] == 0, case  # refused before any key derivation ran
    # The file's JSON text is read too (pybtc reads files in read_key_file); text that is not JSON
    # or is too large is refused like there.
    texts = ["{not json", " " * (64 * 1024 + 1)]
    results = refusals_in_browser(crypto_page, [(t, "pw") for t in texts])
    assert results[0]["error"].startswith("this is not a wallet file (not valid JSON: ")
    assert results[1]["error"] == "this is larger than 64 KiB: not a wallet file"
    # ... while the same file with its real iterations runs the KDF and opens.
    assert run(crypto_page, DECRYPT_JS, {"doc": doc, "passphrase": "pw"})["seed"] == SEED.hex()


def test_writers_refuse_what_pybtc_refuses_to_write(crypto_page: Page) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("pw", "devnet", {"iterations": 99_999}),
        ("pw", "devnet", {"iterations": 10_000_001}),
        ("", "devnet", {}),
        ("pw", "mainnet", {}),
        ("pw", "regtest", {"salt": "00" * 15}),
        ("pw", "regtest", {"nonce": "00" * 16}),
    ]
    for passphrase, network, options in cases:
        arg = {"seed": SEED.hex(), "passphrase": passphrase, "network": network, "options": options}
        result = attempt(crypto_page, ENCRYPT_JS, arg)
        python_options: dict[str, Any] = {
            k: bytes.fromhex(v) if isinstance(v, str) else v for k, v in options.items()
        }
        with pytest.raises(KeyFileError) as excinfo:
            encrypt_key(PrivateKey(SEED), passphrase, network, **python_options)
        assert result == {"error": excinfo.value.message, "name": "WalletFileError"}, arg


# -- without Ed25519 in Web Crypto, or without Web Crypto --------------------------------------


def test_a_browser_without_webcrypto_ed25519_signs_with_tweetnacl(
    page: Page, site: StaticSite
) -> None:
    """A secure page whose Web Crypto lacks only Ed25519: tweetnacl signs, the rest still works."""
    page.goto(f"{site.url}/no-ed25519.html")
    assert wait_for_module(page) == "fallback"
    assert run(page, "return [c.hasWebCrypto(), c.hasSubtleCrypto()];") == [False, True]
    arg = {
        "seed": SEED.hex(),
        "fields": {"recipient": GOOD, "fee": 0, "nonce": 0, "timestamp": 1795132900},
        "amount": "0.00000001",
        "network": REGTEST.network_id,
    }
    signed = run(page, SIGN_JS, arg)
    validate_transaction(Transaction.from_dict(signed), REGTEST)
    key = PrivateKey(SEED)
    python = Transaction.create(
        key, GOOD, 1, fee=0, nonce=0, timestamp=1795132900, network_id=REGTEST.network_id
    )
    assert signed == python.to_dict()
    generated = run(
        page, "const k = await c.generateKey(); return [c.bytesToHex(k.seed), k.address];"
    )
    assert PrivateKey.from_hex(generated[0]).address == generated[1]

    options = {"salt": SALT.hex(), "nonce": NONCE.hex(), "iterations": FAST_ITERATIONS}
    doc = run(
        page,
        ENCRYPT_JS,
        {"seed": SEED.hex(), "passphrase": "pw", "network": "regtest", "options": options},
    )
    assert doc == python_wallet_file(
        SEED, "pw", "regtest", salt=SALT, nonce=NONCE, iterations=FAST_ITERATIONS
    )
    opened = run(page, DECRYPT_JS, {"doc": doc, "passphrase": "pw"})
    assert opened == {"seed": SEED.hex(), "publicKey": key.public_key.hex(), "address": key.address}


def test_fallback_signs_with_tweetnacl_in_an_insecure_context(page: Page) -> None:
    assert open_insecure(page, "/") == "fallback"
    tx = vectors("transactions")["transactions"][0]
    got = run(
        page,
        """const key = await c.keyFromSeed(arg.tx.signer_seed);
        const fresh = await c.generateKey();
        const message = c.signingMessage({...arg.tx.fields, signature: ""}, arg.tx.signed_for);
        return {
          webcrypto: c.hasWebCrypto(), subtle: c.hasSubtleCrypto(),
          publicKey: c.bytesToHex(key.publicKey), address: key.address,
          txSignature: c.bytesToHex(await c.sign(key, message)),
          signature: c.bytesToHex(
            await c.sign(await c.keyFromSeed(arg.seed), c.hexToBytes(arg.message))),
          fresh: {seed: c.bytesToHex(fresh.seed), publicKey: c.bytesToHex(fresh.publicKey)},
          encoded: c.bytesToHex(c.encodeTransaction(arg.tx.fields)),
          amount: String(c.parseAmount("1.5")),
        };""",
        {"tx": tx, "seed": SEED.hex(), "message": b"pybtc browser".hex()},
    )
    assert got["webcrypto"] is False
    assert got["subtle"] is False
    assert got["publicKey"] == tx["fields"]["public_key"]
    assert got["address"] is None  # an address needs SHA-256
    assert got["txSignature"] == tx["signature"]
    assert got["signature"] == PrivateKey(SEED).sign(b"pybtc browser").hex()
    assert PrivateKey.from_hex(got["fresh"]["seed"]).public_key.hex() == got["fresh"]["publicKey"]
    assert got["encoded"] == tx["encoded"]
    assert got["amount"] == "150000000"

    doc = python_wallet_file(SEED, "pw", "devnet", salt=SALT, nonce=NONCE, iterations=100_000)
    needs_subtle = {
        "txid": "return c.txid(arg.tx.fields);",
        "sha256": "return c.sha256(new Uint8Array(0));",
        "addressFromPublicKey": "return c.addressFromPublicKey(new Uint8Array(32));",
        "checkAddress": "return c.checkAddress(arg.tx.fields.sender);",
        "signTransaction": """return c.signTransaction(await c.keyFromSeed(arg.tx.signer_seed),
                                {...arg.tx.fields}, arg.tx.signed_for);""",
        "encryptWallet": """return c.encryptWallet(await c.keyFromSeed(arg.tx.signer_seed),
                              "pw", "devnet", {iterations: 100000});""",
        "decryptWallet": 'return c.decryptWallet(arg.doc, "pw");',
    }
    for name, body in needs_subtle.items():
        result = attempt(page, body, {"tx": tx, "doc": doc})
        assert result["name"] == "SecureContextError", (name, result)
        assert SECURE_CONTEXT in result["error"], (name, result)
    # The checks before the checksum need no hashing, so a typo is still named without one.
    typo = attempt(page, "return c.checkAddress(arg);", tx["fields"]["sender"][:4] + "0" * 30)
    assert typo["value"]["message"].startswith("character '0' at position 5 is not Base58")


def test_without_webcrypto_or_tweetnacl_keys_need_a_secure_context(page: Page) -> None:
    assert open_insecure(page, "/bare.html") == "none"
    for body in [
        "return c.generateKey();",
        "return c.keyFromSeed(new Uint8Array(32));",
        "return c.sign({seed: new Uint8Array(32)}, new Uint8Array(0));",
    ]:
        result = attempt(page, body)
        assert result["name"] == "SecureContextError", body
        assert SECURE_CONTEXT in result["error"], body
