"""Bring a ledger database written by an older pyBTC up to the current schema, in place.

`Store` creates missing tables with `CREATE TABLE IF NOT EXISTS`, which never adds a column to
a table that exists. Each step here adds the columns (or fills the new tables) a newer version
keeps from what the database already holds: the stored block and transaction JSON, read by
SQLite's JSON functions, so that no row is parsed in Python. A column is added only when
missing and a table filled only below its version (`meta.schema_version`, absent in a version-1
file), so running the steps again is harmless.
"""

from __future__ import annotations

import logging
import sqlite3

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""1: the first schema. 2: block summaries (miner, fee_total, size), transaction fields in the
chain index (for address histories) and the sender and recipient of kept fates."""

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "chain_txs": (
        ("sender", "TEXT"),
        ("recipient", "TEXT"),
        ("amount", "INTEGER"),
        ("fee", "INTEGER"),
        ("timestamp", "INTEGER"),
    ),
    "tx_fates": (("sender", "TEXT"), ("recipient", "TEXT")),
}
"""The columns version 2 added to existing tables (also in `store.SCHEMA` for a new
database)."""

BLOCK_FIGURES = (
    "INSERT OR IGNORE INTO block_figures(hash, miner, fee_total, size) "
    "SELECT hash, json_extract(body, '$.transactions[0].recipient'), "
    "(SELECT COALESCE(SUM(json_extract(value, '$.fee')), 0) "
    "FROM json_each(body, '$.transactions')), length(CAST(body AS BLOB)) FROM blocks"
)
"""Version 2's `block_figures` (a table of its own, created by `store.SCHEMA`) for the blocks
stored before it."""
BACKFILL = {
    # Each block's body is read once (json_each) into a keyed table, then copied across: a
    # lookup per transaction would parse its whole block again for each of its transactions.
    "chain_txs": "CREATE TEMP TABLE tx_fields AS SELECT json_extract(t.value, '$.txid') AS txid, "
    "json_extract(t.value, '$.sender') AS sender, json_extract(t.value, '$.recipient') AS "
    "recipient, json_extract(t.value, '$.amount') AS amount, json_extract(t.value, '$.fee') AS "
    "fee, json_extract(t.value, '$.timestamp') AS timestamp FROM main_chain m "
    "JOIN blocks b USING (hash), json_each(b.body, '$.transactions') t; "
    "CREATE UNIQUE INDEX temp.tx_fields_by_txid ON tx_fields(txid); "
    "UPDATE chain_txs SET (sender, recipient, amount, fee, timestamp) = (SELECT f.sender, "
    "f.recipient, f.amount, f.fee, f.timestamp FROM tx_fields f WHERE f.txid = chain_txs.txid); "
    "DROP TABLE temp.tx_fields",
    "tx_fates": "UPDATE tx_fates SET sender = json_extract(body, '$.sender'), "
    "recipient = json_extract(body, '$.recipient')",
}

INDEXES = """
CREATE INDEX IF NOT EXISTS tx_fates_by_sender ON tx_fates(sender, seq);
CREATE INDEX IF NOT EXISTS tx_fates_by_recipient ON tx_fates(recipient, seq);
"""
"""Indexes over version 2's columns: created after the columns exist."""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection) -> None:
    """Add and fill what an older database lacks (one transaction), then the indexes."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) < 2:
            db.execute(BLOCK_FIGURES)
        for table, columns in COLUMNS.items():
            have = _columns(db, table)
            missing = [(name, kind) for name, kind in columns if name not in have]
            if not missing:
                continue
            for name, kind in missing:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            for statement in BACKFILL[table].split("; "):
                db.execute(statement)
            logger.info("schema migrated table=%s added=%s", table, ",".join(n for n, _ in missing))
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    db.executescript(INDEXES)
