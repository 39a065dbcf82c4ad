"""The ledger's SQLite database: blocks of every branch, the main chain, accounts, undo, mempool.

One file per node and network, in WAL mode with `synchronous=FULL`. Every change of chain state
happens inside `Store.transaction()` (BEGIN IMMEDIATE … COMMIT): connecting a block, or a whole
reorg, writes the accounts, undo record, indexes, tip and mempool together or not at all. A
process killed at any moment therefore restarts with the last committed tip and the account
state that belongs to it, and nothing is replayed.

Large integers (cumulative work) are stored as 64 zero-padded hex digits, so they sort as text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybtc import Account, Block, BlockHeader, BlockUndo, Transaction
from services.node.migrations import migrate

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    hash TEXT PRIMARY KEY,
    height INTEGER NOT NULL,
    previous_hash TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    bits INTEGER NOT NULL,
    tx_count INTEGER NOT NULL,
    chain_work TEXT NOT NULL,
    header TEXT NOT NULL,
    body TEXT NOT NULL,
    invalid_reason TEXT,
    seq INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS block_figures (
    hash TEXT PRIMARY KEY, miner TEXT, fee_total INTEGER NOT NULL, size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_parent ON blocks(previous_hash);
CREATE INDEX IF NOT EXISTS blocks_by_work ON blocks(chain_work DESC, seq);
CREATE INDEX IF NOT EXISTS blocks_by_height ON blocks(height, seq);
CREATE TABLE IF NOT EXISTS main_chain (height INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS undo (block_hash TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY, balance INTEGER NOT NULL, nonce INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_txs (
    txid TEXT PRIMARY KEY, block_hash TEXT NOT NULL, height INTEGER NOT NULL,
    position INTEGER NOT NULL, sender TEXT, recipient TEXT, amount INTEGER, fee INTEGER,
    timestamp INTEGER
);
CREATE TABLE IF NOT EXISTS address_history (
    address TEXT NOT NULL, height INTEGER NOT NULL, position INTEGER NOT NULL,
    txid TEXT NOT NULL, delta INTEGER NOT NULL,
    PRIMARY KEY (address, height, position)
);
CREATE INDEX IF NOT EXISTS address_history_by_height ON address_history(height);
CREATE TABLE IF NOT EXISTS address_counts (address TEXT PRIMARY KEY, entries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mempool (
    txid TEXT PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    nonce INTEGER NOT NULL, amount INTEGER NOT NULL, fee INTEGER NOT NULL,
    body TEXT NOT NULL, received_at INTEGER NOT NULL, seq INTEGER NOT NULL,
    UNIQUE (sender, nonce)
);
CREATE INDEX IF NOT EXISTS mempool_by_fee ON mempool(fee DESC, seq);
CREATE INDEX IF NOT EXISTS mempool_by_recipient ON mempool(recipient);
CREATE INDEX IF NOT EXISTS mempool_by_seq ON mempool(seq);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, kind TEXT NOT NULL,
    object_id TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL, source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_by_object ON rejections(object_id, id);
CREATE TABLE IF NOT EXISTS reorgs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, depth INTEGER NOT NULL,
    fork_height INTEGER NOT NULL, old_tip TEXT NOT NULL, new_tip TEXT NOT NULL,
    requeued TEXT NOT NULL, dropped TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tx_fates (
    txid TEXT PRIMARY KEY, at INTEGER NOT NULL, fate TEXT NOT NULL, reason TEXT,
    reorg_id INTEGER, body TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT, recipient TEXT
);
CREATE INDEX IF NOT EXISTS tx_fates_by_seq ON tx_fates(seq);
"""


def work_text(work: int) -> str:
    """Cumulative work as sortable text."""
    return f"{work:064x}"


@dataclass(frozen=True)
class StoredBlock:
    """A block row: the block, its height, cumulative work and validity."""

    block: Block
    chain_work: int
    invalid_reason: str | None
    seq: int
    received_at: int

    @property
    def header(self) -> BlockHeader:
        return self.block.header


@dataclass(frozen=True)
class PendingTx:
    """A mempool row."""

    tx: Transaction
    received_at: int
    seq: int


@dataclass(frozen=True)
class MempoolEntry:
    """A mempool row without its body: what the mining order and its figures need."""

    txid: str
    sender: str
    nonce: int
    amount: int
    fee: int
    received_at: int
    seq: int


HEADER_CACHE = 2_048
"""Headers kept in memory by `Store.get_header` (about 0.5 MB)."""
REORGS_KEPT = 1_000
"""Reorgs remembered for GET /reorgs and the explorer (the oldest forgotten first): a tip that
two branches take in turn, each one block ahead (next to free on regtest), logs one a time."""
SUMMARY_KEYS = ("miner", "fee_total", "size")
"""What a block summary and view add: kept in `block_figures` when a block is stored."""


class Store:
    """Typed reads and writes over the ledger's SQLite file. Not thread-safe: one per process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._headers: dict[str, BlockHeader] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        had_counts = self._has_table("address_counts")
        self.db.executescript(SCHEMA)
        migrate(self.db)  # columns a newer version added to an existing file (migrations.py)
        if not had_counts:  # a database from before the table: count once
            self.db.execute(
                "INSERT INTO address_counts(address, entries) "
                "SELECT address, COUNT(*) FROM address_history GROUP BY address"
            )
        self._depth = 0
        self.mempool_version = 0
        """Moves on every change of the mempool (and every rollback): a cache key."""
        self._entries: dict[str, MempoolEntry] | None = None
        """The mempool's rows without bodies in arrival order, mirrored once read (None: not
        read, or a rollback made it stale)."""

    def close(self) -> None:
        self.db.close()

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.db.execute(query, (name,)).fetchone() is not None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of change; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self.mempool_version += 1  # what was added or removed inside is back as it was
            self._entries = None
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA quick_check").fetchone()[0] == "ok")

    # -- meta ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- blocks --------------------------------------------------------------------------
    def insert_block(self, block: Block, chain_work: int, received_at: int) -> None:
        seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM blocks").fetchone()[0]
        head = block.header
        body = json.dumps(block.to_dict())
        self.db.execute(
            "INSERT INTO blocks(hash, height, previous_hash, timestamp, bits, tx_count, chain_work,"
            " header, body, seq, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                block.hash,
                head.index,
                head.previous_hash,
                head.timestamp,
                head.bits,
                len(block.transactions),
                work_text(chain_work),
                json.dumps(head.to_dict()),
                body,
                seq,
                received_at,
            ),
        )
        # A table of their own: a column stored after a large body costs a read of the body's
        # overflow pages, and lists and charts read these figures for 500 blocks at a time.
        self.db.execute(
            "INSERT INTO block_figures(hash, miner, fee_total, size) VALUES (?, ?, ?, ?)",
            (
                block.hash,
                block.transactions[0].recipient if block.transactions else None,
                sum(tx.fee for tx in block.transactions),
                len(body.encode()),
            ),
        )

    def _stored(self, row: Any) -> StoredBlock:
        return StoredBlock(
            Block.from_dict(json.loads(row[0])), int(row[1], 16), row[2], row[3], row[4]
        )

    _BLOCK_COLUMNS = "body, chain_work, invalid_reason, seq, received_at"

    def get_block(self, block_hash: str) -> StoredBlock | None:
        row = self.db.execute(
            f"SELECT {self._BLOCK_COLUMNS} FROM blocks WHERE hash = ?",  # noqa: S608
            (block_hash,),
        ).fetchone()
        return None if row is None else self._stored(row)

    def get_header(self, block_hash: str) -> BlockHeader | None:
        """A stored header; recent ones come from a small cache (a header never changes under
        its hash, and each new block looks up its last 11 ancestors for the median time)."""
        cached = self._headers.get(block_hash)
        if cached is not None:
            return cached
        row = self.db.execute("SELECT header FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        if row is None:
            return None
        header = BlockHeader.from_dict(json.loads(row[0]))
        if len(self._headers) >= HEADER_CACHE:
            del self._headers[next(iter(self._headers))]  # the oldest entry
        self._headers[block_hash] = header
        return header

    def block_meta(self, block_hash: str) -> tuple[int, int, str | None] | None:
        """(height, chain_work, invalid_reason) of a known block."""
        row = self.db.execute(
            "SELECT height, chain_work, invalid_reason FROM blocks WHERE hash = ?", (block_hash,)
        ).fetchone()
        return None if row is None else (row[0], int(row[1], 16), row[2])

    def mark_invalid(self, block_hash: str, reason: str) -> None:
        self.db.execute("UPDATE blocks SET invalid_reason = ? WHERE hash = ?", (reason, block_hash))

    def children(self, block_hash: str) -> list[str]:
        rows = self.db.execute("SELECT hash FROM blocks WHERE previous_hash = ?", (block_hash,))
        return [r[0] for r in rows]

    def best_valid_tip(self) -> str | None:
        """The valid block with the most work (first seen among equals)."""
        row = self.db.execute(
            "SELECT hash FROM blocks WHERE invalid_reason IS NULL "
            "ORDER BY chain_work DESC, seq ASC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def blocks_between(self, low: int, high: int) -> list[dict[str, Any]]:
        """Every stored block (any branch) with low <= height <= high: header, validity, order."""
        rows = self.db.execute(
            "SELECT b.header, b.invalid_reason, m.hash IS NOT NULL FROM blocks b "
            "LEFT JOIN main_chain m ON m.hash = b.hash "
            "WHERE b.height BETWEEN ? AND ? ORDER BY b.height, b.seq",
            (low, high),
        )
        return [
            json.loads(r[0]) | {"invalid_reason": r[1], "in_best_chain": bool(r[2])} for r in rows
        ]

    def side_blocks(self, low: int, high: int) -> list[tuple[str, int]]:
        """(hash, height) of the blocks off the main chain with low <= height < high."""
        rows = self.db.execute(
            "SELECT b.hash, b.height FROM blocks b WHERE b.height >= ? AND b.height < ? "
            "AND NOT EXISTS (SELECT 1 FROM main_chain m WHERE m.height = b.height "
            "AND m.hash = b.hash) ORDER BY b.height",
            (low, high),
        )
        return [(r[0], r[1]) for r in rows]

    def subtree(self, block_hash: str) -> list[tuple[str, int, bool]]:
        """(hash, received_at, on the main chain) of a stored block and all its descendants."""
        rows = self.db.execute(
            "WITH RECURSIVE t(hash) AS (SELECT ? UNION SELECT b.hash FROM blocks b "
            "JOIN t ON b.previous_hash = t.hash) "
            "SELECT b.hash, b.received_at, m.hash IS NOT NULL FROM t JOIN blocks b USING (hash) "
            "LEFT JOIN main_chain m ON m.hash = b.hash",
            (block_hash,),
        )
        return [(r[0], r[1], bool(r[2])) for r in rows]

    def invalid_blocks(self) -> list[str]:
        """Hashes of the stored blocks marked invalid, the first received first."""
        rows = self.db.execute(
            "SELECT hash FROM blocks WHERE invalid_reason IS NOT NULL ORDER BY received_at, seq"
        )
        return [r[0] for r in rows]

    def delete_blocks(self, hashes: list[str]) -> None:
        """Forget blocks off the main chain (their rows and any undo record)."""
        for block_hash in hashes:
            self.db.execute("DELETE FROM blocks WHERE hash = ?", (block_hash,))
            self.db.execute("DELETE FROM block_figures WHERE hash = ?", (block_hash,))
            self.db.execute("DELETE FROM undo WHERE block_hash = ?", (block_hash,))
            self._headers.pop(block_hash, None)

    def block_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])

    # -- main chain ----------------------------------------------------------------------
    def main_hash(self, height: int) -> str | None:
        row = self.db.execute("SELECT hash FROM main_chain WHERE height = ?", (height,)).fetchone()
        return None if row is None else str(row[0])

    def main_height(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(height), 0) FROM main_chain").fetchone()[0])

    def main_block_bodies(self, start: int, limit: int) -> list[str]:
        """The stored JSON of main-chain blocks (each `Block.to_dict()`, as written), unparsed."""
        rows = self.db.execute(
            "SELECT body FROM main_chain JOIN blocks USING (hash) "
            "WHERE main_chain.height >= ? ORDER BY main_chain.height LIMIT ?",
            (start, limit),
        )
        return [r[0] for r in rows]

    def main_headers(self, start: int, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT header FROM main_chain JOIN blocks USING (hash) "
            "WHERE main_chain.height >= ? ORDER BY main_chain.height LIMIT ?",
            (start, limit),
        )
        return [json.loads(r[0]) for r in rows]

    def main_summaries_json(self, low: int, high: int) -> list[str]:
        """Main-chain blocks from height `high` down to `low` as JSON text: each header with
        `tx_count`, `miner`, `fee_total` and `size`, built by SQLite without reading a block's
        body (lists and charts ask for 500 at a time)."""
        rows = self.db.execute(
            "SELECT json_set(header, '$.tx_count', tx_count, '$.miner', miner, "
            "'$.fee_total', fee_total, '$.size', size) FROM main_chain JOIN blocks USING (hash) "
            "LEFT JOIN block_figures USING (hash) WHERE main_chain.height BETWEEN ? AND ? "
            "ORDER BY main_chain.height DESC",
            (low, high),
        )
        return [r[0] for r in rows]

    def block_summary(self, block_hash: str) -> dict[str, Any]:
        """`miner`, `fee_total` and `size` of a stored block (empty if it is unknown)."""
        row = self.db.execute(
            "SELECT miner, fee_total, size FROM block_figures WHERE hash = ?", (block_hash,)
        ).fetchone()
        return {} if row is None else dict(zip(SUMMARY_KEYS, row, strict=True))

    def is_main(self, block_hash: str, height: int) -> bool:
        return self.main_hash(height) == block_hash

    # -- accounts, undo, indexes ----------------------------------------------------------
    def account(self, address: str) -> Account:
        row = self.db.execute(
            "SELECT balance, nonce FROM accounts WHERE address = ?", (address,)
        ).fetchone()
        return Account() if row is None else Account(row[0], row[1])

    def write_accounts(self, accounts: dict[str, Account]) -> None:
        for address, acct in accounts.items():
            if acct == Account():
                self.db.execute("DELETE FROM accounts WHERE address = ?", (address,))
            else:
                self.db.execute(
                    "INSERT INTO accounts(address, balance, nonce) VALUES (?, ?, ?) "
                    "ON CONFLICT(address) DO UPDATE SET balance = excluded.balance, "
                    "nonce = excluded.nonce",
                    (address, acct.balance, acct.nonce),
                )

    def all_accounts(self) -> dict[str, Account]:
        rows = self.db.execute("SELECT address, balance, nonce FROM accounts")
        return {r[0]: Account(r[1], r[2]) for r in rows}

    def put_undo(self, undo: BlockUndo) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO undo(block_hash, data) VALUES (?, ?)",
            (undo.block_hash, json.dumps(undo.to_dict())),
        )

    def pop_undo(self, block_hash: str) -> BlockUndo:
        row = self.db.execute(
            "SELECT data FROM undo WHERE block_hash = ?", (block_hash,)
        ).fetchone()
        if row is None:
            raise RuntimeError(f"no undo data for main-chain block {block_hash}")
        self.db.execute("DELETE FROM undo WHERE block_hash = ?", (block_hash,))
        return BlockUndo.from_dict(json.loads(row[0]))

    def index_main_block(self, block: Block) -> None:
        """Main chain row, transaction index and address history of a connected block."""
        height = block.index
        self.db.execute("INSERT INTO main_chain(height, hash) VALUES (?, ?)", (height, block.hash))
        for position, tx in enumerate(block.transactions):
            self.db.execute(
                "INSERT INTO chain_txs(txid, block_hash, height, position, sender, recipient, "
                "amount, fee, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tx.txid,
                    block.hash,
                    height,
                    position,
                    tx.sender,
                    tx.recipient,
                    tx.amount,
                    tx.fee,
                    tx.timestamp,
                ),
            )
            for address, delta in tx_deltas(tx).items():
                self.db.execute(
                    "INSERT INTO address_history(address, height, position, txid, delta) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (address, height, position, tx.txid, delta),
                )
                self.db.execute(
                    "INSERT INTO address_counts(address, entries) VALUES (?, 1) "
                    "ON CONFLICT(address) DO UPDATE SET entries = entries + 1",
                    (address,),
                )
        self.set_meta("tip", block.hash)

    def unindex_main_block(self, block: Block, new_tip: str) -> None:
        height = block.index
        self.db.execute("DELETE FROM main_chain WHERE height = ?", (height,))
        self.db.execute("DELETE FROM chain_txs WHERE height = ?", (height,))
        self.db.execute(
            "UPDATE address_counts SET entries = entries - (SELECT COUNT(*) FROM address_history h"
            " WHERE h.address = address_counts.address AND h.height = ?1)"
            " WHERE address IN (SELECT address FROM address_history WHERE height = ?1)",
            (height,),
        )
        self.db.execute("DELETE FROM address_history WHERE height = ?", (height,))
        self.set_meta("tip", new_tip)

    def chain_tx(self, txid: str) -> tuple[str, int, int] | None:
        """(block_hash, height, position) of a main-chain transaction."""
        row = self.db.execute(
            "SELECT block_hash, height, position FROM chain_txs WHERE txid = ?", (txid,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def address_history(self, address: str, offset: int, limit: int) -> list[tuple[Any, ...]]:
        """(height, position, txid, delta, sender, recipient, amount, fee, timestamp,
        block_time) newest first."""
        return list(
            self.db.execute(
                "SELECT h.height, h.position, h.txid, h.delta, c.sender, c.recipient, c.amount, "
                "c.fee, c.timestamp, b.timestamp FROM address_history h "
                "JOIN chain_txs c ON c.txid = h.txid JOIN blocks b ON b.hash = c.block_hash "
                "WHERE h.address = ? ORDER BY h.height DESC, h.position DESC LIMIT ? OFFSET ?",
                (address, limit, offset),
            )
        )

    def address_newer_delta(self, address: str, count: int) -> int:
        """The sum of the `count` newest confirmed deltas of an address: what separates its
        balance now from its balance after the entry `count` places down (a page's offset)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(delta), 0) FROM (SELECT delta FROM address_history "
            "WHERE address = ? ORDER BY height DESC, position DESC LIMIT ?)",
            (address, count),
        ).fetchone()
        return int(row[0])

    def address_history_count(self, address: str) -> int:
        """Confirmed entries of an address: kept as a count, so no page scans a history."""
        row = self.db.execute(
            "SELECT entries FROM address_counts WHERE address = ?", (address,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- mempool -------------------------------------------------------------------------
    def _pending(self, row: Any) -> PendingTx:
        return PendingTx(Transaction.from_dict(json.loads(row[0])), row[1], row[2])

    def mempool_add(self, tx: Transaction, received_at: int) -> MempoolEntry:
        self.mempool_version += 1
        seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM mempool").fetchone()[0]
        self.db.execute(
            "INSERT INTO mempool(txid, sender, recipient, nonce, amount, fee, body, received_at, "
            "seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tx.txid,
                tx.sender,
                tx.recipient,
                tx.nonce,
                tx.amount,
                tx.fee,
                json.dumps(tx.to_dict()),
                received_at,
                seq,
            ),
        )
        entry = MempoolEntry(tx.txid, tx.sender, tx.nonce, tx.amount, tx.fee, received_at, seq)
        if self._entries is not None:  # the highest seq: last in arrival order
            self._entries[tx.txid] = entry
        return entry

    def mempool_remove(self, txid: str) -> None:
        self.mempool_version += 1
        self.db.execute("DELETE FROM mempool WHERE txid = ?", (txid,))
        if self._entries is not None:
            self._entries.pop(txid, None)

    def mempool_get(self, txid: str) -> PendingTx | None:
        row = self.db.execute(
            "SELECT body, received_at, seq FROM mempool WHERE txid = ?", (txid,)
        ).fetchone()
        return None if row is None else self._pending(row)

    def mempool_by_sender(self, sender: str) -> list[PendingTx]:
        rows = self.db.execute(
            "SELECT body, received_at, seq FROM mempool WHERE sender = ? ORDER BY nonce", (sender,)
        )
        return [self._pending(r) for r in rows]

    def mempool_sender_totals(self, sender: str) -> tuple[int, int]:
        """How many transactions `sender` has pending, and what they spend (amounts + fees)."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount + fee), 0) FROM mempool WHERE sender = ?",
            (sender,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def mempool_by_sender_nonce(self, sender: str, nonce: int) -> PendingTx | None:
        row = self.db.execute(
            "SELECT body, received_at, seq FROM mempool WHERE sender = ? AND nonce = ?",
            (sender, nonce),
        ).fetchone()
        return None if row is None else self._pending(row)

    def mempool_entries(self) -> list[MempoolEntry]:
        """Every pending transaction without its body, in arrival order (first seen first);
        read from the database once, then kept in step by `mempool_add` and `mempool_remove`."""
        if self._entries is None:
            rows = self.db.execute(
                "SELECT txid, sender, nonce, amount, fee, received_at, seq FROM mempool "
                "ORDER BY seq"
            )
            self._entries = {row[0]: MempoolEntry(*row) for row in rows}
        return list(self._entries.values())

    def mempool_transactions(self, txids: list[str]) -> dict[str, Transaction]:
        """The pending transactions of `txids` (those still pending), by txid."""
        rows = self.db.execute(
            "SELECT txid, body FROM mempool WHERE txid IN (SELECT value FROM json_each(?))",
            (json.dumps(txids),),
        )
        return {txid: Transaction.from_dict(json.loads(body)) for txid, body in rows}

    def mempool_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM mempool").fetchone()[0])

    def mempool_senders(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT sender FROM mempool")]

    def mempool_pending_for(self, address: str) -> list[PendingTx]:
        rows = self.db.execute(
            "SELECT body, received_at, seq FROM mempool WHERE sender = ? OR recipient = ? "
            "ORDER BY seq DESC",
            (address, address),
        )
        return [self._pending(r) for r in rows]

    def mempool_cheapest_leaf(self, spare_sender: str = "") -> PendingTx | None:
        """The lowest-fee transaction that no other pending transaction depends on, not sent by
        `spare_sender` (whose chain a newcomer extends)."""
        row = self.db.execute(
            "SELECT body, received_at, seq FROM mempool m WHERE m.sender != ? AND NOT EXISTS ("
            " SELECT 1 FROM mempool n WHERE n.sender = m.sender AND n.nonce > m.nonce)"
            " ORDER BY fee ASC, seq DESC LIMIT 1",
            (spare_sender,),
        ).fetchone()
        return None if row is None else self._pending(row)

    # -- logs ----------------------------------------------------------------------------
    def log_rejection(
        self, at: int, kind: str, object_id: str, reason: str, message: str, source: str, keep: int
    ) -> None:
        self.db.execute(
            "INSERT INTO rejections(at, kind, object_id, reason, message, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, kind, _text(object_id), reason, _text(message[:500]), _text(source[:200])),
        )
        self.db.execute(
            "DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - ?", (keep,)
        )

    def rejections(self, limit: int, object_id: str | None = None) -> list[dict[str, Any]]:
        """The latest refusals, newest first; only those of `object_id` when given."""
        where = "" if object_id is None else "WHERE object_id = ? "
        rows = self.db.execute(
            "SELECT at, kind, object_id, reason, message, source FROM rejections "  # noqa: S608
            f"{where}ORDER BY id DESC LIMIT ?",
            (limit,) if object_id is None else (object_id, limit),
        )
        keys = ("at", "kind", "id", "reason", "message", "source")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def log_reorg(
        self,
        at: int,
        depth: int,
        fork_height: int,
        old_tip: str,
        new_tip: str,
        requeued: list[str],
        dropped: list[str],
    ) -> int:
        cursor = self.db.execute(
            "INSERT INTO reorgs(at, depth, fork_height, old_tip, new_tip, requeued, dropped) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, depth, fork_height, old_tip, new_tip, json.dumps(requeued), json.dumps(dropped)),
        )
        reorg_id = int(cursor.lastrowid or 0)
        self.db.execute("DELETE FROM reorgs WHERE id <= ?", (reorg_id - REORGS_KEPT,))
        return reorg_id

    def record_fate(
        self,
        at: int,
        tx: Transaction,
        fate: str,
        reason: str | None,
        reorg_id: int | None,
        keep: int,
    ) -> None:
        """What a tip change did to a transaction that left a block or the mempool: `requeued`
        or `dropped` (with the reason). The latest fate of each txid is kept, `keep` in all."""
        seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM tx_fates").fetchone()[0]
        self.db.execute(
            "INSERT OR REPLACE INTO tx_fates(txid, at, fate, reason, reorg_id, body, seq, sender,"
            " recipient) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tx.txid,
                at,
                fate,
                reason,
                reorg_id,
                json.dumps(tx.to_dict()),
                seq,
                tx.sender,
                tx.recipient,
            ),
        )
        self.db.execute("DELETE FROM tx_fates WHERE seq <= ?", (seq - keep,))

    def tx_fate(self, txid: str) -> dict[str, Any] | None:
        """The latest fate of a transaction, with the reorg that caused it (if one did)."""
        row = self.db.execute(
            "SELECT f.at, f.fate, f.reason, f.body, r.at, r.depth, r.fork_height, r.old_tip, "
            "r.new_tip FROM tx_fates f LEFT JOIN reorgs r ON r.id = f.reorg_id WHERE f.txid = ?",
            (txid,),
        ).fetchone()
        if row is None:
            return None
        reorg = (
            None
            if row[4] is None
            else dict(
                zip(("at", "depth", "fork_height", "old_tip", "new_tip"), row[4:], strict=True)
            )
        )
        return {
            "at": row[0],
            "fate": row[1],
            "reason": row[2],
            "transaction": json.loads(row[3]),
            "reorg": reorg,
        }

    def dropped_for(self, address: str, limit: int) -> list[tuple[Transaction, int, str | None]]:
        """(transaction, at, reason) of the latest kept `dropped` fates of transactions from or
        to `address`, newest first, leaving out any that is pending or in the chain again."""
        rows = self.db.execute(
            "SELECT body, at, reason FROM tx_fates f WHERE f.seq IN ("
            " SELECT seq FROM tx_fates WHERE sender = ?1 UNION"
            " SELECT seq FROM tx_fates WHERE recipient = ?1)"
            " AND f.fate = 'dropped'"
            " AND NOT EXISTS (SELECT 1 FROM mempool m WHERE m.txid = f.txid)"
            " AND NOT EXISTS (SELECT 1 FROM chain_txs c WHERE c.txid = f.txid)"
            " ORDER BY f.seq DESC LIMIT ?2",
            (address, limit),
        )
        return [(Transaction.from_dict(json.loads(r[0])), r[1], r[2]) for r in rows]

    def requeued_at(self, txids: list[str]) -> dict[str, int]:
        """When each of `txids` whose latest fate is `requeued` was re-queued."""
        marks = ", ".join("?" * len(txids))
        rows = self.db.execute(
            f"SELECT txid, at FROM tx_fates WHERE fate = 'requeued' AND txid IN ({marks})",  # noqa: S608
            txids,
        )
        return {r[0]: r[1] for r in rows}

    def reorgs(self, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT at, depth, fork_height, old_tip, new_tip, requeued, dropped FROM reorgs "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            {
                "at": r[0],
                "depth": r[1],
                "fork_height": r[2],
                "old_tip": r[3],
                "new_tip": r[4],
                "requeued": json.loads(r[5]),
                "dropped": json.loads(r[6]),
            }
            for r in rows
        ]


def _text(value: str) -> str:
    """Text SQLite can store: a lone surrogate from hostile JSON becomes a visible escape."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def tx_deltas(tx: Transaction) -> dict[str, int]:
    """The net effect of one transaction on each address it touches."""
    deltas: dict[str, int] = {}
    if not tx.is_coinbase:
        deltas[tx.sender] = -(tx.amount + tx.fee)
    deltas[tx.recipient] = deltas.get(tx.recipient, 0) + tx.amount
    return deltas
