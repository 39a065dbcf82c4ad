"""Vectors of the objects that are hashed: transactions.json, merkle.json and blocks.json.

docs/protocol.md sections 4, 5 and 7 describe what these values are. The transfer signed here
is the one spent in the small regtest chain of blocks.json, so the files tell one story.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from pybtc import COIN, DEVNET, MAX_MONEY, REGTEST, Block, MemoryChain, PrivateKey, Transaction
from pybtc.block import HEADER_SIZE, NONCE_OFFSET, BlockHeader, merkle_root
from pybtc.encoding import U64_MAX, sha256d
from pybtc.errors import ValidationError
from pybtc.keys import address_from_public_key, verify_signature
from pybtc.params import NETWORKS
from pybtc.pow import bits_to_target, block_work, hash_meets_target
from pybtc.state import BlockUndo, connect_block
from pybtc.transaction import TX_FIELDS
from pybtc.validation import Account, validate_transaction, validate_transaction_state
from tests.vectors.common import KEYS, NETWORK_IDS, T0, bits_hex, rejection, target_hex

# -- transactions.json ------------------------------------------------------------------------


def transfer() -> Transaction:
    """Key 1 pays key 2 1.5 pyBTC on regtest (spent in the chain of blocks.json)."""
    return Transaction.create(
        KEYS[1],
        KEYS[2].address,
        150_000_000,
        fee=1_000,
        nonce=0,
        timestamp=T0 + 7,
        network_id=REGTEST.network_id,
    )


def sample_transactions() -> list[tuple[str, Transaction, PrivateKey | None, str | None]]:
    """(name, transaction, signer, network signed for) for every transaction vector."""
    devnet = Transaction.create(
        KEYS[2],
        KEYS[3].address,
        1,
        fee=0,
        nonce=7,
        timestamp=T0 + 3_600,
        network_id=DEVNET.network_id,
    )
    wide = Transaction.create(
        KEYS[3],
        KEYS[1].address,
        MAX_MONEY - 1,
        fee=1,
        nonce=2**32,
        timestamp=0,
        network_id=REGTEST.network_id,
    )
    coinbase = Transaction.coinbase(KEYS[1].address, 50 * COIN + 1_000, 3, T0 + 10)
    return [
        ("transfer on regtest", transfer(), KEYS[1], REGTEST.network_id),
        ("transfer on devnet, fee 0", devnet, KEYS[2], DEVNET.network_id),
        ("largest amount, 2**32 nonce, timestamp 0", wide, KEYS[3], REGTEST.network_id),
        ("coinbase of block 3 (regtest)", coinbase, None, None),
        ("genesis coinbase (both networks)", REGTEST.genesis.transactions[0], None, None),
    ]


def transactions_vectors() -> dict[str, Any]:
    """Fields -> body, signing messages, signature, encoding, txid and JSON."""
    txs = []
    for name, tx, signer, network in sample_transactions():
        txs.append(
            {
                "case": name,
                "fields": {field: getattr(tx, field) for field in TX_FIELDS},
                "body": tx.body_bytes().hex(),
                "signing_messages": {n: tx.signing_message(n).hex() for n in NETWORK_IDS},
                "signed_for": network,
                "signer_seed": signer.seed.hex() if signer else None,
                "signature": tx.signature,
                "signature_valid": {
                    n: verify_signature(
                        bytes.fromhex(tx.public_key),
                        bytes.fromhex(tx.signature),
                        tx.signing_message(n),
                    )
                    for n in NETWORK_IDS
                },
                "encoded": tx.encode().hex(),
                "txid": tx.txid,
                "json": tx.to_dict(),
            }
        )
    return {
        "description": "Transactions (docs/protocol.md section 4): body, signing message per "
        "network id, Ed25519 signature, encoded bytes, txid = sha256d(encoded), JSON form; "
        "then rejected inputs with their reason codes (section 7).",
        "transactions": txs,
        "rejections": transaction_rejections(),
    }


def neutral_key_forgery() -> dict[str, Any]:
    """A spend from the address of the neutral point, "signed" with R = neutral point, S = 0.

    That signature passes plain RFC 8032 verification for every message; the strong-key rule
    refuses the key, so coins at that address cannot be moved by anyone.
    """
    neutral = (1).to_bytes(32, "little")
    return Transaction(
        address_from_public_key(neutral),
        KEYS[2].address,
        150_000_000,
        1_000,
        0,
        T0 + 7,
        neutral.hex(),
        (neutral + bytes(32)).hex(),
    ).to_dict()


def transaction_rejections() -> list[dict[str, Any]]:
    """Inputs refused at the decode, transaction and state levels, plus two accepted ones."""
    good = transfer()
    base = good.to_dict()

    def edit(**changes: object) -> dict[str, Any]:
        data = {k: v for k, v in base.items() if k != "txid"}
        return data | changes

    def resigned(**changes: Any) -> dict[str, Any]:
        tx = replace(good, signature="", **changes)
        signature = KEYS[1].sign(tx.signing_message(REGTEST.network_id)).hex()
        return replace(tx, signature=signature).to_dict()

    no_field = {k: v for k, v in base.items() if k != "fee"}
    flipped = ("0" if good.signature[0] != "0" else "1") + good.signature[1:]
    decode_cases: list[tuple[str, object]] = [
        ("not an object", [base]),
        ("float amount", edit(amount=1.5)),
        ("boolean amount", edit(amount=True)),
        ("string amount", edit(amount="150000000")),
        ("negative amount", edit(amount=-1)),
        ("amount over MAX_MONEY", edit(amount=MAX_MONEY + 1)),
        ("negative fee", edit(fee=-1)),
        ("negative nonce", edit(nonce=-1)),
        ("nonce of 2**64", edit(nonce=2**64)),
        ("missing fee", no_field),
        ("unknown field", edit(memo="hi")),
        ("uppercase public_key", edit(public_key=good.public_key.upper())),
        ("63-byte signature", edit(signature=good.signature[:126])),
        ("mistyped recipient", edit(recipient=base["recipient"][:-1] + "z")),
        ("txid that is not the hash", base | {"txid": "00" * 32}),
    ]
    tx_cases: list[tuple[str, object]] = [
        ("signed for regtest, checked on devnet", base | {"network": DEVNET.network_id}),
        (
            "a coinbase sent as a transaction",
            Transaction.coinbase(good.recipient, 1, 5, T0).to_dict(),
        ),
        ("amount 0", resigned(amount=0)),
        ("amount + fee over MAX_MONEY", resigned(amount=MAX_MONEY, fee=1)),
        ("no public_key", edit(public_key="", signature="")),
        ("forged spend from the neutral-point key's address", neutral_key_forgery()),
        ("another key's public_key", resigned(public_key=KEYS[2].public_key.hex())),
        ("signature changed", edit(signature=flipped)),
    ]
    out: list[dict[str, Any]] = []
    for name, data in decode_cases:
        result = rejection(partial(Transaction.from_dict, data))
        out.append({"case": name, "level": "decode", "json": data} | result)
    for name, data in tx_cases:
        assert isinstance(data, dict)
        network = data.pop("network", REGTEST.network_id)
        params = next(p for p in NETWORKS.values() if p.network_id == network)
        tx = Transaction.from_dict(data)
        result = rejection(partial(validate_transaction, tx, params))
        out.append(
            {"case": name, "level": "transaction", "network": network, "json": data} | result
        )
    state_cases = [
        ("nonce already used", Account(10 * COIN, 1)),
        ("nonce in the future", Account(10 * COIN, 0)),
        ("one unit short of amount + fee", Account(150_000_999, 0)),
        ("balance exactly amount + fee", Account(150_001_000, 0)),
        ("fresh account, funded", Account(10 * COIN, 0)),
    ]
    for name, account in state_cases:
        tx = good if name != "nonce in the future" else Transaction.from_dict(resigned(nonce=1))
        try:
            validate_transaction_state(tx, account)
            verdict: dict[str, Any] = {"reason": None, "message": None}
        except ValidationError as exc:
            verdict = {"reason": str(exc.reason), "message": exc.message}
        out.append(
            {
                "case": name,
                "level": "state",
                "network": REGTEST.network_id,
                "json": tx.to_dict(),
                "account": {"balance": account.balance, "nonce": account.nonce},
            }
            | verdict
        )
    return out


# -- merkle.json ------------------------------------------------------------------------------


def merkle_levels(txids: list[str]) -> list[list[str]]:
    """The tree level by level, computed here independently of pybtc.block.merkle_root."""
    level = [sha256d(b"\x00" + bytes.fromhex(t)) for t in txids]
    levels = [level]
    while len(level) > 1:
        up = [sha256d(b"\x01" + a + b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = up + ([level[-1]] if len(level) % 2 else [])
        levels.append(level)
    return [[node.hex() for node in lvl] for lvl in levels]


def merkle_vectors() -> dict[str, Any]:
    """Roots (and every level) over 1 to 7 txids."""
    txids = [sha256d(f"pybtc vector txid {i}".encode()).hex() for i in range(1, 8)]
    cases = []
    for n in range(1, 8):
        levels = merkle_levels(txids[:n])
        root = merkle_root(txids[:n])
        assert levels[-1] == [root]
        cases.append({"txids": txids[:n], "levels": levels, "root": root})
    return {
        "description": "Merkle roots (docs/protocol.md section 5): leaf = sha256d(0x00 || txid), "
        "node = sha256d(0x01 || left || right), an odd last node moves up unchanged. "
        "txid i is sha256d(b'pybtc vector txid <i>'); levels[0] are the leaves.",
        "cases": cases,
    }


# -- blocks.json ------------------------------------------------------------------------------


def regtest_chain() -> tuple[MemoryChain, list[Block]]:
    """Regtest blocks 2 and 3 on genesis, mined to key 1; block 3 spends in `transfer()`."""
    chain = MemoryChain(REGTEST)
    now = T0 + 100
    block2 = chain.next_block([], KEYS[1].address, timestamp=T0 + 5)
    chain.add_block(block2, now)
    block3 = chain.next_block([transfer()], KEYS[1].address, timestamp=T0 + 10)
    chain.add_block(block3, now)
    return chain, [block2, block3]


def header_vector(name: str, header: BlockHeader) -> dict[str, Any]:
    """Every derived value of a header."""
    target = bits_to_target(header.bits)
    return {
        "case": name,
        "fields": {
            "index": str(header.index),
            "timestamp": str(header.timestamp),
            "previous_hash": header.previous_hash,
            "merkle_root": header.merkle_root,
            "bits": header.bits,
            "nonce": str(header.nonce),
        },
        "bits_hex": bits_hex(header.bits),
        "header": header.encode().hex(),
        "prefix": header.prefix_bytes().hex(),
        "hash": header.hash,
        "target": target_hex(target),
        "meets_target": hash_meets_target(bytes.fromhex(header.hash), target),
        "work": str(block_work(header.bits)),
    }


def blocks_vectors() -> dict[str, Any]:
    """Headers byte for byte, and a short valid regtest chain with its account state."""
    chain, blocks = regtest_chain()
    headers = [
        header_vector("devnet genesis", DEVNET.genesis.header),
        header_vector("regtest genesis", REGTEST.genesis.header),
        header_vector("regtest block 2", blocks[0].header),
        header_vector("regtest block 3", blocks[1].header),
        header_vector(
            "synthetic, nonce 0x0123456789abcdef",
            BlockHeader(
                123_456, T0 + 12_345, DEVNET.genesis.hash, "ab" * 32, 0x1D00FFFF, 0x0123456789ABCDEF
            ),
        ),
        header_vector(
            "every integer at its maximum",
            BlockHeader(U64_MAX, U64_MAX, "ff" * 32, "ee" * 32, 0x207FFFFF, U64_MAX),
        ),
    ]
    steps = []
    state: dict[str, Account] = {}
    state.update(connect_block(REGTEST.genesis, lambda a: state.get(a, Account()), REGTEST)[0])
    for block in blocks:
        changed, undo = connect_block(block, lambda a: state.get(a, Account()), REGTEST)
        state.update(changed)
        steps.append(
            {
                "block": block.to_dict(),
                "header": block.header.encode().hex(),
                "accounts_after": {
                    a: {"balance": acct.balance, "nonce": acct.nonce}
                    for a, acct in sorted(state.items())
                },
                "undo": undo.to_dict(),
                "chain_work": str(
                    sum(block_work(b.header.bits) for b in chain.main_chain()[: block.index])
                ),
            }
        )
    undo = steps[-1]["undo"]
    undo_cases: list[tuple[str, object]] = [
        ("block_hash in uppercase", undo | {"block_hash": undo["block_hash"].upper()}),
        ("block_hash of 31 bytes", undo | {"block_hash": undo["block_hash"][:62]}),
        ("block_hash not a string", undo | {"block_hash": 7}),
        ("no block_hash", {"previous": undo["previous"]}),
    ]
    return {
        "description": "Block headers (docs/protocol.md section 5): the 92-byte header, its "
        f"{NONCE_OFFSET}-byte prefix before the nonce, hash = sha256d(header). Header integers "
        "are decimal strings here; in the block JSON they are JSON numbers. 'chain' is regtest "
        "blocks 2 and 3 (valid, mined to key 1) with the accounts and undo data after each; "
        "'undo_rejections' are undo records that decoding refuses (section 8.3).",
        "header_size": HEADER_SIZE,
        "nonce_offset": NONCE_OFFSET,
        "headers": headers,
        "chain": steps,
        "chain_validated_at": T0 + 100,
        "undo_rejections": [
            {"case": name, "json": data} | rejection(partial(BlockUndo.from_dict, data))
            for name, data in undo_cases
        ],
    }
