/**
 * pybtc-crypto.js: the browser wallet's cryptography, matching `pybtc/` byte for byte.
 *
 * One plain ES module (no build step, no dependencies at runtime, no eval): the transaction
 * encoding and txid (docs/protocol.md §4), addresses and their typo checks (§3), amounts typed
 * by a user (§2.1), Ed25519 keys and signatures, and the wallet file of docs/wallet.md
 * (PBKDF2-HMAC-SHA256 + AES-256-GCM). Refusals carry pyBTC's messages (pybtc.keys,
 * pybtc.encoding, services/wallet/keyfile.py), so the browser and the CLI say the same thing.
 * Checked against pyBTC and tests/vectors/*.json by tests/browser/test_wallet_crypto.py.
 *
 * Where the cryptography comes from:
 *
 * - "webcrypto": `crypto.subtle` with Ed25519 (recent browsers, on a secure page). Everything
 *   works.
 * - "fallback": Ed25519 from tweetnacl (`vendor/nacl-fast.min.js`, loaded by the page as a
 *   classic script before this module: global `nacl`), when Web Crypto lacks Ed25519 or is
 *   missing altogether. A page served over plain HTTP from a host other than localhost is not a
 *   secure context, and then `crypto.subtle` is undefined: keys and signatures still work, but
 *   SHA-256, PBKDF2 and AES-GCM do not, so addresses, txids and the wallet file throw a
 *   `SecureContextError` (keys come back with `address: null`; `hasSubtleCrypto()` says which).
 * - "none": neither; key functions throw a `SecureContextError` as well.
 *
 * Integers: u64 fields and amounts are taken as a BigInt or a safe-integer Number; amounts come
 * back from `parseAmount` as BigInt. A transaction's JSON form carries them as JSON numbers.
 */

/** Base units in one pyBTC. */
export const COIN = 100_000_000n;
/** No amount, fee or sum of both may exceed this (21,000,000 pyBTC). */
export const MAX_MONEY = 21_000_000n * COIN;
/** Largest u64. */
export const U64_MAX = 2n ** 64n - 1n;
/** Version byte of every address (they start with "P"). */
export const ADDRESS_VERSION = 0x38;
/** Bitcoin's Base58 alphabet (no 0, O, I, l). */
export const B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** The wallet file format of docs/wallet.md. */
export const WALLET_FORMAT = "pybtc-wallet";
export const WALLET_VERSION = 1;
/** PBKDF2 iterations a writer uses, and the range a reader accepts. */
export const WALLET_ITERATIONS = 600_000;
export const MIN_ITERATIONS = 100_000;
export const MAX_ITERATIONS = 10_000_000;
/** The networks a wallet file may be for (pybtc.params.NETWORKS). */
export const NETWORKS = Object.freeze(["devnet", "regtest"]);

const WALLET_FIELDS = [
  "format", "version", "network", "address", "public_key", "kdf", "cipher", "ciphertext",
];
const ADDRESS_LENGTH = 34;
const PAYLOAD_LENGTH = 20;
const SECURE_CONTEXT_MESSAGE =
  "this needs the browser's Web Crypto, which it offers only on a secure page: " +
  "open the wallet on localhost or over HTTPS";
const CANNOT_OPEN = "wrong passphrase, or the file was changed";
const MAX_FILE_SIZE = 64 * 1024; // a wallet file is under 1 KiB (pybtc's keyfile.MAX_FILE_SIZE)
// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): WebCrypto imports a bare seed this way.
const PKCS8_ED25519_PREFIX = Uint8Array.of(
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
);
// What Python's str.strip() removes (str.isspace); differs from JS trim(): \x1c-\x1f and \x85
// are whitespace to Python, \ufeff is not.
const PY_WHITESPACE = new Set(
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006" +
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000",
);
// Characters Python's repr() escapes (not str.isprintable(); the space is printable).
const PY_NOT_PRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;
const LONE_SURROGATE = /\p{Cs}/u;
const HEX = /^(?:[0-9a-f]{2})*$/;
const B58_INDEX = new Map([...B58_ALPHABET].map((c, i) => [c, BigInt(i)]));

/** Thrown when the page is not a secure context, so Web Crypto (or Ed25519) is missing. */
export class SecureContextError extends Error {
  constructor(message = SECURE_CONTEXT_MESSAGE) {
    super(message);
    this.name = "SecureContextError";
  }
}

/** Thrown when a wallet file cannot be opened: malformed, unsupported, or wrong passphrase. */
export class WalletFileError extends Error {
  constructor(message) {
    super(message);
    this.name = "WalletFileError";
  }
}

// -- which cryptography the browser has --------------------------------------------------------

/** `crypto.subtle`, or a SecureContextError: it exists only in secure contexts. */
function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new SecureContextError();
  return s;
}

async function detectEd25519() {
  const s = globalThis.crypto?.subtle;
  if (!s) return false;
  try {
    await s.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return true;
  } catch {
    return false;
  }
}

// Detected once, when the module loads (top-level await), so the checks below are synchronous.
const ED25519_IN_WEBCRYPTO = await detectEd25519();

function nacl() {
  const n = globalThis.nacl;
  return n?.sign?.keyPair?.fromSeed && n.sign.detached ? n : null;
}

/**
 * Whether Web Crypto is there and signs with Ed25519 (detected once, when the module loaded).
 * @returns {boolean}
 */
export function hasWebCrypto() {
  return ED25519_IN_WEBCRYPTO;
}

/**
 * Where keys and signatures come from: "webcrypto", "fallback" (tweetnacl's global `nacl`; then
 * SHA-256, PBKDF2 and AES-GCM may be missing too, see `hasSubtleCrypto`) or "none".
 * @returns {"webcrypto" | "fallback" | "none"}
 */
export function cryptoMode() {
  if (ED25519_IN_WEBCRYPTO && globalThis.crypto?.subtle) return "webcrypto";
  return nacl() ? "fallback" : "none";
}

/**
 * Whether SHA-256, PBKDF2 and AES-GCM are available (`crypto.subtle` exists: a secure context).
 * Addresses, txids and wallet files need them.
 * @returns {boolean}
 */
export function hasSubtleCrypto() {
  return Boolean(globalThis.crypto?.subtle);
}

// -- bytes and hex ------------------------------------------------------------------------------

/**
 * Lowercase hex of `bytes`, two digits per byte.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The bytes of lowercase hex `text`; throws a TypeError for anything else.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function hexToBytes(text) {
  if (typeof text !== "string" || !HEX.test(text)) {
    throw new TypeError("expected lowercase hexadecimal with an even number of digits");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function utf8(text, what) {
  if (typeof text !== "string") throw new TypeError(`${what} must be a string`);
  // TextEncoder would silently turn a lone surrogate into U+FFFD; Python refuses to encode it.
  if (LONE_SURROGATE.test(text)) throw new TypeError(`${what} is not valid Unicode text`);
  return new TextEncoder().encode(text);
}

/** A Uint8Array of `length` bytes from a Uint8Array or lowercase hex. */
function bytesArg(value, length, what) {
  const bytes = typeof value === "string" ? hexToBytes(value) : value;
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const forms = `a Uint8Array or ${2 * length} hex digits`;
    throw new TypeError(`${what} must be ${length} bytes (${forms})`);
  }
  return bytes;
}

/** Python's repr() of a string: pyBTC's messages quote what they refuse this way. */
function pyStr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const named = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", [quote]: `\\${quote}` };
  const escape = (char) => {
    if (named[char]) return named[char];
    if (char === " " || !PY_NOT_PRINTABLE.test(char)) return char;
    const cp = char.codePointAt(0);
    const [prefix, width] = cp < 0x100 ? ["\\x", 2] : cp < 0x10000 ? ["\\u", 4] : ["\\U", 8];
    return prefix + cp.toString(16).padStart(width, "0");
  };
  return quote + [...text].map(escape).join("") + quote;
}

/** Python's repr() of a value read from JSON ({value!r} in pyBTC's messages). */
function pyRepr(value) {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "string") return pyStr(value);
  if (typeof value === "bigint") return String(value);
  if (typeof value === "number") {
    // JSON.parse cannot tell 1 from 1.0: an integral number is taken as Python's int.
    if (Number.isInteger(value)) return BigInt(value).toString();
    if (!Number.isFinite(value)) return Number.isNaN(value) ? "nan" : value > 0 ? "inf" : "-inf";
    if (Math.abs(value) >= 1e-4) return String(value);
    const [mantissa, exponent] = value.toExponential().split("e");
    return `${mantissa}e-${exponent.slice(1).padStart(2, "0")}`;
  }
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  const items = Object.entries(value).map(([k, v]) => `${pyStr(k)}: ${pyRepr(v)}`);
  return `{${items.join(", ")}}`;
}

/** Python's order of strings: by code point (JavaScript's sort() compares UTF-16 units). */
function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

// -- encoding primitives (docs/protocol.md §2) -------------------------------------------------

/** An integer as a BigInt; a Number must be a safe integer (never a float). */
function bigIntArg(value, what) {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  throw new TypeError(`${what} must be an integer (a BigInt or a safe-integer Number)`);
}

/**
 * u64(n): 8 bytes, unsigned, big-endian.
 * @param {bigint | number} value
 * @param {string} [what]
 * @returns {Uint8Array}
 */
export function u64(value, what = "value") {
  const n = bigIntArg(value, what);
  if (n < 0n || n > U64_MAX) throw new RangeError(`${what} must be between 0 and ${U64_MAX}`);
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n, false);
  return out;
}

/**
 * var_bytes(b): one length byte, then the bytes (at most 255, never truncated).
 * @param {Uint8Array} bytes
 * @returns {Uint8Array}
 */
export function varBytes(bytes) {
  if (bytes.length > 255) throw new RangeError("var_bytes holds at most 255 bytes");
  return concat(Uint8Array.of(bytes.length), bytes);
}

/**
 * var_str(s): var_bytes of the UTF-8 of `text` (the length counts bytes).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function varStr(text) {
  return varBytes(utf8(text, "a var_str"));
}

/**
 * SHA-256 (needs a secure context).
 * @param {Uint8Array} data
 * @returns {Promise<Uint8Array>}
 */
export async function sha256(data) {
  return new Uint8Array(await subtle().digest("SHA-256", data));
}

/**
 * sha256(sha256(data)): the hash of every header, transaction and Merkle node.
 * @param {Uint8Array} data
 * @returns {Promise<Uint8Array>}
 */
export async function sha256d(data) {
  return sha256(await sha256(data));
}

// -- transactions (docs/protocol.md §4) ---------------------------------------------------------

function hexField(tx, name, nbytes) {
  const value = tx[name] ?? "";
  if (typeof value !== "string") throw new TypeError(`${name} must be a hex string`);
  if (value === "") return new Uint8Array(0);
  if (!HEX.test(value)) throw new TypeError(`${name} must be lowercase hexadecimal`);
  if (value.length !== 2 * nbytes) {
    throw new TypeError(`${name} must be ${nbytes} bytes (${2 * nbytes} hex digits)`);
  }
  return hexToBytes(value);
}

function bodyBytes(tx) {
  if (tx === null || typeof tx !== "object") throw new TypeError("a transaction must be an object");
  for (const name of ["sender", "recipient"]) {
    if (typeof tx[name] !== "string") throw new TypeError(`${name} must be a string`);
  }
  return concat(
    varStr(tx.sender),
    varStr(tx.recipient),
    u64(tx.amount, "amount"),
    u64(tx.fee, "fee"),
    u64(tx.nonce, "nonce"),
    u64(tx.timestamp, "timestamp"),
    varBytes(hexField(tx, "public_key", 32)),
  );
}

/**
 * What the sender signs: var_str(network id) || body, where body = var_str(sender) ||
 * var_str(recipient) || u64(amount) || u64(fee) || u64(nonce) || u64(timestamp) ||
 * var_bytes(public_key). `tx` has the JSON form's field names (`public_key` as hex; u64 fields as
 * BigInt or safe-integer Number). Throws a TypeError/RangeError for a field it cannot encode.
 * @param {{sender: string, recipient: string, amount: bigint|number, fee: bigint|number,
 *   nonce: bigint|number, timestamp: bigint|number, public_key?: string}} tx
 * @param {string} networkId e.g. "pybtc-devnet"
 * @returns {Uint8Array}
 */
export function signingMessage(tx, networkId) {
  return concat(varStr(networkId), bodyBytes(tx));
}

/**
 * The signed transaction as bytes: body || var_bytes(signature) (`signature` as hex, or "").
 * @param {object} tx the fields of `signingMessage` plus `signature`
 * @returns {Uint8Array}
 */
export function encodeTransaction(tx) {
  return concat(bodyBytes(tx), varBytes(hexField(tx, "signature", 64)));
}

/**
 * The txid: hex of sha256d(encodeTransaction(tx)) (needs a secure context).
 * @param {object} tx
 * @returns {Promise<string>}
 */
export async function txid(tx) {
  return bytesToHex(await sha256d(encodeTransaction(tx)));
}

// -- Base58 and addresses (docs/protocol.md §3) ------------------------------------------------

/**
 * Base58 with Bitcoin's alphabet; each leading zero byte becomes a "1".
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function b58encode(bytes) {
  let number = 0n;
  for (const b of bytes) number = (number << 8n) | BigInt(b);
  let out = "";
  while (number > 0n) {
    out = B58_ALPHABET[Number(number % 58n)] + out;
    number /= 58n;
  }
  let pad = 0;
  while (pad < bytes.length && bytes[pad] === 0) pad++;
  return "1".repeat(pad) + out;
}

/** Inverse of b58encode over code points; returns {bytes} or {message} like pybtc's b58decode. */
function b58decode(chars) {
  let number = 0n;
  for (const [i, char] of chars.entries()) {
    const digit = B58_INDEX.get(char);
    if (digit === undefined) {
      const hint = "0OIl".includes(char) ? " (Base58 leaves out 0, O, I and l)" : "";
      return { message: `character ${pyRepr(char)} at position ${i + 1} is not Base58${hint}` };
    }
    number = number * 58n + digit;
  }
  const body = [];
  for (; number > 0n; number >>= 8n) body.unshift(Number(number & 0xffn));
  let pad = 0;
  while (pad < chars.length && chars[pad] === "1") pad++;
  return { bytes: Uint8Array.from([...new Array(pad).fill(0), ...body]) };
}

/**
 * The address of a payload: Base58Check(0x38 || payload), checksum sha256d(...)[:4].
 * @param {Uint8Array} payload 20 bytes
 * @returns {Promise<string>}
 */
export async function addressFromPayload(payload) {
  if (!(payload instanceof Uint8Array) || payload.length !== PAYLOAD_LENGTH) {
    throw new TypeError("an address payload is 20 bytes");
  }
  const raw = concat(Uint8Array.of(ADDRESS_VERSION), payload);
  return b58encode(concat(raw, (await sha256d(raw)).subarray(0, 4)));
}

/**
 * The address of a 32-byte Ed25519 public key: over sha256(public key)[:20] (needs a secure
 * context).
 * @param {Uint8Array} publicKey
 * @returns {Promise<string>}
 */
export async function addressFromPublicKey(publicKey) {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new TypeError("an Ed25519 public key is 32 bytes");
  }
  return addressFromPayload((await sha256(publicKey)).subarray(0, PAYLOAD_LENGTH));
}

function pyStrip(text) {
  const chars = [...text];
  let start = 0;
  let end = chars.length;
  while (start < end && PY_WHITESPACE.has(chars[start])) start++;
  while (end > start && PY_WHITESPACE.has(chars[end - 1])) end--;
  return chars.slice(start, end).join("");
}

/**
 * Whether `text` is a valid pyBTC address, with pybtc.keys.decode_address's checks in its order
 * and its messages (docs/protocol.md §3.3): a string, no spaces around it, 34 characters, all
 * Base58 (naming the first that is not, with a hint for 0, O, I and l), 25 bytes, version 0x38,
 * and the checksum ("a character is mistyped"). Only the last check needs SHA-256: without a
 * secure context it throws a SecureContextError.
 * @param {unknown} text
 * @returns {Promise<{ok: true, payload: Uint8Array} | {ok: false, message: string}>}
 */
export async function checkAddress(text) {
  if (typeof text !== "string") return { ok: false, message: "an address must be a string" };
  if (text !== pyStrip(text)) {
    return { ok: false, message: "an address must not have spaces around it" };
  }
  const chars = [...text]; // Python counts code points, not UTF-16 units
  if (chars.length !== ADDRESS_LENGTH) {
    const message = `an address has ${ADDRESS_LENGTH} characters, this one has ${chars.length}`;
    return { ok: false, message };
  }
  const decoded = b58decode(chars);
  if (decoded.message) return { ok: false, message: decoded.message };
  const raw = decoded.bytes;
  if (raw.length !== 1 + PAYLOAD_LENGTH + 4) {
    return { ok: false, message: "an address decodes to 25 bytes, this one does not" };
  }
  if (raw[0] !== ADDRESS_VERSION) {
    const version = `0x${raw[0].toString(16).padStart(2, "0")}`;
    const message = `unknown address version ${version} (pyBTC addresses start with P)`;
    return { ok: false, message };
  }
  const body = raw.subarray(0, -4);
  if (!equalBytes((await sha256d(body)).subarray(0, 4), raw.subarray(-4))) {
    return { ok: false, message: "address checksum does not match: a character is mistyped" };
  }
  return { ok: true, payload: body.slice(1) };
}

// -- amounts (docs/protocol.md §2.1; display form, not consensus) ------------------------------

/**
 * An amount typed by a user ("1.5", "0.00000001") as exact base units, like
 * pybtc.encoding.parse_amount: strips spaces and tabs only, then ASCII digits with at most one
 * decimal point, at most 8 decimal places (trailing zeros count), at most MAX_MONEY; never
 * rounds; "0" is allowed. Throws an Error with pyBTC's message, or a TypeError for a non-string.
 * @param {string} text
 * @returns {bigint}
 */
export function parseAmount(text) {
  if (typeof text !== "string") throw new TypeError("an amount must be a string");
  const cleaned = text.replace(/^[ \t]+|[ \t]+$/g, "");
  if (!/^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/.test(cleaned)) {
    throw new Error("an amount is digits with at most one decimal point, like 1.25");
  }
  const [rawWhole, frac = ""] = cleaned.split(".");
  if (frac.length > 8) throw new Error("an amount has at most 8 decimal places");
  const whole = rawWhole.replace(/^0+/, "");
  if (whole.length > 8) throw new Error("an amount cannot exceed 21,000,000 pyBTC");
  const units = BigInt(whole || "0") * COIN + BigInt(frac.padEnd(8, "0"));
  if (units > MAX_MONEY) throw new Error("an amount cannot exceed 21,000,000 pyBTC");
  return units;
}

/**
 * Base units as pyBTC with 8 decimals, like pybtc.format_amount: 150000000 -> "1.50000000".
 * @param {bigint | number} units
 * @returns {string}
 */
export function formatAmount(units) {
  const n = bigIntArg(units, "units");
  const abs = n < 0n ? -n : n;
  return `${n < 0n ? "-" : ""}${abs / COIN}.${String(abs % COIN).padStart(8, "0")}`;
}

// -- keys and signatures ------------------------------------------------------------------------

function base64urlToBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function importSeed(seed, extractable) {
  const pkcs8 = concat(PKCS8_ED25519_PREFIX, seed);
  return subtle().importKey("pkcs8", pkcs8, { name: "Ed25519" }, extractable, ["sign"]);
}

async function withAddress(seed, publicKey) {
  const address = hasSubtleCrypto() ? await addressFromPublicKey(publicKey) : null;
  return { seed, publicKey, address };
}

/**
 * The key of a 32-byte Ed25519 seed (RFC 8032's private key). `address` is null when the page is
 * not a secure context (no SHA-256). Throws a SecureContextError in mode "none".
 * @param {Uint8Array | string} seed 32 bytes, or 64 hex digits
 * @returns {Promise<{seed: Uint8Array, publicKey: Uint8Array, address: string | null}>}
 */
export async function keyFromSeed(seed) {
  const bytes = bytesArg(seed, 32, "an Ed25519 seed").slice();
  const mode = cryptoMode();
  if (mode === "webcrypto") {
    const jwk = await subtle().exportKey("jwk", await importSeed(bytes, true));
    return withAddress(bytes, base64urlToBytes(jwk.x));
  }
  if (mode === "fallback") {
    const { publicKey, secretKey } = nacl().sign.keyPair.fromSeed(bytes);
    secretKey.fill(0);
    return withAddress(bytes, publicKey);
  }
  throw new SecureContextError();
}

/**
 * A fresh random key: an extractable WebCrypto Ed25519 key exported as JWK (`d` is the seed,
 * `x` the public key), or in fallback a seed from crypto.getRandomValues and tweetnacl.
 * @returns {Promise<{seed: Uint8Array, publicKey: Uint8Array, address: string | null}>}
 */
export async function generateKey() {
  const mode = cryptoMode();
  if (mode === "webcrypto") {
    const pair = await subtle().generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
    const jwk = await subtle().exportKey("jwk", pair.privateKey);
    return withAddress(base64urlToBytes(jwk.d), base64urlToBytes(jwk.x));
  }
  if (mode === "fallback") {
    return keyFromSeed(globalThis.crypto.getRandomValues(new Uint8Array(32)));
  }
  throw new SecureContextError();
}

/**
 * A 64-byte Ed25519 signature (RFC 8032, deterministic) of `message` by `key.seed`.
 * @param {{seed: Uint8Array}} key
 * @param {Uint8Array} message
 * @returns {Promise<Uint8Array>}
 */
export async function sign(key, message) {
  const seed = bytesArg(key?.seed, 32, "key.seed");
  if (!(message instanceof Uint8Array)) throw new TypeError("the message must be a Uint8Array");
  const mode = cryptoMode();
  if (mode === "webcrypto") {
    const signing = await importSeed(seed, false);
    return new Uint8Array(await subtle().sign({ name: "Ed25519" }, signing, message));
  }
  if (mode === "fallback") {
    const { secretKey } = nacl().sign.keyPair.fromSeed(seed);
    try {
      return nacl().sign.detached(message, secretKey);
    } finally {
      secretKey.fill(0); // tweetnacl's secret key is the seed and the public key
    }
  }
  throw new SecureContextError();
}

function jsonInteger(value, what) {
  const n = bigIntArg(value, what);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`${what} is too large for this wallet (above 2**53 - 1)`);
  }
  return Number(n);
}

/**
 * A transfer from `key`'s address, signed for `networkId`, as the JSON object of Python's
 * `Transaction.to_dict()` (sender, recipient, amount, fee, nonce, timestamp, public_key,
 * signature, txid; integers as Numbers). Refuses what the ledger would refuse on its own:
 * an invalid recipient (its checkAddress message, prefixed "recipient: "), an amount of 0,
 * amount + fee above MAX_MONEY, a key whose public key or address does not match its seed.
 * Needs a secure context (address and txid).
 * @param {{seed: Uint8Array, publicKey?: Uint8Array, address?: string}} key
 * @param {{recipient: string, amount: bigint|number, fee: bigint|number,
 *   nonce: bigint|number, timestamp: bigint|number}} fields
 * @param {string} networkId e.g. "pybtc-regtest"
 * @returns {Promise<{sender: string, recipient: string, amount: number, fee: number,
 *   nonce: number, timestamp: number, public_key: string, signature: string, txid: string}>}
 */
export async function signTransaction(key, fields, networkId) {
  subtle(); // fail early, before signing, when the address and txid cannot be computed
  const own = await keyFromSeed(key?.seed);
  if (key.publicKey !== undefined && !equalBytes(key.publicKey, own.publicKey)) {
    throw new Error("key.publicKey is not the public key of key.seed");
  }
  if (key.address !== undefined && key.address !== own.address) {
    throw new Error("key.address is not the address of key.seed");
  }
  const recipient = await checkAddress(fields.recipient);
  if (!recipient.ok) throw new Error(`recipient: ${recipient.message}`);
  const amount = bigIntArg(fields.amount, "amount");
  const fee = bigIntArg(fields.fee, "fee");
  if (amount < 1n) throw new RangeError("amount must be at least 1 base unit");
  if (fee < 0n) throw new RangeError(`fee must be between 0 and ${MAX_MONEY} base units`);
  if (amount + fee > MAX_MONEY) throw new RangeError("amount plus fee exceeds the money supply");
  const tx = {
    sender: own.address,
    recipient: fields.recipient,
    amount: jsonInteger(amount, "amount"),
    fee: jsonInteger(fee, "fee"),
    nonce: jsonInteger(fields.nonce, "nonce"),
    timestamp: jsonInteger(fields.timestamp, "timestamp"),
    public_key: bytesToHex(own.publicKey),
    signature: "",
  };
  u64(tx.nonce, "nonce"); // negative values are refused here, before signing
  u64(tx.timestamp, "timestamp");
  tx.signature = bytesToHex(await sign(own, signingMessage(tx, networkId)));
  return { ...tx, txid: await txid(tx) };
}

// -- the wallet file (docs/wallet.md, format 1) ----------------------------------------------
// The checks, their order and their messages are pyBTC's (services/wallet/keyfile.py), so the
// browser and `pybtc wallet` say the same about the same file (tests/vectors/wallet_file.json).

function associatedData(network, address, publicKeyHex) {
  const text = `${WALLET_FORMAT}:${WALLET_VERSION}:${network}:${address}:${publicKeyHex}`;
  return new TextEncoder().encode(text);
}

/** The AES-256-GCM key: PBKDF2-HMAC-SHA256 over the passphrase's UTF-8 (never normalized). */
async function walletKey(passphrase, salt, iterations) {
  if (typeof passphrase !== "string") throw new TypeError("the passphrase must be a string");
  if (LONE_SURROGATE.test(passphrase)) {
    throw new WalletFileError("the passphrase is not valid text (it cannot be written as UTF-8)");
  }
  const s = subtle();
  const secret = new TextEncoder().encode(passphrase);
  const base = await s.importKey("raw", secret, "PBKDF2", false, ["deriveBits"]);
  const bits = await s.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, base, 256);
  return s.importKey("raw", bits, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

function inIterationRange(iterations) {
  return (
    Number.isInteger(iterations) && iterations >= MIN_ITERATIONS && iterations <= MAX_ITERATIONS
  );
}

/**
 * The wallet file (format 1) holding `key`'s seed for `network`, as a JSON-ready object:
 * PBKDF2-HMAC-SHA256 (passphrase as UTF-8, 16-byte salt, `iterations`) gives the AES-256-GCM key
 * that encrypts the seed under a 12-byte nonce with associated data
 * "pybtc-wallet:1:<network>:<address>:<public_key>". Salt and nonce are random unless given
 * (tests). Refuses, as a WalletFileError with pyBTC's words, an empty passphrase, a network not
 * in NETWORKS, iterations outside 100,000..10,000,000, a salt or nonce of the wrong size.
 * Needs a secure context.
 * @param {{seed: Uint8Array}} key
 * @param {string} passphrase
 * @param {string} network "devnet" or "regtest"
 * @param {{iterations?: number, salt?: Uint8Array|string, nonce?: Uint8Array|string}} [options]
 * @returns {Promise<object>} the file: {format, version, network, address, public_key, kdf,
 *   cipher, ciphertext}
 */
export async function encryptWallet(key, passphrase, network, options = {}) {
  const { iterations = WALLET_ITERATIONS } = options;
  if (typeof passphrase !== "string") throw new TypeError("the passphrase must be a string");
  if (!passphrase) throw new WalletFileError("the passphrase is empty");
  if (!NETWORKS.includes(network)) {
    throw new WalletFileError(`unknown network ${pyRepr(network)} (known: ${NETWORKS.join(", ")})`);
  }
  if (!inIterationRange(iterations)) {
    throw new WalletFileError(`iterations must be ${MIN_ITERATIONS} to ${MAX_ITERATIONS}`);
  }
  const given = (value) => (typeof value === "string" ? hexToBytes(value) : value);
  const random = (size) => globalThis.crypto.getRandomValues(new Uint8Array(size));
  const salt = options.salt === undefined ? random(16) : given(options.salt);
  const nonce = options.nonce === undefined ? random(12) : given(options.nonce);
  const sized = (bytes, size) => bytes instanceof Uint8Array && bytes.length === size;
  if (!sized(salt, 16) || !sized(nonce, 12)) {
    throw new WalletFileError("the salt is 16 bytes and the nonce 12");
  }
  subtle();
  const own = await keyFromSeed(key?.seed);
  const publicKey = bytesToHex(own.publicKey);
  const aesKey = await walletKey(passphrase, salt, iterations);
  const additionalData = associatedData(network, own.address, publicKey);
  const gcm = { name: "AES-GCM", iv: nonce, additionalData, tagLength: 128 };
  const sealed = await subtle().encrypt(gcm, aesKey, own.seed);
  return {
    format: WALLET_FORMAT,
    version: WALLET_VERSION,
    network,
    address: own.address,
    public_key: publicKey,
    kdf: { name: "PBKDF2-HMAC-SHA256", iterations, salt: bytesToHex(salt) },
    cipher: { name: "AES-256-GCM", nonce: bytesToHex(nonce) },
    ciphertext: bytesToHex(new Uint8Array(sealed)),
  };
}

function fileObject(what, value, keys) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new WalletFileError(`${what} must be a JSON object`);
  }
  const missing = keys.filter((k) => !Object.hasOwn(value, k));
  if (missing.length) {
    throw new WalletFileError(`${what} has no ${missing.map(pyStr).join(", ")}`);
  }
  const unknown = Object.keys(value).filter((k) => !keys.includes(k)).sort(byCodePoint);
  if (unknown.length) {
    throw new WalletFileError(`${what} has unknown fields ${unknown.map(pyStr).join(", ")}`);
  }
  return value;
}

function fileHex(what, value, size) {
  if (typeof value !== "string" || value.length !== 2 * size || !HEX.test(value)) {
    throw new WalletFileError(`the file's ${what} must be ${2 * size} lowercase hex digits`);
  }
  return hexToBytes(value);
}

/** The checks that need no passphrase (pybtc's parse_key_file): all run before the KDF. */
async function parseWalletFile(doc, expectedNetwork) {
  if (typeof doc === "string") {
    if (new TextEncoder().encode(doc).length > MAX_FILE_SIZE) {
      const limit = `${MAX_FILE_SIZE / 1024} KiB`;
      throw new WalletFileError(`this is larger than ${limit}: not a wallet file`);
    }
    try {
      doc = JSON.parse(doc);
    } catch (error) {
      throw new WalletFileError(`this is not a wallet file (not valid JSON: ${error.message})`);
    }
  }
  const top = fileObject("the wallet file", doc, WALLET_FIELDS);
  if (top.format !== WALLET_FORMAT) {
    throw new WalletFileError(`not a pyBTC wallet file ("format" is not "${WALLET_FORMAT}")`);
  }
  if (top.version !== WALLET_VERSION) {
    throw new WalletFileError(
      `wallet file version ${pyRepr(top.version)} is not one this pyBTC reads ` +
        `(it reads ${WALLET_VERSION})`,
    );
  }
  const { network, address, kdf, cipher } = top;
  if (!NETWORKS.includes(network)) {
    throw new WalletFileError(
      `the file's network ${pyRepr(network)} is unknown (known: ${NETWORKS.join(", ")})`,
    );
  }
  if (expectedNetwork !== undefined && network !== expectedNetwork) {
    throw new WalletFileError(`this wallet file is for ${network}, not ${expectedNetwork}`);
  }
  const checked = await checkAddress(address);
  if (!checked.ok) throw new WalletFileError(`the file's address is not valid: ${checked.message}`);
  const publicKey = fileHex("public_key", top.public_key, 32);
  if ((await addressFromPublicKey(publicKey)) !== address) {
    throw new WalletFileError("the file's address is not the address of its public key");
  }
  fileObject('"kdf"', kdf, ["name", "iterations", "salt"]);
  if (kdf.name !== "PBKDF2-HMAC-SHA256") {
    throw new WalletFileError(
      `unsupported key derivation ${pyRepr(kdf.name)} (expected "PBKDF2-HMAC-SHA256")`,
    );
  }
  if (typeof kdf.iterations !== "number" || !inIterationRange(kdf.iterations)) {
    throw new WalletFileError(
      "kdf iterations must be a whole number from 100,000 to 10,000,000; " +
        `this file says ${pyRepr(kdf.iterations)}`,
    );
  }
  fileObject('"cipher"', cipher, ["name", "nonce"]);
  if (cipher.name !== "AES-256-GCM") {
    throw new WalletFileError(`unsupported cipher ${pyRepr(cipher.name)} (expected "AES-256-GCM")`);
  }
  return {
    network,
    address,
    publicKey: top.public_key,
    iterations: kdf.iterations,
    salt: fileHex("kdf salt", kdf.salt, 16),
    nonce: fileHex("cipher nonce", cipher.nonce, 12),
    ciphertext: fileHex("ciphertext", top.ciphertext, 48),
  };
}

/**
 * Opens a wallet file (the parsed object, or its JSON text) with `passphrase`; returns its key.
 * With pybtc's checks, in pybtc's order and words (services/wallet/keyfile.py), each failure a
 * WalletFileError. Before the (slow) KDF, without the passphrase: exact fields (…"has no
 * 'salt'", …"has unknown fields 'label'"), format, version ("wallet file version 2 is not one
 * this pyBTC reads (it reads 1)"), a known network and, if `expectedNetwork` is given, that
 * one ("this wallet file is for devnet, not regtest"), a valid address that is the public
 * key's, the kdf and cipher names, "kdf iterations must be a whole number from 100,000 to
 * 10,000,000; this file says N", and lowercase hex of the right sizes. Then "wrong passphrase,
 * or the file was changed" when AES-GCM refuses (any edited field, or the wrong passphrase),
 * and "the file's public key is not the key of the secret inside it" when the seed inside does
 * not give the file's public key. Needs a secure context.
 * @param {object | string} doc
 * @param {string} passphrase used exactly as typed (UTF-8, no Unicode normalization)
 * @param {string} [expectedNetwork] e.g. "devnet"
 * @returns {Promise<{seed: Uint8Array, publicKey: Uint8Array, address: string}>}
 */
export async function decryptWallet(doc, passphrase, expectedNetwork) {
  const file = await parseWalletFile(doc, expectedNetwork);
  const aesKey = await walletKey(passphrase, file.salt, file.iterations);
  const additionalData = associatedData(file.network, file.address, file.publicKey);
  let seed;
  try {
    const gcm = { name: "AES-GCM", iv: file.nonce, additionalData, tagLength: 128 };
    seed = new Uint8Array(await subtle().decrypt(gcm, aesKey, file.ciphertext));
  } catch {
    throw new WalletFileError(CANNOT_OPEN);
  }
  const key = await keyFromSeed(seed);
  if (bytesToHex(key.publicKey) !== file.publicKey) {
    throw new WalletFileError("the file's public key is not the key of the secret inside it");
  }
  if (key.address !== file.address) {
    throw new WalletFileError("the file's address is not the address of the secret inside it");
  }
  return key;
}
