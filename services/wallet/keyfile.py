"""The wallet file (format 1 of docs/wallet.md): an Ed25519 seed under a passphrase.

    key        = PBKDF2-HMAC-SHA256(UTF-8 passphrase, 16-byte salt, iterations, 32 bytes)
    ciphertext = AES-256-GCM(key, 12-byte nonce, seed, associated data) -- 32 bytes + 16-byte tag
    associated = UTF-8 of "pybtc-wallet:1:<network>:<address>:<public_key>"

The browser wallet writes and reads the same JSON object with WebCrypto, so either opens what
the other wrote; tests/vectors/wallet_file.json pins both. Reading is strict: exact keys and
types, lowercase hex of the right lengths, the iteration count bounded before any key is
derived (a hostile file cannot make the reader spin), and after decrypting the seed must give
the public key and address written in the file. Every refusal is one `KeyFileError` whose
message a user can act on; only `write_key_file` and `read_key_file` touch the disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from pybtc import NETWORKS, AddressError, PrivateKey, address_from_public_key, decode_address

FORMAT = "pybtc-wallet"
VERSION = 1
KDF_NAME = "PBKDF2-HMAC-SHA256"
CIPHER_NAME = "AES-256-GCM"
DEFAULT_ITERATIONS = 600_000
"""What writers use: OWASP's figure for PBKDF2-HMAC-SHA256."""
MIN_ITERATIONS = 100_000
MAX_ITERATIONS = 10_000_000
"""Readers refuse counts outside MIN..MAX before deriving anything."""
SALT_SIZE = 16
NONCE_SIZE = 12
SEED_SIZE = 32
TAG_SIZE = 16
MAX_FILE_SIZE = 64 * 1024
"""A wallet file is under 1 KiB; anything past this is not one and is not parsed."""

CANNOT_OPEN = "wrong passphrase, or the file was changed"
_TOP_KEYS = ("format", "version", "network", "address", "public_key", "kdf", "cipher", "ciphertext")
_KDF_KEYS = ("name", "iterations", "salt")
_CIPHER_KEYS = ("name", "nonce")


class KeyFileError(Exception):
    """A wallet file cannot be written, read or opened; `message` says why, for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class KeyFile:
    """A wallet file that passed every check that needs no passphrase."""

    network: str
    address: str
    public_key: str
    iterations: int
    salt: bytes
    nonce: bytes
    ciphertext: bytes


def associated_data(network: str, address: str, public_key: str) -> bytes:
    """What AES-GCM authenticates beside the seed: network, address and public key (hex)."""
    return f"{FORMAT}:{VERSION}:{network}:{address}:{public_key}".encode()


def derive_key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    """The 32-byte AES key: PBKDF2-HMAC-SHA256 over the passphrase's UTF-8 bytes."""
    try:
        secret = passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFileError(
            "the passphrase is not valid text (it cannot be written as UTF-8)"
        ) from None
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return kdf.derive(secret)


def encrypt_key(
    key: PrivateKey,
    passphrase: str,
    network: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """The wallet file of `key` for `network` (salt and nonce fresh unless given, for vectors)."""
    if not passphrase:
        raise KeyFileError("the passphrase is empty")
    if network not in NETWORKS:
        raise KeyFileError(f"unknown network {network!r} (known: {', '.join(sorted(NETWORKS))})")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise KeyFileError(f"iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}")
    salt = secrets.token_bytes(SALT_SIZE) if salt is None else salt
    nonce = secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce
    if len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
        raise KeyFileError(f"the salt is {SALT_SIZE} bytes and the nonce {NONCE_SIZE}")
    public_key = key.public_key.hex()
    aad = associated_data(network, key.address, public_key)
    sealed = AESGCM(derive_key(passphrase, salt, iterations)).encrypt(nonce, key.seed, aad)
    return {
        "format": FORMAT,
        "version": VERSION,
        "network": network,
        "address": key.address,
        "public_key": public_key,
        "kdf": {"name": KDF_NAME, "iterations": iterations, "salt": salt.hex()},
        "cipher": {"name": CIPHER_NAME, "nonce": nonce.hex()},
        "ciphertext": sealed.hex(),
    }


def parse_key_file(doc: object, *, network: str | None = None) -> KeyFile:
    """Check everything a wallet file says without the passphrase (no key is derived here)."""
    top = _object("the wallet file", doc, _TOP_KEYS)
    if top["format"] != FORMAT:
        raise KeyFileError(f'not a pyBTC wallet file ("format" is not "{FORMAT}")')
    version = top["version"]
    if not _is_int(version) or version != VERSION:
        raise KeyFileError(
            f"wallet file version {version!r} is not one this pyBTC reads (it reads {VERSION})"
        )
    file_network = top["network"]
    if not isinstance(file_network, str) or file_network not in NETWORKS:
        raise KeyFileError(
            f"the file's network {file_network!r} is unknown (known: {', '.join(sorted(NETWORKS))})"
        )
    if network is not None and file_network != network:
        raise KeyFileError(f"this wallet file is for {file_network}, not {network}")
    address = top["address"]
    try:
        decode_address(address)
    except AddressError as exc:
        raise KeyFileError(f"the file's address is not valid: {exc.message}") from None
    public_key = _hex("public_key", top["public_key"], 32)
    if address_from_public_key(public_key) != address:
        raise KeyFileError("the file's address is not the address of its public key")
    kdf = _object('"kdf"', top["kdf"], _KDF_KEYS)
    if kdf["name"] != KDF_NAME:
        raise KeyFileError(f'unsupported key derivation {kdf["name"]!r} (expected "{KDF_NAME}")')
    iterations = kdf["iterations"]
    if not _is_int(iterations) or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise KeyFileError(
            f"kdf iterations must be a whole number from {MIN_ITERATIONS:,} to "
            f"{MAX_ITERATIONS:,}; this file says {iterations!r}"
        )
    cipher = _object('"cipher"', top["cipher"], _CIPHER_KEYS)
    if cipher["name"] != CIPHER_NAME:
        raise KeyFileError(f'unsupported cipher {cipher["name"]!r} (expected "{CIPHER_NAME}")')
    return KeyFile(
        network=file_network,
        address=address,
        public_key=public_key.hex(),
        iterations=iterations,
        salt=_hex("kdf salt", kdf["salt"], SALT_SIZE),
        nonce=_hex("cipher nonce", cipher["nonce"], NONCE_SIZE),
        ciphertext=_hex("ciphertext", top["ciphertext"], SEED_SIZE + TAG_SIZE),
    )


def decrypt_key(doc: object, passphrase: str, *, network: str | None = None) -> PrivateKey:
    """The private key in a wallet file; refuses a wrong passphrase and any edited field."""
    parsed = parse_key_file(doc, network=network)
    aes_key = derive_key(passphrase, parsed.salt, parsed.iterations)
    aad = associated_data(parsed.network, parsed.address, parsed.public_key)
    try:
        seed = AESGCM(aes_key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise KeyFileError(CANNOT_OPEN) from None
    key = PrivateKey(seed)
    # Only someone who knew the passphrase could write these: a file made wrongly, not a typo.
    if key.public_key.hex() != parsed.public_key:
        raise KeyFileError("the file's public key is not the key of the secret inside it")
    if key.address != parsed.address:  # pragma: no cover - follows from the public key check
        raise KeyFileError("the file's address is not the address of the secret inside it")
    return key


# -- the disk ------------------------------------------------------------------------------------


def write_key_file(path: Path | str, doc: dict[str, Any]) -> None:
    """Write `doc` to `path`, readable by its owner only (0600); never replace an existing file.

    The text goes to a temporary file in the same directory, is flushed to disk, then linked to
    `path` (which fails if `path` exists), so `path` never holds half a file.
    """
    path = Path(path)
    text = json.dumps(doc, indent=2) + "\n"
    if path.exists():
        raise KeyFileError(f"{path} exists already; not overwriting a wallet file")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_new(tmp, text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyFileError(f"{path} exists already; not overwriting a wallet file") from None
        except OSError:  # a file system without hard links: create the file itself, exclusively
            _write_new(path, text)
        _sync_directory(path.parent)
    except FileExistsError:
        raise KeyFileError(f"{path} exists already; not overwriting a wallet file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_key_file(path: Path | str) -> dict[str, Any]:
    """The JSON object in the wallet file at `path` (not yet checked: see `parse_key_file`)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise KeyFileError(f"no wallet file at {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_SIZE:
        raise KeyFileError(f"{path} is larger than {MAX_FILE_SIZE // 1024} KiB: not a wallet file")
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyFileError(f"{path} is not a wallet file (not valid JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{path} is not a wallet file (not a JSON object)")
    return doc


# -- helpers -------------------------------------------------------------------------------------


def _object(what: str, value: object, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KeyFileError(f"{what} must be a JSON object")
    missing = [k for k in keys if k not in value]
    if missing:
        raise KeyFileError(f"{what} has no {', '.join(repr(k) for k in missing)}")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise KeyFileError(f"{what} has unknown fields {', '.join(repr(k) for k in unknown)}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hex(what: str, value: object, size: int) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(f"[0-9a-f]{{{2 * size}}}", value):
        raise KeyFileError(f"the file's {what} must be {2 * size} lowercase hex digits")
    return bytes.fromhex(value)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the field {key!r} appears twice")
        result[key] = value
    return result


def _write_new(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # whatever the umask
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    """Make the new name durable (a crash right after must not lose the wallet)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
